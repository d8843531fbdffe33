"""Metric definitions, checked on hand-computed cases and against the VPR-methods-evaluation fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.metrics import (
    bootstrap_ci,
    localization_errors,
    positives_within,
    recall_at_n,
    sa_hits,
    ssa_hits,
    summarize,
)

REFERENCE = Path(__file__).resolve().parent / "data" / "reference" / "recall"

T = "Main St, Down (First Ave, Down)"
T_OTHER_SUB = "Main St, Down (Second Ave, Down)"
OTHER = "Hill Rd, Up (Main St, Down)"


def test_ssa_and_sa_hand_computed():
    topk = [[T], [T_OTHER_SUB, T], [OTHER, T_OTHER_SUB], [OTHER]]
    truth = [T, T, T, T]
    assert ssa_hits(topk, truth, 1).tolist() == [True, False, False, False]
    assert ssa_hits(topk, truth, 5).tolist() == [True, True, False, False]
    # SA@1 counts the right street with the wrong sub-street; SA@5 looks at the same 5 predictions.
    assert sa_hits(topk, truth, 1).tolist() == [True, True, False, False]
    assert sa_hits(topk, truth, 5).tolist() == [True, True, True, False]


def test_sa_at_least_ssa_on_random_lists():
    rng = np.random.default_rng(0)
    pool = [f"S{s} St, N{n} (C{c} Ave, N{n})" for s in range(4) for n in range(2) for c in range(3)]
    truth = [pool[i] for i in rng.integers(0, len(pool), 300)]
    topk = [list(rng.choice(pool, 5, replace=False)) for _ in truth]
    for k in (1, 5):
        assert np.all(sa_hits(topk, truth, k) >= ssa_hits(topk, truth, k))
    assert all(len(set(t)) == len(t) for t in topk)


def test_comparison_is_after_normalisation():
    assert ssa_hits([["Main St,  Down (First Ave, Down)"]], [T], 1).tolist() == [True]


def test_recall_hand_computed_and_queries_without_positives_are_misses():
    db = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0]])
    q = np.array([[10.0, 0.0], [195.0, 0.0], [1000.0, 0.0]])
    positives = positives_within(db, q, 25.0)
    assert [p.tolist() for p in positives] == [[0], [2], []]
    retrieved = np.array([[1, 0, 2], [2, 1, 0], [0, 1, 2]])
    assert recall_at_n(retrieved, positives, [1, 2, 3]).tolist() == pytest.approx([100 / 3, 200 / 3, 200 / 3])


def test_recall_equals_vpr_methods_evaluation_fixture():
    ref = torch.load(REFERENCE / "recall_vpr_methods_evaluation.pt", weights_only=False)
    inp, out = ref["inputs"], ref["outputs"]
    db_utm = np.asarray(inp["database_utms"], np.float64)
    q_utm = np.asarray(inp["queries_utms"], np.float64)
    positives = positives_within(db_utm, q_utm, inp["positive_dist_threshold"])
    for mine, theirs in zip(positives, out["positives_per_query"]):
        assert set(mine.tolist()) == set(np.asarray(theirs).tolist())

    import faiss

    index = faiss.IndexFlatIP(inp["database_descriptors"].shape[1])
    index.add(np.ascontiguousarray(inp["database_descriptors"].numpy(), np.float32))
    _, retrieved = index.search(np.ascontiguousarray(inp["queries_descriptors"].numpy(), np.float32), 20)
    assert np.array_equal(retrieved, out["predictions"].numpy())
    recalls = recall_at_n(retrieved, positives, inp["recall_values"])
    assert np.array_equal(recalls, out["recalls_percent"].numpy())


def test_localization_errors_in_float64():
    pred = np.array([[584000.0, 4477000.0], [584003.0, 4477004.0]])
    true = np.array([[584000.0, 4477000.0], [584000.0, 4477000.0]])
    assert localization_errors(pred, true).tolist() == [0.0, 5.0]


def test_bootstrap_interval_brackets_mean_and_is_deterministic():
    values = np.r_[np.ones(30), np.zeros(70)] * 100
    low, high = bootstrap_ci(values, seed=3)
    assert low < 30.0 < high and (low, high) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(np.full(10, 100.0)) == (100.0, 100.0)


def test_summarize_keys_and_nulls_without_coordinates():
    metrics, ci = summarize([[T]], [T])
    assert metrics["ssa@1"] == 100.0 and metrics["sa@5"] == 100.0
    for key in ("recall@1", "recall@5", "recall@10", "median_error_m", "within_25m"):
        assert metrics[key] is None and ci[key] is None
    assert set(metrics) >= {"ssa@1", "ssa@5", "sa@1", "sa@5", "recall@1", "recall@5", "recall@10", "median_error_m"}


def test_summarize_with_coordinates():
    metrics, ci = summarize([[T], [OTHER]], [T, T], predicted_utm=np.array([[0.0, 0.0], [0.0, 60.0]]),
                            true_utm=np.zeros((2, 2)))
    assert metrics["median_error_m"] == 30.0 and metrics["within_25m"] == 50.0 and metrics["within_100m"] == 100.0
    assert ci["median_error_m"][0] <= 30.0 <= ci["median_error_m"][1]
