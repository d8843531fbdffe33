"""The generated `tiny` protocol: real on-disk format, deterministic, location-disjoint, location-dependent pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmark.registry import PROTOCOLS
from protocols.vpr_names import parse_vpr_name


def test_same_options_give_identical_data(tmp_path, tiny_dataset):
    tiny = PROTOCOLS.get("tiny")
    tiny.build(tmp_path / "again", "smoke", progress=False)
    again, problems = tiny.read(tmp_path / "again")
    assert problems == [] and again.data_hash == tiny_dataset.data_hash


def test_splits_are_location_disjoint_and_queries_answerable(tiny_dataset):
    locations = {s: set(t.location) for s, t in tiny_dataset.splits.items()}
    assert not (locations["train"] & locations["database"]) and not (locations["queries"] & locations["train"])
    assert set(tiny_dataset.splits["queries"].address) <= set(tiny_dataset.address_book.addresses)
    counts = tiny_dataset.counts()
    assert 200 <= counts["images"] <= 1000 and counts["sub_streets"] >= 10


def test_file_names_carry_the_coordinates(tiny_dataset):
    row = tiny_dataset.splits["database"].iloc[0]
    name = parse_vpr_name(row.image)
    assert (name.utm_east, name.utm_north) == (row.utm_east, row.utm_north) and name.heading == row.heading


def test_nearby_views_look_alike_far_ones_do_not(tiny_dataset):
    table = tiny_dataset.splits["train"]
    paths = tiny_dataset.paths("train")
    images = np.stack([np.asarray(Image.open(p).convert("L"), np.float32) for p in paths])
    utm = tiny_dataset.utm("train")
    near, far = [], []
    for i in range(len(table)):
        same_heading = table.heading.to_numpy() == table.heading.iloc[i]
        dist = np.hypot(*(utm - utm[i]).T)
        diff = np.abs(images - images[i]).mean(axis=(1, 2))
        near += diff[same_heading & (dist > 0) & (dist <= 10)].tolist()
        far += diff[same_heading & (dist > 100)].tolist()
    assert np.mean(near) < 0.6 * np.mean(far)
