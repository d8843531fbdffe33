"""The classification family end to end on `tiny` (pigeon with and without refinement, subst-classifier), the
refinement's choice on a hand-made case, and clear errors for bad options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import torch

from benchmark.errors import BenchmarkError
from benchmark.runner import RunSpec, run
from methods.classification.geocells import Geocells
from methods.classification.pigeon import Pigeon, dataset_zone, parse_zone

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = {"steps": "60", "batch": "16", "lr": "1e-3", "augment": "0"}
# tiny's cells are 2-4 locations some 40 m apart: a city-scale tau (100 m) would make every target nearly flat
PIGEON = {**TRAIN, "steps": "120", "tau": "25"}


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """prior, subst-classifier and pigeon (refined and not; one training, cached) on tiny."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("results")
    methods = [("prior", {}), ("subst-classifier", dict(TRAIN)), ("pigeon", dict(PIGEON)),
               ("pigeon", {**PIGEON, "refine": "none"})]
    spec = RunSpec(protocol="tiny", methods=methods, preset="smoke", latency_queries=1, warmup=0, n_boot=10,
                   progress=False, out=out)
    folders = run(spec)
    results = [{**json.loads((f / "result.json").read_text()), "folder": str(f)} for f in folders]
    return dict(zip(["prior", "subst", "pigeon", "pigeon-centroid"], results))


def test_both_methods_beat_the_prior_on_tiny(runs):
    prior = runs["prior"]["metrics"]["ssa@1"]
    for name in ("subst", "pigeon", "pigeon-centroid"):
        assert runs[name]["method"]["family"] == "classification"
        assert runs[name]["metrics"]["ssa@1"] > prior, name


def test_pigeon_predicts_coordinates_and_reuses_its_training_for_refine_none(runs):
    assert runs["pigeon"]["metrics"]["median_error_m"] is not None
    assert runs["pigeon-centroid"]["training"]["cached"] and not runs["pigeon"]["training"]["cached"]
    footprint = runs["pigeon"]["cost"]["storage_bytes"]
    assert footprint["database"] > runs["pigeon-centroid"]["cost"]["storage_bytes"]["database"] > 0
    assert runs["subst"]["metrics"].get("median_error_m") is None


def test_the_search_structure_is_the_head_rows_then_the_cells_then_the_location_means(runs):
    subst, centroid, refined = (runs[n]["cost"]["search_bytes"] for n in ("subst", "pigeon-centroid", "pigeon"))
    classes = runs["subst"]["protocol"]["n_candidates"]
    assert subst % (4 * classes) == 0 and subst // (4 * classes) - 1 in (64, 128, 256, 512)  # [C, D] + [C]
    assert refined > centroid > 0  # the location means are searched only when refining
    assert refined - centroid < runs["pigeon"]["cost"]["storage_bytes"]["database"]


def _pigeon_on(cells: Geocells, means: np.ndarray) -> Pigeon:
    method = Pigeon.__new__(Pigeon)
    method.cells = cells
    method.location_means = torch.nn.functional.normalize(torch.tensor(means, dtype=torch.float32), dim=-1)
    method.location_cell = torch.from_numpy(cells.location_cell)
    return method


def test_refinement_picks_the_nearest_location_cluster_within_the_top_cells():
    locations = np.array([[0.0, 0.0], [10.0, 0.0], [100.0, 0.0], [110.0, 0.0], [200.0, 0.0]])
    cells = Geocells(locations, np.array([0, 0, 1, 1, 2]), np.arange(5), ["a", "b", "c"],
                     np.array([[5.0, 0.0], [105.0, 0.0], [200.0, 0.0]]), [shapely.Point(0, 0)] * 3,
                     shapely.Point(0, 0).buffer(300))
    means = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.0]])
    method = _pigeon_on(cells, means)
    query = torch.nn.functional.normalize(torch.tensor([0.1, 0.3, 1.0]), dim=0)
    # location 4 (cell 2) is the closest overall, but only cells 0 and 1 are in the top cells
    coords, scores = method._rank(query, torch.tensor([1, 0]), torch.tensor([0.6, 0.3]))
    assert coords[0].tolist() == [110.0, 0.0] and len(coords) == 4
    assert scores == sorted(scores, reverse=True)
    coords, _ = method._rank(query, torch.tensor([2]), torch.tensor([0.9]))
    assert coords.tolist() == [[200.0, 0.0]]
    method.location_means = None  # refine=none: the top cells' centroids, by probability
    coords, scores = method._rank(query, torch.tensor([1, 0]), torch.tensor([0.6, 0.3]))
    assert coords.tolist() == [[105.0, 0.0], [5.0, 0.0]] and scores == pytest.approx([0.6, 0.3])


def test_zone_from_the_image_names_or_the_option(tiny_dataset):
    assert dataset_zone(tiny_dataset, "auto") == (35, False)
    assert parse_zone("17N") == (17, False) and parse_zone("56s") == (56, True)
    with pytest.raises(BenchmarkError, match="utm_zone"):
        parse_zone("99")


@pytest.mark.parametrize("option, message", [({"refine": "best"}, "refine"), ({"tau": "0"}, "tau"),
                                              ({"cells_min": "10", "cells_max": "12"}, "cells_max")])
def test_bad_pigeon_options_are_one_clear_error(tiny_dataset, tmp_path, option, message):
    spec = RunSpec(protocol="tiny", methods=[("pigeon", option)], preset="smoke", progress=False, out=tmp_path)
    with pytest.raises(BenchmarkError, match=message):
        run(spec)
    assert not any(tmp_path.iterdir())


def test_the_report_draws_pigeons_cells_rebuilt_from_its_dataset(runs, tmp_path):
    from pathlib import Path

    from benchmark.plots import geocell_map
    from benchmark.results import RESULT_FILE, read_run

    loaded = [read_run(Path(runs[name]["folder"]) / RESULT_FILE) for name in ("prior", "subst", "pigeon")]
    paths = geocell_map(loaded, tmp_path, "tiny")
    assert sorted(p.name for p in paths) == ["tiny-geocells.png", "tiny-geocells.svg"]
    assert geocell_map(loaded[:2], tmp_path, "none") == []  # no geocell method: no figure


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A CLIP state dict (open_clip layout) of the small ViT config `ial-tiny`, as a user's weights file."""
    from methods.addressclip.model import build_clip

    path = tmp_path_factory.mktemp("clip") / "ial-tiny.pt"
    torch.save(build_clip("ial-tiny", False, seed=3).state_dict(), path)
    return path


def test_a_clip_image_tower_backbone_starts_from_a_clip_file_with_its_first_blocks_frozen(tiny_dataset, tiny_clip,
                                                                                             tmp_path):
    from benchmark.results import RESULT_FILE, read_run

    clip = {"backbone": "clip:ial-tiny", "init": str(tiny_clip), "frozen": "1", "image_h": "48", "image_w": "64"}
    spec = RunSpec(protocol="tiny", methods=[("subst-classifier", {**TRAIN, "steps": "4", **clip})], preset="smoke",
                   latency_queries=1, warmup=0, n_boot=10, progress=False, out=tmp_path / "results")
    folder, = run(spec)
    result = read_run(folder / RESULT_FILE).result
    assert result.training.backbone == "clip:ial-tiny from ial-tiny.pt" and result.training.steps == 4
    trained = torch.load(result.method.weights.path, weights_only=True)
    given = torch.load(tiny_clip, weights_only=True)
    # the patch embedding and block 0 kept the file's weights; block 1 and the head trained
    for key in ("conv1.weight", "transformer.resblocks.0.mlp.c_fc.weight"):
        assert torch.equal(trained[f"trunk.tower.{key}"], given[f"visual.{key}"]), key
    assert not torch.equal(trained["trunk.tower.transformer.resblocks.1.mlp.c_fc.weight"],
                           given["visual.transformer.resblocks.1.mlp.c_fc.weight"])


@pytest.mark.parametrize("option, message", [
    ({"pretrained": "true"}, "init=PATH"),
    ({"backbone": "clip:ial-r18"}, "only ViT image towers"),
    ({"frozen": "3"}, "frozen=3"),
    ({"init": "WRONG", "image_h": "48", "image_w": "64"}, "CLIP weights .* does not fit .* shape mismatch"),
])
def test_bad_clip_backbones_are_one_clear_error(tiny_dataset, tiny_clip, tmp_path, option, message):
    clip = {"backbone": "clip:ial-tiny", "init": str(tiny_clip), "image_h": "48", "image_w": "64"}
    if option.get("init") == "WRONG":  # a CLIP file of another architecture
        from methods.addressclip.model import build_clip

        other = tmp_path / "other.pt"
        torch.save(build_clip("ial-small", False, seed=0).state_dict(), other)
        option = {**option, "init": str(other)}
    if "pretrained" in option:
        clip.pop("init")
    spec = RunSpec(protocol="tiny", methods=[("subst-classifier", {**TRAIN, "steps": "2", **clip, **option})],
                   preset="smoke", progress=False, out=tmp_path / "results")
    with pytest.raises(BenchmarkError, match=message):
        run(spec)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
