"""The regression gate (`python -m benchmark compare`): passes on itself, fails on a real drop, says
inconclusive on a few flips, fails a 1.5× slower latency series but not a 1.05× one, refuses to compare
different data, and names a malformed file."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.compare import compare, load_side, mcnemar_one_sided, paired_bootstrap
from benchmark.results import RESULT_FILE, Storage, Timing, write_run
from tests.test_results import _run

N = 1000
ADDRESSES = [f"Street {i}, Town (Cross {i}, Town)" for i in range(20)]
ROUNDS = (1.00, 1.03, 0.98, 1.01, 0.99, 1.02, 0.97)


def _rows(correct: np.ndarray) -> list[dict]:
    rows = []
    for i, ok in enumerate(correct):
        truth = ADDRESSES[i % len(ADDRESSES)]
        wrong = ADDRESSES[(i + 1) % len(ADDRESSES)]
        first = truth if ok else wrong
        rest = [a for a in ADDRESSES if a != first][:4]
        rows.append({"image": f"queries/q{i:04d}.jpg", "address": truth, "topk": [first, *rest],
                     "scores": [1.0, 0.5, 0.4, 0.3, 0.2], "utm": None})
    return rows


def _write(root: Path, correct: np.ndarray, rounds=ROUNDS, calibration=(10.0, 10.0), data: str = "h1",
           storage: int = 1000, name: str = "r1") -> Path:
    run = _run(data=data)
    cost = dataclasses.replace(run.cost, storage_bytes=Storage.of(storage, 0, 0),
                               timing=Timing(rounds_ms=rounds,
                                             calibration_ms=np.linspace(*calibration, len(rounds) + 1)))
    protocol = dataclasses.replace(run.protocol, n_queries=len(correct))
    metrics = {**run.metrics, "ssa@1": float(correct.mean() * 100)}
    write_run(root, dataclasses.replace(run, cost=cost, protocol=protocol, metrics=metrics), _rows(correct), name)
    return root


@pytest.fixture
def correct() -> np.ndarray:
    return np.random.default_rng(0).random(N) < 0.6


def _gate(tmp_path, base: Path, cand: Path, *extra: str) -> tuple[int, str, dict]:
    out = tmp_path / "verdict.json"
    code = main(["compare", str(base), str(cand), "--json", str(out), *extra])
    return code, out.read_text() if out.exists() else "", json.loads(out.read_text()) if out.exists() else {}


def _checks(verdict: dict, metric: str) -> list[dict]:
    return [c for c in verdict["checks"] if c["metric"] == metric]


def test_a_run_compared_with_itself_passes_even_strict(tmp_path, correct, capsys):
    base = _write(tmp_path / "base", correct)
    assert _gate(tmp_path, base, base)[0] == 0
    assert _gate(tmp_path, base, base, "--strict")[0] == 0
    assert "no regression" in capsys.readouterr().out


def test_ten_percent_of_correct_answers_wrong_is_a_regression_listing_them(tmp_path, correct, capsys):
    worse = correct.copy()
    right = np.flatnonzero(correct)
    flipped = right[:: 10]  # 10 % of the correct top-1 answers
    worse[flipped] = False
    code, _, verdict = _gate(tmp_path, _write(tmp_path / "base", correct), _write(tmp_path / "cand", worse))
    assert code == 1
    ssa1 = _checks(verdict, "ssa@1")[0]
    assert ssa1["verdict"] == "regression" and ssa1["losses"] == len(flipped) and ssa1["gains"] == 0
    assert ssa1["p"] < 1e-10 and ssa1["interval"][1] < 0 < -ssa1["change"]
    assert ssa1["flipped"] == [f"queries/q{i:04d}.jpg" for i in flipped]
    out = capsys.readouterr().out
    assert "❌ regression" in out and f"queries/q{flipped[0]:04d}.jpg" in out and "<details>" in out


def test_two_flipped_queries_are_inconclusive_and_fail_only_strict(tmp_path, correct):
    worse = correct.copy()
    worse[np.flatnonzero(correct)[:2]] = False
    base, cand = _write(tmp_path / "base", correct), _write(tmp_path / "cand", worse)
    code, _, verdict = _gate(tmp_path, base, cand)
    assert code == 0 and _checks(verdict, "ssa@1")[0]["verdict"] == "inconclusive"
    assert _gate(tmp_path, base, cand, "--strict")[0] == 1


def test_a_significant_drop_below_the_minimum_effect_passes(tmp_path):
    correct = np.zeros(20000, bool)
    correct[:12000] = True
    worse = correct.copy()
    worse[:150] = False  # 0.75 points, p ~ 1e-45
    code, _, verdict = _gate(tmp_path, _write(tmp_path / "base", correct), _write(tmp_path / "cand", worse))
    check = _checks(verdict, "ssa@1")[0]
    assert code == 0 and check["p"] < 1e-10 and check["verdict"] == "pass"
    assert _gate(tmp_path, tmp_path / "base", tmp_path / "cand", "--min-effect", "0.5")[0] == 1


@pytest.mark.parametrize("slowdown, verdict, code", [(1.5, "regression", 1), (1.05, "pass", 0)])
def test_latency_series_slowed(tmp_path, correct, slowdown, verdict, code):
    slower = tuple(r * slowdown for r in ROUNDS[::-1])
    got, _, result = _gate(tmp_path, _write(tmp_path / "base", correct), _write(tmp_path / "cand", correct, slower))
    assert got == code and _checks(result, "latency")[0]["verdict"] == verdict


def test_latency_is_read_in_calibration_units(tmp_path, correct):
    """A machine 1.4 times as slow (calibration and latency both ×1.4) is not a slower method."""
    slower = tuple(r * 1.4 for r in ROUNDS)
    base = _write(tmp_path / "base", correct)
    code, _, result = _gate(tmp_path, base, _write(tmp_path / "cand", correct, slower, calibration=(14.0, 14.0)))
    latency = _checks(result, "latency")[0]
    assert code == 0 and latency["verdict"] == "pass" and latency["change"] == pytest.approx(1.0)


def test_latency_on_another_kind_of_machine_is_not_judged(tmp_path, correct):
    """Calibration ×2.4 apart: the per-operation speeds need not scale alike, so even ×1.5 calibrated is shown
    only; a looser --machine-ratio judges it."""
    base = _write(tmp_path / "base", correct)
    cand = _write(tmp_path / "cand", correct, tuple(r * 3.6 for r in ROUNDS), calibration=(24.0, 24.0))
    code, _, result = _gate(tmp_path, base, cand)
    latency = _checks(result, "latency")[0]
    assert code == 0 and latency["verdict"] == "not judged" and "another kind of machine" in latency["note"]
    assert _gate(tmp_path, base, cand, "--machine-ratio", "3")[0] == 1


def test_calibration_drift_is_unstable_not_a_verdict(tmp_path, correct):
    base = _write(tmp_path / "base", correct)
    cand = _write(tmp_path / "cand", correct, tuple(r * 1.5 for r in ROUNDS), calibration=(10.0, 16.0))
    code, _, result = _gate(tmp_path, base, cand)
    assert code == 0 and _checks(result, "latency")[0]["verdict"] == "unstable"
    assert _gate(tmp_path, base, cand, "--strict")[0] == 1


def test_storage_growth_beyond_ten_percent_fails(tmp_path, correct):
    base = _write(tmp_path / "base", correct)
    assert _gate(tmp_path, base, _write(tmp_path / "c1", correct, storage=1050))[0] == 0
    code, _, result = _gate(tmp_path, base, _write(tmp_path / "c2", correct, storage=1200))
    assert code == 1 and _checks(result, "storage")[0]["verdict"] == "regression"
    assert _checks(result, "peak memory")[0]["verdict"] == "not judged"  # process RSS: shown only


def test_a_different_data_hash_is_not_comparable(tmp_path, correct, capsys):
    code, _, result = _gate(tmp_path, _write(tmp_path / "base", correct),
                            _write(tmp_path / "cand", correct, data="h2"))
    assert code == 3 and result["not_comparable"][0]["why"].startswith("data hash")
    assert "not comparable" in capsys.readouterr().out


def test_different_query_lists_are_not_comparable(tmp_path, correct):
    code, _, result = _gate(tmp_path, _write(tmp_path / "base", correct),
                            _write(tmp_path / "cand", correct[:-1]))
    assert code == 3 and "queries" in result["not_comparable"][0]["why"]


def test_a_malformed_result_exits_2_naming_the_file(tmp_path, correct, capsys):
    base = _write(tmp_path / "base", correct)
    cand = tmp_path / "cand"
    shutil.copytree(base, cand)
    broken = next(cand.rglob(RESULT_FILE))
    broken.write_text("{ not json")
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and err.count("\n") == 1


def test_a_single_result_json_and_a_missing_path(tmp_path, correct, capsys):
    base = _write(tmp_path / "base", correct)
    one = next(base.rglob(RESULT_FILE))
    assert main(["compare", str(one), str(one.parent)]) == 0
    assert main(["compare", str(one), str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_update_baseline_replaces_the_folder_with_provenance(tmp_path, correct):
    base = _write(tmp_path / "base", correct)
    worse = correct.copy()
    worse[np.flatnonzero(correct)[::5]] = False
    cand = _write(tmp_path / "cand", worse, name="r2")
    assert main(["compare", str(base), str(cand), "--update-baseline"]) == 0
    assert [p.parent.name for p in base.rglob(RESULT_FILE)] == ["r2"]
    provenance = json.loads((base / "PROVENANCE.json").read_text())
    assert provenance["runs"] and "commit" in provenance and "machine" in provenance
    assert len(load_side(base, "baseline")) == 1
    assert compare(load_side(base, "b"), load_side(cand, "c")).exit_code() == 0


def test_mcnemar_and_paired_bootstrap():
    assert mcnemar_one_sided(0, 0) == 1.0
    assert mcnemar_one_sided(7, 0) == pytest.approx(0.5 ** 7)
    assert mcnemar_one_sided(2, 8) > 0.9
    b = np.array([True] * 50 + [False] * 50)
    c = np.array([True] * 40 + [False] * 60)
    low, high = paired_bootstrap(b, c, 2000, 0)
    assert low < -10 < high < 0
    assert paired_bootstrap(b, c, 2000, 0) == (low, high)  # seeded
