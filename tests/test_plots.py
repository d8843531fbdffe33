"""The report's figures (benchmark/plots.py): drawn from result files on disk, every figure in PNG and SVG,
byte-identical when rebuilt; the Pareto front, junctions and distance bins on hand-made numbers; runs without
a loss log, recall, predictions or street map are left out, not errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.plots import (
    FIGURES,
    Queries,
    accuracy_at_k,
    accuracy_at_ks,
    accuracy_vs_junction_distance,
    best_per_family,
    bin_names,
    distance_bins,
    junction_distances,
    junctions,
    location_shares,
    main_runs,
    pareto_front,
    query_latency_ms,
    query_map,
    recall_curves,
    training_curves,
    true_position,
    write_plots,
)
from benchmark.report import run_label
from benchmark.results import (
    RESULT_FILE,
    LoadedRun,
    Storage,
    TrainingInfo,
    latency_from_summary,
    read_run,
    write_run,
)
from protocols.vpr_names import format_vpr_name
from tests.test_results import _run

# A toy town: Alpha, Beta and Gamma meet at (100, 0); Delta lies apart (its ends are no junction).
STREETS = {
    "Alpha Street, Town (Beta Street, Town)": [[[0.0, 0.0], [100.0, 0.0]]],
    "Beta Street, Town (Alpha Street, Town)": [[[100.0, 0.0], [100.0, 100.0]]],
    "Gamma Street, Town (Alpha Street, Town)": [[[100.0, 0.0], [150.0, 0.0], [200.0, 0.0]]],
    "Delta Street, Town": [[[300.0, 300.0], [400.0, 300.0]]],
}
ADDRESSES = list(STREETS)
# Queries on Alpha Street at these distances (m) from the junction at (100, 0), then two on Delta Street.
DISTANCES = (2.0, 5.0, 8.0, 12.0, 15.0, 25.0, 30.0, 35.0, 50.0, 90.0)
POSITIONS = [(100.0 - d, 0.0) for d in DISTANCES] + [(320.0, 300.0), (380.0, 300.0)]
TRUTH = [ADDRESSES[0]] * len(DISTANCES) + [ADDRESSES[3]] * 2
LAT = {"encode": 1.0, "search": 0.5, "geocode": 0.25}


def _rows(correct: list[bool], retrieved: bool = False) -> list[dict]:
    rows = []
    for i, ((east, north), truth, ok) in enumerate(zip(POSITIONS, TRUTH, correct)):
        others = [a for a in ADDRESSES if a != truth]
        topk = [truth, *others] if ok else [others[i % 3], truth, *[a for a in others if a != others[i % 3]]]
        row = {"image": "queries/" + format_vpr_name(east, north, 35, "V", 60.0, 24.0, pano_id=f"P{i}"),
               "address": truth, "topk": topk, "scores": [1.0, 0.5, 0.25, 0.125], "utm": None}
        if retrieved:
            row |= {"utm": [east + 30.0, north], "retrieved": [i, i + 1, i + 2]}
        rows.append(row)
    return rows


def _loss_log(path: Path, start: float) -> str:
    path.write_text("".join(json.dumps({"step": s, "lr": 1e-3, "address": start / s, "total": start / s}) + "\n"
                            for s in range(1, 41)) + "not json\n", encoding="utf-8")
    return str(path)


def _write(out: Path, data: Path, name: str, family: str, correct: list[bool], storage: int = 10**6,
           latency: dict[str, float] = LAT, recall: bool = False, loss_log: str | None = None,
           seed: int = 0) -> LoadedRun:
    base = _run(method=name)
    hits = float(np.mean(correct) * 100)
    metrics = {**base.metrics, "ssa@1": hits}
    ci = {**base.ci95, "ssa@1": (max(0.0, hits - 10), min(100.0, hits + 10))}
    if recall:
        for n, value in ((1, 40.0), (5, 60.0), (10, 70.0)):
            metrics[f"recall@{n}"], ci[f"recall@{n}"] = value, (value - 5, value + 5)
    summary = {stage: {"median": v, "p90": v} for stage, v in {**latency, "total": sum(latency.values())}.items()}
    cost = dataclasses.replace(base.cost, storage_bytes=Storage.of(storage, 0, 0),
                               latency_ms=latency_from_summary(summary))
    training = None if loss_log is None else TrainingInfo(seed=seed, cache_key="cd" * 32, cached=False, steps=40,
                                                          loss_log=loss_log)
    result = dataclasses.replace(
        base, method=dataclasses.replace(base.method, family=family), metrics=metrics, ci95=ci, cost=cost,
        protocol=dataclasses.replace(base.protocol, root=str(data), n_queries=len(correct)), training=training,
        seed=seed, created=f"2026-01-01T00:00:0{seed}+00:00")
    folder = write_run(out, result, _rows(correct, retrieved=recall), f"run-{name}-{seed}")
    return read_run(folder / RESULT_FILE)


def _pattern(every: int) -> list[bool]:
    return [i % every != 0 for i in range(len(POSITIONS))]


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> tuple[Path, list[LoadedRun]]:
    """Result files of five methods (one with a second seed) on the toy town, and its streets.geojson."""
    root = tmp_path_factory.mktemp("plots")
    data = root / "data"
    data.mkdir()
    features = [{"type": "Feature", "properties": {"address": a, "utm_coordinates": parts}, "geometry": None}
                for a, parts in STREETS.items()]
    (data / "streets.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = root / "results"
    runs = [
        _write(out, data, "oracle-gps", "reference", [True] * len(POSITIONS), storage=0,
               latency={"encode": 0.0, "search": 0.0, "geocode": 0.0}),
        _write(out, data, "addressclip", "ial", _pattern(3), storage=5 * 10**6,
               loss_log=_loss_log(root / "addressclip.jsonl", 5.0)),
        _write(out, data, "addressclip", "ial", _pattern(5), storage=5 * 10**6, seed=1,
               loss_log=_loss_log(root / "addressclip-1.jsonl", 5.0)),
        _write(out, data, "clip-address", "ial", _pattern(2), storage=5 * 10**6,
               loss_log=str(root / "missing.jsonl")),  # trained, but its loss log is gone
        _write(out, data, "mixvpr", "retrieval", _pattern(4), storage=20 * 10**6, recall=True,
               loss_log=_loss_log(root / "mixvpr.jsonl", 1.5)),
        _write(out, data, "tiny-images", "retrieval", _pattern(2), storage=3 * 10**6, recall=True),
    ]
    return root, runs


@pytest.fixture(scope="module")
def built(town, tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """write_plots on the toy town, once for the module."""
    out = tmp_path_factory.mktemp("figures")
    return out, write_plots(town[1], out, "toy")


def test_every_figure_is_written_as_png_and_svg(built):
    out, written = built
    assert list(written) == list(FIGURES)
    written = dict(written)
    assert written.pop("geocells") == []  # the toy town has no geocell run (tests/test_classification.py draws one)
    assert written.pop("backbones") == []  # nor two image towers of one method (tests/test_backbones.py draws one)
    for name, paths in written.items():
        assert paths == [out / f"toy-{name}.png", out / f"toy-{name}.svg"], name
        png, svg = (p.read_bytes() for p in paths)
        assert png.startswith(b"\x89PNG") and len(png) > 5000, name
        assert svg.startswith(b"<?xml") and b"<svg" in svg, name
        assert b"<dc:date>" not in svg and b"Matplotlib v" not in svg and b"Matplotlib version" not in png


def test_rebuilding_gives_identical_bytes(built, town, tmp_path):
    out, written = built
    again = write_plots(town[1], tmp_path, "toy")
    for name, paths in again.items():
        for path, before in zip(paths, written[name]):
            assert path.read_bytes() == before.read_bytes(), path.name


def test_pareto_front_on_a_hand_made_example():
    cost = [1.0, 2.0, 3.0, 4.0, 2.0, 5.0, 0.5]
    accuracy = [10.0, 30.0, 20.0, 40.0, 30.0, 40.0, 5.0]
    # 6 is cheapest; 0, 1 and 3 each buy accuracy; 4 repeats 1, 2 is beaten by 1, 5 by 3
    assert pareto_front(cost, accuracy) == [6, 0, 1, 3]
    assert pareto_front([3.0, 1.0], [50.0, 60.0]) == [1]
    assert pareto_front([1.0], [0.0]) == [0]
    assert pareto_front([], []) == []


def test_junctions_are_end_points_shared_by_two_sub_streets():
    streets = [[np.array(p) for p in parts] for parts in STREETS.values()]
    assert {tuple(p) for p in junctions(streets)} == {(100.0, 0.0)}
    near = [[np.array([[0.0, 0.0], [10.0, 0.0]])], [np.array([[10.5, 0.0], [10.5, 20.0]])],
            [np.array([[12.0, 0.0], [30.0, 0.0]])]]
    assert {tuple(p) for p in junctions(near)} == {(10.0, 0.0), (10.5, 0.0)}  # within 1 m; 12 m is not
    apart = [[np.array([[0.0, 0.0], [10.0, 0.0]])], [np.array([[50.0, 0.0], [60.0, 0.0]])]]
    assert len(junctions(apart)) == 4  # no shared point: every end point
    assert junctions([]).shape == (0, 2)


def test_junction_distances_and_bins():
    d = junction_distances(np.array([[100.0, 3.0], [150.0, 0.0], [np.nan, np.nan]]), np.array([[100.0, 0.0]]))
    np.testing.assert_allclose(d[:2], [3.0, 50.0])
    assert math.isnan(d[2])
    bins = distance_bins(np.array([0.0, 5.0, 10.0, 19.9, 20.0, 39.0, 40.0, 1000.0, np.nan, -1.0]))
    assert bins.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1, -1]
    assert bin_names() == ["0–10 m", "10–20 m", "20–40 m", "≥40 m"]


def test_junction_figure_returns_its_numbers(town, tmp_path):
    _, runs = town
    paths, table = accuracy_vs_junction_distance(runs, tmp_path, "toy")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert list(table.columns) == ["method", "bin", "n", "ssa@1"]
    # Alpha's queries fall 3, 2, 3, 2 into the bins; Delta's two are 372 m and more away
    oracle = table[table.method == "oracle-gps"]
    assert oracle.n.tolist() == [3, 2, 3, 4] and oracle["ssa@1"].tolist() == [100.0] * 4
    mixvpr = table[table.method == "mixvpr"]["ssa@1"]  # wrong on queries 0 (2 m), 4 (15 m), 8 (50 m)
    assert mixvpr.tolist() == pytest.approx([200 / 3, 50.0, 100.0, 75.0])
    # the main runs only: one row per bin for addressclip, its lowest seed
    assert len(table[table.method == "addressclip"]) == 4


def test_accuracy_at_ks_by_hand():
    queries = Queries(truth=["A, T", "B, T (C, T)"], topk=[["B, T"] + ["A, T"] + ["C, T"] * 10,
                                                           ["B, T (D, T)", "B, T (C, T)"]],
                      true_utm=np.full((2, 2), np.nan))
    table = accuracy_at_ks(queries)
    assert table.k.tolist() == list(range(1, 11))  # at most 10
    assert table.ssa.tolist()[:3] == [0.0, 100.0, 100.0]
    assert table.sa.tolist()[:2] == [50.0, 100.0]  # B's street is right at k = 1


def test_true_position_comes_from_the_image_name():
    assert true_position("queries/" + format_vpr_name(385449.45, 6672010.18, 35, "V", 60.1, 24.9)) == \
        (385449.45, 6672010.18)
    assert all(math.isnan(v) for v in true_position("queries/img_0001.jpg"))
    assert all(math.isnan(v) for v in true_position(None))


def test_best_run_per_family_and_main_runs(town):
    _, runs = town
    best = best_per_family(runs)
    assert [(run_label(r), r.result.seed) for r in best] == [("addressclip", 1), ("mixvpr", 0)]
    assert [(run_label(r), r.result.seed) for r in main_runs(runs)] == [
        ("oracle-gps", 0), ("tiny-images", 0), ("addressclip", 0), ("clip-address", 0), ("mixvpr", 0)]
    assert query_latency_ms(runs[1]) == pytest.approx(1.75)


def test_runs_without_loss_log_recall_predictions_or_map_are_left_out(town, tmp_path):
    root, runs = town
    oracle, clip_address = runs[0], runs[3]
    assert recall_curves([oracle, clip_address], tmp_path, "x") == []
    assert training_curves([oracle, clip_address], tmp_path, "x") == []  # its loss log is missing
    assert not list(tmp_path.iterdir())
    assert len(training_curves(runs, tmp_path, "x")) == 2  # the others still draw

    # a run whose predictions.jsonl is gone, on a dataset without a street map
    out = root / "bare"
    run = _write(out, root / "no-data", "mixvpr", "retrieval", _pattern(2), recall=True)
    (run.folder / "predictions.jsonl").unlink()
    assert accuracy_at_k([run], tmp_path, "bare") == []
    assert query_map([run], tmp_path, "bare") == []
    paths, table = accuracy_vs_junction_distance([run, oracle], tmp_path, "bare")
    assert len(paths) == 2 and set(table.method) == {"oracle-gps"}
    assert len(accuracy_at_k([run, oracle], tmp_path, "bare")) == 2
    nomap = _write(out, root / "no-data", "addressclip", "ial", _pattern(2))
    paths, empty = accuracy_vs_junction_distance([nomap], tmp_path, "nomap")
    assert paths == [] and empty.empty and list(empty.columns) == ["method", "bin", "n", "ssa@1"]
    assert len(query_map([nomap], tmp_path, "nomap")) == 2  # the dots without the streets
    assert write_plots([], tmp_path / "none", "none") == {name: [] for name in FIGURES}


def test_queries_at_one_place_are_one_dot_coloured_by_their_share_right():
    utm = np.array([[10.0, 20.0], [10.2, 19.9], [50.0, 60.0], [10.1, 20.0], [90.0, 0.0]])
    right = np.array([True, False, True, True, False])
    positions, counts, shares = location_shares(utm, right)
    # one place per position (to 1 m), in position order
    assert counts.tolist() == [3, 1, 1] and shares.tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    assert positions.ravel().tolist() == pytest.approx([10.1, 59.9 / 3, 50.0, 60.0, 90.0, 0.0])


def test_training_curves_get_one_panel_per_family(town, tmp_path, monkeypatch):
    import benchmark.plots as plots

    _, runs = town
    panels = []
    figure = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda ncols=1, *a: (panels.append(ncols), figure(ncols, *a))[1])
    assert len(training_curves(runs, tmp_path, "x")) == 2
    logged = [r for r in main_runs(runs) if plots.loss_log_path(r) is not None]
    assert panels == [len({r.result.method.family for r in logged})] and panels[0] >= 2
