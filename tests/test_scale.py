"""The cost-vs-size curve: memory accounting, distractors, Recall@1 with distractors, the command end to end on
`tiny`, and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.scale import ScaleSpec, distractors, markdown, retrieval_points, unit_rows
from methods.retrieval import RetrievalOptions, build_index, index_nbytes


def test_memory_is_the_flat_vectors_or_the_serialised_ivfpq():
    rows = unit_rows(2000, 64, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    assert index_nbytes(build_index(rows, RetrievalOptions())) == 2000 * 64 * 4
    assert index_nbytes(build_index(rows, RetrievalOptions(index="ivfpq"))) < 2000 * 64 * 4 / 4


def test_distractors_are_unit_rows_near_the_real_ones():
    rng = np.random.default_rng(0)
    real = unit_rows(50, 32, rng)
    near, far = distractors(real, 500, 0.1, rng), distractors(real, 500, 10.0, rng)
    assert near.shape == (500, 32) and np.allclose(np.linalg.norm(near, axis=1), 1, atol=1e-5)
    best = lambda d: (d @ real.T).max(axis=1).mean()  # noqa: E731 - similarity to the nearest real row
    assert best(near) > 0.95 > best(far)


def test_recall_counts_only_real_positives():
    """Queries equal to rows 0 and 1 find them; Recall@1 counts a hit only on a real row among its positives,
    so when row 1 is a distractor (real=1), a positive list naming it does not make query 1 a hit."""
    rows = np.eye(4, 8, dtype=np.float32)
    queries, positives = rows[:2].copy(), [np.array([0]), np.array([1])]
    flat, ivfpq = retrieval_points("toy", rows, queries, ScaleSpec(sizes=[4], index_options={}), real=4, positives=positives)
    assert (flat.structure, ivfpq.structure) == ("flat", "ivfpq")
    assert flat.recall_at_1 == 100.0 and flat.memory_bytes == 4 * 8 * 4
    flat, _ = retrieval_points("toy", rows, queries, ScaleSpec(sizes=[4], index_options={}), real=1, positives=positives)
    assert flat.recall_at_1 == 50.0


def test_the_command_on_tiny_writes_the_curve(tmp_path):
    out = tmp_path / "scale"
    assert main(["scale", "-q", "--sizes", "1e3,3e3", "--dims", "gem=64,wide=2048", "--candidates", "1e2,1e3",
                 "--method", "tiny-images", "--protocol", "tiny", "--preset", "smoke", "--queries", "16",
                 "--max-gb", "0.02", "--index-options", "pq_bytes=16,rerank=4", "--out", str(out)]) == 0
    saved = json.loads((out / "scale.json").read_text())
    points = saved["points"]
    assert {p["label"] for p in points} >= {"gem", "wide", "tiny-images (real, tiny)", "addressclip (paper)"}
    skipped = [p for p in points if p["skipped"]]
    assert {(p["label"], p["size"]) for p in skipped} == {("wide", 3000)}  # 3000 x 2048 x 4 B > 0.02 GB
    real = [p for p in points if p["recall_at_1"] is not None]
    assert {(p["structure"], p["size"]) for p in real} == {(s, n) for s in ("flat", "ivfpq", "ivfpq+rerank4")
                                                           for n in (1000, 3000)}
    ial = [p for p in points if p["family"] == "ial"]
    assert all(p["memory_bytes"] == p["size"] * p["dim"] * 4 for p in ial)
    assert "ivfpq+rerank4 answers" in (out / "scale.md").read_text()
    assert (out / "scale-cost_vs_size.png").stat().st_size > 0


def test_markdown_states_the_ratio_at_the_largest_size():
    from benchmark.scale import Point

    points = [Point("retrieval", "flat", "x (real)", 8, 1000, 2.0, 32000, 0.1, 80.0),
              Point("retrieval", "ivfpq", "x (real)", 8, 1000, 0.1, 4000, 0.1, 78.0)]
    assert "ivfpq answers ×20.0 faster than flat and keeps 0.975 of its Recall@1" in markdown(points, ScaleSpec())


@pytest.mark.parametrize("args, message", [
    (["--sizes", "a,b"], "--sizes"),
    (["--dims", "gem"], "--dims"),
    (["--index-options", "nprob=3"], "nprobe"),
    (["--method", "prior"], "retrieval method"),
    (["--method", "nosuch"], "nosuch"),
])
def test_bad_input_is_one_clear_error_and_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "scale"
    code = main(["scale", "-q", "--protocol", "tiny", "--preset", "smoke", "--sizes", "1e3", "--dims", "none",
                 "--queries", "4", *args, "--out", str(out)])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_ivfpq_with_rerank_finds_exact_matches_and_rerank_needs_ivfpq():
    from benchmark.errors import BenchmarkError

    rows = unit_rows(3000, 64, np.random.default_rng(1))
    index = build_index(rows, RetrievalOptions(index="ivfpq", pq_bytes=8, rerank=20))
    _, ids = index.search(rows[:20], 1)
    assert ids[:, 0].tolist() == list(range(20))  # the exact second pass puts each row's own copy first
    with pytest.raises(BenchmarkError, match="rerank"):
        build_index(rows, RetrievalOptions(rerank=5))


def test_the_report_shows_a_measured_curve_and_names_a_broken_one(tmp_path, tiny_dataset, capsys):
    from benchmark.scale import Point, write

    results, out = tmp_path / "results", tmp_path / "report"
    assert main(["run", "-q", "--protocol", "tiny", "--preset", "smoke", "--methods", "prior",
                 "--out", str(results)]) == 0
    points = [Point("retrieval", kind, "x (real)", 8, size, ms, size * 32, 0.1, 80.0)
              for size in (1000, 10000) for kind, ms in (("flat", size / 1e3), ("ivfpq", 0.1))]
    points.append(Point("ial", "candidates", "ial", 8, 100, 0.01, 3200))
    write(points, ScaleSpec(), results / "scale")
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    assert "## Cost against size" in capsys.readouterr().out
    assert "Cost against size" in (out / "report.html").read_text() and (out / "scale-cost_vs_size.png").exists()
    (results / "scale" / "scale.json").write_text("{not json")
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    assert "scale.json" in capsys.readouterr().err
