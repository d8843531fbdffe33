"""Result files: typed and versioned (1.3, read back from 1.0, 1.1 and 1.2 by migration), atomic, never overwritten."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.report import by_method, cost_table, current_runs, run_label, training_table, write_report
from benchmark.results import (
    MIGRATIONS,
    RESULT_FILE,
    SCHEMA_VERSION,
    Cost,
    MethodInfo,
    ProtocolInfo,
    Provenance,
    RunResult,
    StageLatency,
    Storage,
    Timing,
    TrainingInfo,
    latency_from_summary,
    load_results,
    migrate_1_0_to_1_1,
    migrate_1_1_to_1_2,
    migrate_1_2_to_1_3,
    write_run,
)

DATA = Path(__file__).parent / "data"
RESULTS_1_0 = DATA / "results-1.0"  # written by `benchmark run` at schema 1.0 (see test_committed_1_0_results...)


def _run(method: str = "prior", created: str = "2026-01-01T00:00:00+00:00", data: str = "h1",
         preset: str = "default", overrides: dict[str, str] | None = None,
         training: TrainingInfo | None = None) -> RunResult:
    lat = {"encode": {"median": 1.5, "p90": 2.0}, "search": {"median": 0.25, "p90": 0.5},
           "geocode": {"median": 0.25, "p90": 0.5}, "total": {"median": 2.0, "p90": 3.0}}
    metrics = {"ssa@1": 12.5, "ssa@5": 50.0, "sa@1": 25.0, "sa@5": 62.5, "recall@1": None, "recall@5": None,
               "recall@10": None, "median_error_m": 3.25}
    ci = {k: None if v is None else [max(0.0, v - 5), v + 5] for k, v in metrics.items()}
    return RunResult(
        protocol=ProtocolInfo(name="tiny", version="1", data_hash=data, n_queries=8, n_queries_dropped=0,
                              n_candidates=4, preset=preset, root="/data/tiny", options={"seed": 0, "px": 64}),
        method=MethodInfo(name=method, family="reference", options={"size": 16}, overrides=overrides or {},
                          config_hash="ab" * 32, weights=Provenance(source="none"),
                          cache_key=None if training is None else training.cache_key),
        metrics=metrics, ci95=ci,
        cost=Cost(storage_bytes=Storage.of(1000, 200, 30), latency_ms=latency_from_summary(lat),
                  throughput_qps=100.0, peak_rss_bytes=2**20, peak_cuda_bytes=None, prepare_seconds=0.5,
                  timing=Timing(rounds_ms=[2.0, 2.5], calibration_ms=[1.0, 1.1, 1.25]), search_bytes=3 * 2**19),
        env={"python": "3.11", "libraries": {"torch": "2"}}, git_rev="abc", seed=0, k=5, created=created,
        training=training)


TRAINED = TrainingInfo(seed=3, cache_key="cd" * 32, cached=False, steps=40, images_seen=160, wall_seconds=12.25,
                       loss_log="/cache/models/x/loss.jsonl", backbone="resnet18", input_size=[48, 64])


@pytest.mark.parametrize("training", [None, TRAINED], ids=["no-training", "training"])
def test_round_trip(training):
    run = _run(training=training)
    assert run.schema_version == SCHEMA_VERSION == "1.3"
    data = run.to_json()
    assert RunResult.from_json(data, "x.json") == run
    assert RunResult.from_json(json.loads(json.dumps(data)), "x.json") == run
    assert list(data) == ["schema_version", "protocol", "method", "metrics", "ci95", "cost", "env", "git_rev",
                          "seed", "k", "created", "training", "query_groups"]
    assert data["method"]["weights"] == {"source": "none"}  # path and sha256 only when known, as in 1.0
    assert data["protocol"]["options"] == {"seed": 0, "px": 64}
    assert "options" not in dataclasses.replace(run.protocol, options=None).to_json()
    assert data["cost"]["storage_bytes"]["total"] == 1230
    assert data["ci95"]["ssa@1"] == [7.5, 17.5] and data["ci95"]["recall@1"] is None


def test_write_then_refuse_to_overwrite(tmp_path):
    folder = write_run(tmp_path, _run(), [{"image": "a.jpg"}], "run1")
    assert folder == tmp_path / "tiny" / "prior" / "run1"
    assert json.loads((folder / "predictions.jsonl").read_text()) == {"image": "a.jpg"}
    assert RunResult.from_json(json.loads((folder / RESULT_FILE).read_text()), "f") == _run()
    with pytest.raises(BenchmarkError, match="never overwritten"):
        write_run(tmp_path, _run(), [], "run1")
    assert [p.name for p in (tmp_path / "tiny" / "prior").iterdir()] == ["run1"]
    (loaded,) = load_results(tmp_path)
    assert loaded.result == _run() and loaded.folder == folder and loaded.run_id == "run1"
    assert list(loaded.predictions()) == [{"image": "a.jpg"}]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_run(tmp_path, _run(), [{"bad": object()}], "run2")
    assert list((tmp_path / "tiny" / "prior").iterdir()) == []


def test_an_invalid_result_is_refused_before_anything_is_written(tmp_path):
    bad = _run()
    bad.metrics["ssa@1"] = float("nan")
    with pytest.raises(BenchmarkError, match=r"run2/result.json: metrics.ssa@1 must be a finite number") as e:
        write_run(tmp_path, bad, [], "run2")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "tiny").exists()


def test_report_keeps_the_newest_run_per_variant_on_the_newest_data(tmp_path):
    write_run(tmp_path, _run(created="2026-01-01T00:00:00+00:00"), [], "old")
    write_run(tmp_path, _run(created="2026-02-01T00:00:00+00:00"), [], "new")
    write_run(tmp_path, _run(created="2026-02-02T00:00:00+00:00", overrides={"size": "8"}), [], "variant")
    write_run(tmp_path, _run("oracle-gps", created="2026-02-03T00:00:00+00:00"), [], "x")
    write_run(tmp_path, _run("oracle-gps", created="2025-01-01T00:00:00+00:00", data="h0"), [], "stale")
    write_run(tmp_path, _run("prior", preset="smoke"), [], "smoke")
    groups = current_runs(load_results(tmp_path))
    assert set(groups) == {("tiny", "default"), ("tiny", "smoke")}
    rows = sorted((run_label(r), r.run_id) for r in groups[("tiny", "default")])
    assert rows == [("oracle-gps", "x"), ("prior", "new"), ("prior (size=8)", "variant")]


def test_training_table_lists_the_budget_of_trained_runs_only():
    assert training_table(by_method([_run("prior"), _run("oracle-gps")])) is None
    cached = TrainingInfo(seed=0, cache_key="ef" * 32, cached=True, wall_seconds=30.0, steps=5, images_seen=20,
                          backbone="resnet18 from the kotka backbone", input_size=[64, 88])
    table = training_table(by_method([_run("gem", training=TRAINED), _run("netvlad", training=cached),
                                      _run("prior")]))
    column = {name: [cells[j].plain() for _, cells in table.rows] for j, name in enumerate(table.columns)}
    assert sorted(label for label, _ in table.rows) == ["gem", "netvlad"]
    by_label = dict(zip((label for label, _ in table.rows), range(2)))
    assert column["Training (s)"][by_label["gem"]] == "12" and column["Training (s)"][by_label["netvlad"]] == \
        "30 (cached)"
    assert column["Input"][by_label["netvlad"]] == "64×88"
    assert column["Steps"][by_label["gem"]] == "40" and column["Images seen"][by_label["netvlad"]] == "20"
    assert "Training (s)" not in cost_table(by_method([_run("gem", training=TRAINED)])).columns


def test_malformed_or_foreign_result_files(tmp_path):
    bad = tmp_path / "tiny" / "prior" / "r"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text("{\n not json")
    with pytest.raises(BenchmarkError, match="malformed JSON at line 2"):
        load_results(tmp_path)
    (bad / "result.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(BenchmarkError, match="schema_version"):
        load_results(tmp_path)
    (bad / "result.json").write_text(json.dumps({**_run().to_json(), "schema_version": "9.0"}))
    with pytest.raises(BenchmarkError, match="not readable"):
        load_results(tmp_path)
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_results(tmp_path / "none")


def _drop(path: str):
    def edit(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]
    return edit


def _set(path: str, value):
    def edit(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return edit


@pytest.mark.parametrize("edit, expected", [
    (_drop("cost.peak_rss_bytes"), "cost.peak_rss_bytes is missing"),
    (_drop("method.weights.source"), "method.weights.source is missing"),
    (_drop("cost.latency_ms.geocode"), "cost.latency_ms.geocode is missing"),
    (_drop("metrics.sa@5"), "metrics.sa@5 is missing"),
    (_drop("training"), "training is missing"),
    (_set("cost.latency_ms.encode.median", "fast"), "cost.latency_ms.encode.median must be a number, got 'fast'"),
    (_set("cost.storage_bytes.model", 1.5), "cost.storage_bytes.model must be an integer, got 1.5"),
    (_set("seed", True), "seed must be an integer, got True"),
    (_set("metrics.ssa@1", "12"), "metrics.ssa@1 must be a number or null, got '12'"),
    (_set("metrics.ssa@1", float("inf")), "metrics.ssa@1 must be a finite number or null, got inf"),
    (_set("ci95.sa@1", [30.0, 20.0]), "ci95.sa@1 must have low <= high, got [30.0, 20.0]"),
    (_set("ci95.sa@1", [1.0]), "ci95.sa@1 must be [low, high] or null"),
    (_set("method.family", "vpr"), "method.family must be one of ial, retrieval, classification, reference"),
    (_set("method.overrides", {"size": 8}), "method.overrides.size must be a string, got 8"),
    (_set("training", {"seed": 0}), "training.cache_key is missing"),
    (_set("training", "yes"), "training must be an object or null, got 'yes'"),
    (_set("created", "2026-01-01T00:00:00"), "created must be a UTC time"),
    (_set("created", "yesterday"), "created must be an ISO 8601 time"),
    (_set("schema_version", "2.0"), "schema_version 2.0 is not readable by this version (reads 1.x)"),
    (_set("schema_version", 1.1), "schema_version must be a string like '1.3', got 1.1"),
    (_set("query_groups", {"kotka": {"n_queries": 3, "metrics": {}, "ci95": {}}}),
     "query_groups.kotka.metrics.ssa@1 is missing"),
    (_set("query_groups", {"kotka": []}), "query_groups.kotka must be an object"),
    (_drop("cost.timing"), "cost.timing is missing"),
    (_set("cost.timing.rounds_ms", []), "cost.timing.rounds_ms must be a non-empty list of milliseconds"),
    (_set("cost.timing.rounds_ms", [1.0, -1.0]), "cost.timing.rounds_ms must hold non-negative milliseconds"),
    (_set("cost.timing.calibration_ms", [1.0, 0.0, 1.0]), "cost.timing.calibration_ms must hold positive milliseconds"),
    (_set("cost.timing.calibration_ms", [1.0, 1.0]), "cost.timing.calibration_ms must have one value per round plus one (3), got 2"),
])
def test_validation_errors_are_one_line_naming_file_and_key(tmp_path, edit, expected):
    data = _run().to_json()
    edit(data)
    path = tmp_path / "tiny" / "prior" / "r1" / RESULT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    with pytest.raises(BenchmarkError) as e:
        load_results(tmp_path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_migration_table_and_what_1_0_lacked():
    assert set(MIGRATIONS) == {"1.0", "1.1", "1.2"}
    old = _run().to_json()
    old["schema_version"] = "1.0"
    for key in ("cache_key", "overrides"):
        del old["method"][key]
    old["method"]["weights"] = {"source": "from-scratch"}  # no path/sha256 keys when they are not known
    del old["protocol"]["options"], old["training"]  # a protocol that is not generated has no options
    frozen = copy.deepcopy(old)
    new = migrate_1_0_to_1_1(old)
    assert old == frozen  # the input is left alone
    assert new["schema_version"] == "1.1" and new["training"] is None and new["method"]["cache_key"] is None
    run = RunResult.from_json(old, "old.json")
    assert run.training is None and run.method.overrides == {} and run.protocol.options is None
    assert run.method.weights == Provenance(source="from-scratch")


def test_migration_1_1_adds_a_null_timing():
    old = _run().to_json()
    old["schema_version"] = "1.1"
    del old["cost"]["timing"]
    frozen = copy.deepcopy(old)
    new = migrate_1_1_to_1_2(old)
    assert old == frozen and new["schema_version"] == "1.2" and new["cost"]["timing"] is None
    assert RunResult.from_json(old, "old.json").cost.timing is None


def test_migration_1_2_adds_a_null_search_structure_and_the_cost_table_leaves_it_blank():
    old = _run().to_json()
    old["schema_version"] = "1.2"
    del old["cost"]["search_bytes"]
    frozen = copy.deepcopy(old)
    new = migrate_1_2_to_1_3(old)
    assert old == frozen and new["schema_version"] == "1.3" and new["cost"]["search_bytes"] is None
    table = cost_table(by_method([RunResult.from_json(old, "old.json"), _run("oracle-gps")]))
    memory = {label: dict(zip(table.columns, cells))["Memory (MB)"].plain() for label, cells in table.rows}
    assert memory == {"prior": "–", "oracle-gps": "1.500"}
    assert any("before result schema 1.3" in note for note in table.notes)


def test_cost_table_memory_is_the_search_structure_and_peak_rss_its_own_column():
    table = cost_table(by_method([_run("prior")]))
    assert table.columns[:2] == ["Storage (MB)", "Memory (MB)"] and "Peak RSS (MB)" in table.columns
    (_, cells), = table.rows
    column = dict(zip(table.columns, cells))
    assert column["Memory (MB)"].number == 1.5 and column["Peak RSS (MB)"].number == 1.0  # not the same number
    assert column["Storage (MB)"].number == 1230 / 2**20
    assert not any("before result schema 1.3" in note for note in table.notes)


def test_committed_1_0_results_load_through_the_migration():
    """tests/data/results-1.0: a real schema-1.0 run of gem, addressclip and oracle-gps on tiny (smoke).

    Made with the code before schema 1.1: `python -m benchmark run --protocol tiny --preset smoke
    --methods gem,addressclip,oracle-gps -q --out DIR`, then copied with the <protocol>/<method>/<run-id> layout.
    """
    raw = [json.loads(p.read_text()) for p in sorted(RESULTS_1_0.rglob(RESULT_FILE))]
    assert [d["schema_version"] for d in raw] == ["1.0"] * 3
    runs = load_results(RESULTS_1_0)
    assert len(runs) == 3
    by_name = {r.result.method.name: r.result for r in runs}
    assert {n: r.method.family for n, r in by_name.items()} == \
        {"gem": "retrieval", "addressclip": "ial", "oracle-gps": "reference"}
    for run, data in zip(runs, raw):
        r = run.result
        assert r.schema_version == "1.3" and r.training is None and r.method.cache_key is None
        assert r.cost.timing is None  # 1.0 and 1.1 runs kept no timing rounds
        assert r.metrics == data["metrics"] and r.protocol.options == data["protocol"]["options"]
        assert RunResult.from_json(r.to_json(), "again") == r
        rows = list(run.predictions())
        assert len(rows) == r.protocol.n_queries == 36 and set(rows[0]) >= {"image", "address", "topk", "utm"}
    assert by_name["gem"].method.weights.source == "from-scratch" and by_name["gem"].method.weights.sha256
    assert by_name["oracle-gps"].metrics["median_error_m"] == 0.0


def test_report_of_committed_1_0_results_is_unchanged(tmp_path):
    """The Markdown equals what the 1.0-era report rendered from the same files (tests/data/report-1.0-*.md;
    since schema 1.2 its rows are in registry order: references, IAL, retrieval; since 1.3 Table 5 has Memory,
    the search structure, blank for these runs, and Peak RSS)."""
    text, written = write_report(RESULTS_1_0, tmp_path)
    assert [p.name for p in written] == ["tiny-smoke.md"]
    expected = (DATA / "report-1.0-tiny-smoke.md").read_text(encoding="utf-8")
    assert written[0].read_text(encoding="utf-8") == expected and text == expected
    assert "Training (s)" not in text


def test_latency_from_summary():
    lat = latency_from_summary({"encode": {"median": 1, "p90": 2}})
    assert lat == {"encode": StageLatency(median=1.0, p90=2.0)} and isinstance(lat["encode"].median, float)


def test_a_protocol_variant_is_its_own_report_section_and_file(tmp_path):
    from dataclasses import replace

    base = _run(created="2026-02-01T00:00:00+00:00")
    shifted = replace(base, protocol=replace(base.protocol, data_hash="h2", overrides={"queries": "shifted"}),
                      created="2026-02-02T00:00:00+00:00")
    write_run(tmp_path / "r", base, [], "base")
    write_run(tmp_path / "r", shifted, [], "shifted")
    groups = current_runs(load_results(tmp_path / "r"))
    assert set(groups) == {("tiny", "default"), ("tiny:queries=shifted", "default")}  # neither is stale
    text, written = write_report(tmp_path / "r", tmp_path / "out")
    assert sorted(p.name for p in written) == ["tiny.md", "tiny_queries-shifted.md"]
    assert "## tiny:queries=shifted (robustness variant)" in text


def test_geocoder_table_pivots_each_coordinate_method_by_geocoder_and_noise():
    from benchmark.report import geocoder_table

    def variant(name: str, family: str, ssa: float, **given: str) -> RunResult:
        run = _run(name, overrides=dict(given))
        options = {"geocoder": "gazetteer", "gps_noise_m": 0.0, **{k: (float(v) if k == "gps_noise_m" else v)
                                                                    for k, v in given.items()}}
        method = dataclasses.replace(run.method, family=family, options=options)
        return dataclasses.replace(run, method=method, metrics={**run.metrics, "ssa@1": ssa})

    runs = [variant("oracle-gps", "reference", 80.0), variant("oracle-gps", "reference", 90.0, geocoder="streetnames"),
            variant("gem", "retrieval", 40.0), variant("gem", "retrieval", 35.0, gps_noise_m="8"),
            variant("gem", "retrieval", 30.0, geocoder="streetnames", gps_noise_m="8"),
            variant("gem", "retrieval", 20.0, index="ivfpq")]  # another pipeline option: not a geocoder variant
    table = geocoder_table(by_method(runs))
    assert table.columns == ["gazetteer", "streetnames", "gazetteer, σ 8 m", "streetnames, σ 8 m"]
    cells = {label: [c.plain().split()[0] for c in row] for label, row in table.rows}
    assert cells == {"oracle-gps": ["80.00", "90.00", "–", "–"], "gem": ["40.00", "–", "35.00", "30.00"]}
    assert geocoder_table(by_method(runs[2:3])) is None  # one setting: nothing to compare
