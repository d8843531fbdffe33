"""Result files: atomic, never overwritten, versioned, readable back."""

from __future__ import annotations

import json

import pytest

from benchmark.errors import BenchmarkError
from benchmark.report import current_runs
from benchmark.results import load_results, write_run


def _result(method: str = "prior", created: str = "2026-01-01T00:00:00+00:00", data: str = "h1",
            preset: str = "default", overrides: dict | None = None) -> dict:
    return {"schema_version": "1.0", "protocol": {"name": "tiny", "data_hash": data, "preset": preset},
            "method": {"name": method, "overrides": overrides or {}}, "created": created}


def test_write_then_refuse_to_overwrite(tmp_path):
    folder = write_run(tmp_path, _result(), [{"image": "a.jpg"}], "run1")
    assert folder == tmp_path / "tiny" / "prior" / "run1"
    assert json.loads((folder / "predictions.jsonl").read_text()) == {"image": "a.jpg"}
    with pytest.raises(BenchmarkError, match="never overwritten"):
        write_run(tmp_path, _result(), [], "run1")
    assert [p.name for p in (tmp_path / "tiny" / "prior").iterdir()] == ["run1"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_run(tmp_path, _result(), [{"bad": object()}], "run2")
    assert list((tmp_path / "tiny" / "prior").iterdir()) == []


def test_report_keeps_the_newest_run_per_variant_on_the_newest_data(tmp_path):
    write_run(tmp_path, _result(created="2026-01-01T00:00:00+00:00"), [], "old")
    write_run(tmp_path, _result(created="2026-02-01T00:00:00+00:00"), [], "new")
    write_run(tmp_path, _result(created="2026-02-02T00:00:00+00:00", overrides={"size": "8"}), [], "variant")
    write_run(tmp_path, _result("oracle-gps", created="2026-02-03T00:00:00+00:00"), [], "x")
    write_run(tmp_path, _result("oracle-gps", created="2025-01-01T00:00:00+00:00", data="h0"), [], "stale")
    write_run(tmp_path, _result("prior", preset="smoke"), [], "smoke")
    groups = current_runs(load_results(tmp_path))
    assert set(groups) == {("tiny", "default"), ("tiny", "smoke")}
    rows = sorted((r["_label"], r["_path"].split("/")[-2]) for r in groups[("tiny", "default")])
    assert rows == [("oracle-gps", "x"), ("prior", "new"), ("prior (size=8)", "variant")]


def test_malformed_or_foreign_result_files(tmp_path):
    bad = tmp_path / "tiny" / "prior" / "r"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text("{not json")
    with pytest.raises(BenchmarkError, match="malformed JSON"):
        load_results(tmp_path)
    (bad / "result.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(BenchmarkError, match="schema_version"):
        load_results(tmp_path)
    (bad / "result.json").write_text(json.dumps({**_result(), "schema_version": "9.0"}))
    with pytest.raises(BenchmarkError, match="not readable"):
        load_results(tmp_path)
