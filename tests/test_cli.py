"""The command line end to end: ls, run, data build/check, report, and its errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.registry import METHODS
from benchmark.results import PREDICTIONS_FILE, RESULT_FILE
from benchmark.runner import RunSpec
from tests.ialdata import good_splits, write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_METRICS = {"ssa@1", "ssa@5", "sa@1", "sa@5", "recall@1", "recall@5", "recall@10", "median_error_m"}


def run_cli(command: str, *args: str) -> int:
    return main([command, "-q", *args])


def test_ls_lists_methods_and_protocols(capsys):
    assert run_cli("ls") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["method", "tiny-images"] for line in lines)
    assert any(line.split()[:2] == ["protocol", "pitts_ial"] for line in lines)


@pytest.mark.parametrize("command", [["run"], ["data"], ["report"], ["ls"], ["compare"]])
def test_every_help_has_a_copy_paste_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "python -m benchmark " + command[0] in capsys.readouterr().out


def test_run_all_on_tiny_then_report(tmp_path, capsys):
    out = tmp_path / "results"
    assert run_cli("run", "--protocol", "tiny", "--methods", "all", "--preset", "smoke", "--out", str(out),
                   "--latency-queries", "5") == 0
    results = {}
    for method in METHODS.names():  # `--methods all` ran every registered method
        (folder,) = (out / "tiny" / method).iterdir()
        result = json.loads((folder / RESULT_FILE).read_text())
        rows = [json.loads(line) for line in (folder / PREDICTIONS_FILE).read_text().splitlines()]
        assert result["schema_version"] and result["method"]["name"] == method
        assert set(result["metrics"]) >= CONTRACT_METRICS and set(result["ci95"]) >= CONTRACT_METRICS
        assert len(rows) == result["protocol"]["n_queries"]
        assert set(rows[0]) >= {"image", "address", "topk", "scores", "utm"}
        assert all(len(set(r["topk"])) == len(r["topk"]) <= RunSpec.k for r in rows)
        cost = result["cost"]
        assert set(cost["latency_ms"]) == {"encode", "search", "geocode", "total"}
        assert cost["storage_bytes"]["total"] == sum(cost["storage_bytes"][k] for k in ("model", "database", "map"))
        assert cost["peak_rss_bytes"] > 0
        results[method] = result["metrics"]
    assert results["tiny-images"]["ssa@1"] > results["prior"]["ssa@1"]
    assert results["oracle-gps"]["ssa@1"] < 100.0 and results["oracle-gps"]["median_error_m"] == 0.0
    assert results["tiny-images"]["recall@1"] is not None and results["prior"]["recall@1"] is None
    capsys.readouterr()

    assert run_cli("report", "--results", str(out), "--out", str(tmp_path / "reports")) == 0
    printed = capsys.readouterr().out
    assert "| Method" in printed and "SSA-1" in printed and "Storage (MB)" in printed and "tiny-images" in printed
    assert (tmp_path / "reports" / "tiny-smoke.md").read_text() in printed + "\n"


def test_nonexistent_data_root_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "benchmark", "run", "--protocol", "pitts_ial", "--data-root",
                           "/nonexistent", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent" in lines[0] and "--data-root" in lines[0]
    assert not out.exists()


def test_unknown_method_and_protocol_suggest_names(capsys, tmp_path):
    assert run_cli("run", "--protocol", "tiny", "--methods", "tiny-image", "--out", str(tmp_path)) == 2
    assert "did you mean 'tiny-images'" in capsys.readouterr().err
    assert run_cli("run", "--protocol", "pitts-ial", "--out", str(tmp_path)) == 2
    assert "did you mean 'pitts_ial'" in capsys.readouterr().err
    assert run_cli("run", "--protocol", "tiny", "--methods", "tiny-images:sise=8", "--out", str(tmp_path)) == 2
    assert "did you mean 'size'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_data_check_prints_counts_and_every_problem(tmp_path, capsys):
    root = write_dataset(tmp_path / "pitts", good_splits())
    assert run_cli("data", "check", "--protocol", "pitts_ial", "--data-root", str(root)) == 0
    out = capsys.readouterr().out
    for key in ("images", "locations", "sub_streets", "streets", "neighbourhoods", "missing_files"):
        assert key in out
    (root / "images" / good_splits()["train"][0][0]).unlink()
    (root / "images" / good_splits()["queries"][0][0]).unlink()
    assert run_cli("data", "check", "--protocol", "pitts_ial", "--data-root", str(root)) == 1
    out = capsys.readouterr().out
    assert out.count("image is missing") == 2 and re.search(r"missing_files\s+2\n", out)


def test_data_check_missing_root_is_bad_input(tmp_path):
    assert run_cli("data", "check", "--protocol", "pitts_ial", "--data-root", str(tmp_path / "none")) == 2


def test_data_build_tiny_then_check(tmp_path, capsys):
    root = tmp_path / "tiny"
    assert run_cli("data", "build", "--protocol", "tiny", "--data-root", str(root)) == 0
    assert (root / "annotations" / "tiny_queries.json").is_file() and "0 errors" in capsys.readouterr().out
    assert run_cli("data", "build", "--protocol", "tiny", "--data-root", str(root)) == 0
    assert "already built" in capsys.readouterr().out
    assert run_cli("data", "build", "--protocol", "pitts_ial", "--data-root", str(root)) == 2


def test_report_without_results_is_bad_input(tmp_path):
    assert run_cli("report", "--results", str(tmp_path / "none")) == 2
    (tmp_path / "empty").mkdir()
    assert run_cli("report", "--results", str(tmp_path / "empty")) == 2


def test_weights_flag_needs_one_method_that_loads_weights(capsys, tmp_path):
    assert run_cli("run", "--protocol", "tiny", "--methods", "prior,oracle-gps", "--weights", "w.pt",
                   "--out", str(tmp_path)) == 2
    assert "one method" in capsys.readouterr().err
    assert run_cli("run", "--protocol", "tiny", "--methods", "prior", "--weights", "w.pt", "--out", str(tmp_path)) == 2
    assert "loads no weights" in capsys.readouterr().err


def test_same_seed_same_predictions(tmp_path):
    for out in ("a", "b"):
        assert run_cli("run", "--protocol", "tiny", "--methods", "tiny-images,oracle-gps", "--seed", "3",
                       "--out", str(tmp_path / out), "--latency-queries", "2") == 0
    for method in ("tiny-images", "oracle-gps"):
        (a,) = (tmp_path / "a" / "tiny" / method).iterdir()
        (b,) = (tmp_path / "b" / "tiny" / method).iterdir()
        assert (a / PREDICTIONS_FILE).read_bytes() == (b / PREDICTIONS_FILE).read_bytes()
        ra, rb = (json.loads((d / RESULT_FILE).read_text()) for d in (a, b))
        assert ra["metrics"] == rb["metrics"] and ra["ci95"] == rb["ci95"]
