"""Render rate of street views at the default size (issue target: >= 300 images/s on 2 cores).

`pytest tests/benchmarks --benchmark-enable` measures; images/s = images per round / mean seconds per round
(IMAGES single-process, 4 * IMAGES over two worker processes, whose start-up is part of each round).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.city.osm import load_city
from protocols.city.render import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    Camera,
    Conditions,
    Scene,
    render_many,
    render_parallel,
)

IMAGES = 200


@pytest.fixture(scope="module")
def scene_and_cameras() -> tuple[Scene, list[Camera]]:
    """Helsinki, and IMAGES cameras on street segments heading along, across or back down the street."""
    city = load_city("helsinki")
    rng = np.random.default_rng(0)
    cameras = []
    for street in city.streets:
        for a, b in zip(street.coords[:-1], street.coords[1:]):
            along = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1]))
            east, north = a + (b - a) * rng.uniform()
            cameras.append(Camera(float(east), float(north), along + 90.0 * int(rng.integers(4))))
    picked = rng.choice(len(cameras), IMAGES, replace=False)
    return Scene.from_city(city), [cameras[i] for i in picked]


def _check(images: np.ndarray, count: int = IMAGES) -> None:
    assert images.shape == (count, DEFAULT_HEIGHT, DEFAULT_WIDTH, 3)


def test_render_rate_day(benchmark, scene_and_cameras) -> None:
    scene, cameras = scene_and_cameras
    _check(benchmark(render_many, scene, cameras, Conditions.day()))


def test_render_rate_query(benchmark, scene_and_cameras) -> None:
    scene, cameras = scene_and_cameras
    rng = np.random.default_rng(1)
    conditions = [Conditions.query(rng) for _ in cameras]
    _check(benchmark(render_many, scene, cameras, conditions))


def test_render_rate_day_two_workers(benchmark, scene_and_cameras) -> None:
    scene, cameras = scene_and_cameras
    _check(benchmark(render_parallel, scene, cameras * 4, Conditions.day(), 2), 4 * IMAGES)
