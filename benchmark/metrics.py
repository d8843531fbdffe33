"""Metric definitions of the contract: SSA@k, SA@k, Recall@N, localization error, bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

from benchmark.address import normalize, street_key

POSITIVE_RADIUS_M = 25.0


def ssa_hits(topk: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> np.ndarray:
    """Per query: the true sub-street is among the first k predicted sub-streets."""
    return np.array([normalize(t) in {normalize(p) for p in preds[:k]} for preds, t in zip(topk, truth)], bool)


def sa_hits(topk: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> np.ndarray:
    """Per query: some prediction among the same first k has the true street key (no de-duplication)."""
    return np.array(
        [street_key(t) in {street_key(p) for p in preds[:k]} for preds, t in zip(topk, truth)], bool
    )


def positives_within(
    database_utm: np.ndarray, queries_utm: np.ndarray, radius: float = POSITIVE_RADIUS_M
) -> list[np.ndarray]:
    """Database indices within `radius` metres of each query (the standard VPR positives)."""
    knn = NearestNeighbors().fit(np.asarray(database_utm, np.float64))
    return list(knn.radius_neighbors(np.asarray(queries_utm, np.float64), radius=radius, return_distance=False))


def recall_hits(retrieved: np.ndarray, positives: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Per query: some of the first n retrieved database images is a positive."""
    return np.array([np.isin(r[:n], p).any() for r, p in zip(np.asarray(retrieved), positives)], bool)


def recall_at_n(retrieved: np.ndarray, positives: Sequence[np.ndarray], ns: Sequence[int]) -> np.ndarray:
    """Recall@N in percent for each N; queries without positives stay in the denominator as misses."""
    return np.array([recall_hits(retrieved, positives, n).mean() * 100.0 for n in ns], np.float64)


def localization_errors(predicted_utm: np.ndarray, true_utm: np.ndarray) -> np.ndarray:
    """Euclidean error in metres per query (UTM in float64)."""
    diff = np.asarray(predicted_utm, np.float64) - np.asarray(true_utm, np.float64)
    return np.hypot(diff[:, 0], diff[:, 1])


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a per-query statistic (default: the mean) by resampling queries."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    samples = values[idx]
    stats = samples.mean(axis=1) if statistic is None else statistic(samples)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def _median_rows(samples: np.ndarray) -> np.ndarray:
    return np.median(samples, axis=1)


def summarize(
    topk: Sequence[Sequence[str]],
    truth: Sequence[str],
    *,
    retrieved: np.ndarray | None = None,
    positives: Sequence[np.ndarray] | None = None,
    predicted_utm: np.ndarray | None = None,
    true_utm: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, float | None], dict[str, list[float] | None]]:
    """All contract metrics (accuracies in percent) and their 95 % bootstrap intervals."""
    per_query: dict[str, np.ndarray | None] = {}
    for k in (1, 5):
        per_query[f"ssa@{k}"] = ssa_hits(topk, truth, k) * 100.0
        per_query[f"sa@{k}"] = sa_hits(topk, truth, k) * 100.0
    for n in (1, 5, 10):
        have = retrieved is not None and positives is not None
        per_query[f"recall@{n}"] = recall_hits(retrieved, positives, n) * 100.0 if have else None
    errors = None
    if predicted_utm is not None and true_utm is not None:
        errors = localization_errors(predicted_utm, true_utm)
    for m in (25, 50, 100):
        per_query[f"within_{m}m"] = None if errors is None else (errors <= m) * 100.0

    metrics: dict[str, float | None] = {}
    ci: dict[str, list[float] | None] = {}
    for i, (name, values) in enumerate(per_query.items()):
        metrics[name] = None if values is None else float(values.mean())
        ci[name] = None if values is None else list(bootstrap_ci(values, n_boot=n_boot, seed=seed + i))
    metrics["median_error_m"] = None if errors is None else float(np.median(errors))
    ci["median_error_m"] = (
        None if errors is None else list(bootstrap_ci(errors, _median_rows, n_boot=n_boot, seed=seed + 99))
    )
    return metrics, ci
