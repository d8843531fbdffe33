"""Semantic geocells (cover the training area without gaps or overlaps, keep the size bounds) and PIGEON's
haversine label smoothing, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch
import torch.nn.functional as F

from benchmark.errors import BenchmarkError
from methods.classification.geocells import build_geocells, distinct_locations, halve, optics_split
from methods.classification.smoothing import (
    EARTH_RADIUS_M,
    haversine_m,
    smoothed_cross_entropy,
    smoothed_targets,
    utm_to_latlon,
)


def _city(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three neighbourhoods of a grid city (one tiny), two images per location."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(0, 600, 40.0), np.arange(0, 400, 40.0))
    points = np.stack([xs.ravel(), ys.ravel()], axis=1) + rng.normal(0, 3, (xs.size, 2))
    hoods = ["West" if x < 300 else "East" for x, _ in points]
    hoods = [("Corner" if x > 520 and y > 330 else h) for (x, y), h in zip(points, hoods)]
    return np.repeat(points, 2, axis=0), [h for h in hoods for _ in range(2)]


@pytest.mark.parametrize("bounds", [(5, 12), (10, 25), (20, 60)])
def test_cells_tile_the_training_area_and_keep_the_bounds(bounds):
    utm, hoods = _city()
    cells = build_geocells(utm, hoods, *bounds, margin_m=30.0)
    sizes = cells.sizes()
    assert sizes.sum() == len(cells.locations) and (sizes >= bounds[0]).all() and (sizes <= bounds[1]).all()
    union = shapely.union_all(cells.areas)
    total = sum(a.area for a in cells.areas)
    assert union.area == pytest.approx(cells.region.area, rel=1e-9)  # no gap
    assert total == pytest.approx(union.area, rel=1e-9)  # no overlap
    # every training location lies in its own cell's area, and locate() agrees with the areas
    for xy, c in zip(cells.locations, cells.location_cell):
        assert cells.areas[c].intersects(shapely.Point(xy))
    probe = np.random.default_rng(1).uniform([0, 0], [560, 360], (200, 2))
    for xy, c in zip(probe, cells.locate(probe)):
        assert cells.areas[c].buffer(1e-6).contains(shapely.Point(xy))


def test_a_small_neighbourhood_is_merged_and_cells_stay_inside_one_neighbourhood_otherwise():
    utm, hoods = _city()
    cells = build_geocells(utm, hoods, 10, 25)
    assert "Corner" not in cells.neighbourhoods  # 3 locations < 10: merged into East
    location_hood = {tuple(np.round(p, 2)): h for p, h in zip(utm, hoods)}
    for c in range(len(cells)):
        members = {location_hood[tuple(np.round(p, 2))] for p in cells.locations[cells.location_cell == c]}
        assert members - {"Corner"} == {cells.neighbourhoods[c]}
    assert np.allclose(cells.centroids[0], utm[cells.image_cell == 0].mean(axis=0))


def test_optics_finds_two_separated_clusters_and_halving_splits_at_the_median():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 5, (30, 2)), rng.normal(300, 5, (30, 2))])
    labels = optics_split(points, 10)
    assert len(set(labels)) == 2 and len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1
    line = np.stack([np.arange(7.0), np.zeros(7)], axis=1)
    halves = halve(line)
    assert sorted(np.bincount(halves)) == [3, 4] and len(set(halves[:3])) == 1 and len(set(halves[4:])) == 1


def test_distinct_locations_round_to_the_centimetre():
    points, index = distinct_locations(np.array([[1.0, 2.0], [1.001, 2.0], [5.0, 5.0]]))
    assert len(points) == 2 and index[0] == index[1] != index[2]


def test_impossible_bounds_and_too_few_locations_are_clear_errors():
    utm, hoods = _city()
    with pytest.raises(BenchmarkError, match="cells_max"):
        build_geocells(utm, hoods, 10, 15)
    with pytest.raises(BenchmarkError, match="fewer than cells_min"):
        build_geocells(utm[:6], hoods[:6], 10, 25)


def test_utm_to_latlon_matches_the_coordinates_in_the_image_names():
    # '@0384980.73@6671999.83@35@V@60.16866@24.92711@' is a Helsinki render of the city protocol
    lat, lon = utm_to_latlon(np.array([[384980.73, 6671999.83]]), 35)[0]
    assert lat == pytest.approx(60.16866, abs=1e-5) and lon == pytest.approx(24.92711, abs=1e-5)
    with pytest.raises(BenchmarkError, match="zone"):
        utm_to_latlon(np.zeros((1, 2)), 61)


def test_haversine_of_one_degree_of_latitude():
    metres_per_degree = math.pi / 180 * EARTH_RADIUS_M
    assert haversine_m(np.array([10.0, 20.0]), np.array([11.0, 20.0])) == pytest.approx(metres_per_degree)
    assert haversine_m(np.array([0.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(metres_per_degree)


def test_smoothed_targets_by_hand():
    # Three centroids on a meridian, 0 / 100 / 300 m north of the equator; the true position 40 m north, in
    # cell 0. Distances 40, 60, 260 m: targets exp(0), exp(-20/tau), exp(-220/tau).
    degree = math.pi / 180 * EARTH_RADIUS_M
    centroids = np.array([[0.0, 0.0], [100 / degree, 0.0], [300 / degree, 0.0]])
    position = np.array([[40 / degree, 0.0]])
    tau = 50.0
    y = smoothed_targets(centroids, position, np.array([0]), tau)[0]
    assert y == pytest.approx([1.0, math.exp(-20 / tau), math.exp(-220 / tau)], rel=1e-5)
    # the true cell is not always the nearest centroid: a nearer one gets a target above 1
    y = smoothed_targets(centroids, position, np.array([2]), tau)[0]
    assert y == pytest.approx([math.exp(220 / tau), math.exp(200 / tau), 1.0], rel=1e-5)
    with pytest.raises(BenchmarkError, match="tau"):
        smoothed_targets(centroids, position, np.array([0]), 0.0)


def test_smoothed_cross_entropy_is_cross_entropy_for_one_hot_targets():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 5, 2, 2])
    assert smoothed_cross_entropy(logits, F.one_hot(labels, 6).float()) == pytest.approx(
        float(F.cross_entropy(logits, labels)), rel=1e-6)
