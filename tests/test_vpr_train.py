"""Each VPR adapter trains a few steps on `tiny`, gives [B, D] unit descriptors, is seeded and cached;
the CosPlace groups on hand-made coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.method import RunContext, make_options
from benchmark.registry import METHODS
from benchmark.runner import training_cache_key
from methods.vpr.adapters import VPRMethod
from methods.vpr.groups import cosplace_class_group, cosplace_groups, places, positives_and_far

METHOD_NAMES = [name for name in METHODS.names() if issubclass(METHODS.get(name), VPRMethod)]  # trained VPR


def make(name: str, cache, seed: int = 0, data_hash: str = "tiny", **overrides: str):
    """A VPR method on the smoke preset (2 steps), caching where the runner would: under its cache key."""
    cls = METHODS.get(name)
    options = make_options(cls, "smoke", {"steps": "2", **overrides})
    key = training_cache_key(cls, options, seed, data_hash)
    ctx = RunContext(device=torch.device("cpu"), seed=seed, preset="smoke", cache_dir=cache / key[:16],
                     progress=False, batch_size=16)
    return cls(options, ctx)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_adapter_trains_on_tiny_and_gives_unit_descriptors_then_reuses_the_cache(tmp_path, tiny_dataset, name):
    method = make(name, tmp_path)
    encoder = method.build_encoder(tiny_dataset)
    assert not method.training.cached and method.provenance()["source"] == "from-scratch"
    assert method.training.steps == 2 and method.training.images_seen > 0
    images = torch.stack([method.preprocess(im) for im in _images(tiny_dataset, 3)])
    with torch.no_grad():
        d = encoder.eval()(images)
    assert d.ndim == 2 and d.shape[0] == 3
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)

    again = make(name, tmp_path, geocoder="streetmap", index="ivfpq")  # pipeline options share the cache
    second = again.build_encoder(tiny_dataset)
    assert again.training.cached
    with torch.no_grad():
        assert torch.equal(second.eval()(images), d)


def test_training_is_deterministic_for_a_seed(tmp_path, tiny_dataset):
    first = make("netvlad", tmp_path / "a").build_encoder(tiny_dataset).state_dict()
    second = make("netvlad", tmp_path / "b").build_encoder(tiny_dataset).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = make("netvlad", tmp_path / "c", seed=1).build_encoder(tiny_dataset).state_dict()
    assert not torch.equal(first["pool.centroids"], other["pool.centroids"])


def test_prepare_indexes_the_database_and_predicts_k_addresses(tmp_path, tiny_dataset):
    from benchmark.measure import StageClock
    from benchmark.method import QueryBatch

    method = make("gem", tmp_path)
    method.prepare(tiny_dataset)
    paths = tiny_dataset.paths("queries")[:2]
    images = torch.stack([method.preprocess(im) for im in _images(tiny_dataset, 2, "queries")])
    with torch.inference_mode():
        (p, _) = method.predict(QueryBatch(images, [str(x) for x in paths], np.zeros((2, 2))), 5,
                                StageClock(torch.device("cpu")))
    assert len(p.topk) == len(set(p.topk)) == 5 and p.utm is not None and len(p.retrieved) >= 10
    assert method.footprint().total > method.footprint().model > 0


def _images(dataset, n: int, split: str = "train"):
    from benchmark.images import load_rgb

    return [load_rgb(p) for p in dataset.paths(split)[:n]]


def test_cosplace_class_and_group_ids_on_hand_made_coordinates():
    # M=10 m cells, 30° heading bins; groups repeat every N=5 cells and L=2 bins.
    assert cosplace_class_group(385_123.4, 6_671_987.9, 47.0) == ((385_120, 6_671_980, 30), (2, 3, 1))
    assert cosplace_class_group(385_173.4, 6_671_987.9, 107.0) == ((385_170, 6_671_980, 90), (2, 3, 1))
    assert cosplace_class_group(385_133.4, 6_671_987.9, 29.9)[1] == (3, 3, 0)
    utm = np.array([[0.0, 0.0], [5.0, 5.0], [9.9, 0.0],  # one class (cell 0,0; heading 0-30)
                    [50.0, 0.0], [52.0, 3.0],  # same group as the first (50 m = N*M away), another class
                    [10.0, 0.0],  # next cell: another group, a class of one image
                    [0.0, 0.0]])
    heading = np.array([10.0, 20.0, 29.0, 5.0, 15.0, 0.0, 70.0])  # the last: 60-90 bin -> group (0, 0, 0)
    groups = cosplace_groups(utm, heading, min_images_per_class=2)
    assert groups == [{(0, 0, 0): [0, 1, 2], (50, 0, 0): [3, 4]}]
    everything = cosplace_groups(utm, heading, min_images_per_class=1)
    assert everything[0] == {(0, 0, 0): [0, 1, 2], (0, 0, 60): [6], (50, 0, 0): [3, 4]}
    assert sorted(map(len, everything)) == [1, 3]


def test_positives_negatives_and_places():
    utm = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [40.0, 0.0]])
    positives, tree = positives_and_far(utm, 10.0)
    assert [p.tolist() for p in positives] == [[1], [0, 2], [1], []]
    assert tree.query_ball_point([0.0, 0.0], 25.0) == [0, 1, 2]
    found = places(utm, np.array([0.0, 10.0, 100.0, 0.0]), cell_m=30.0, heading_deg=45.0, min_images=2)
    assert [p.tolist() for p in found] == [[0, 1]]
