"""The gazetteer: nearest labelled points to distinct ranked addresses, with its documented tie rule."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import BenchmarkError
from benchmark.geocoder import Gazetteer

A, B, C, D = "A St, X (B St, X)", "B St, X (A St, X)", "C St, X (A St, X)", "D St, Y (C St, X)"


def test_ranked_by_nearest_point_of_each_address():
    points = np.array([[0.0, 0.0], [10.0, 0.0], [3.0, 0.0], [50.0, 0.0], [4.0, 0.0]])
    g = Gazetteer(points, [A, B, A, C, B])
    (ranked,) = g.lookup(np.array([[1.0, 0.0]]), 3)
    assert ranked == [(A, 1.0), (B, 3.0), (C, 49.0)]


def test_top_k_never_repeats_and_is_capped_by_number_of_addresses():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (200, 2))
    names = [A, B, C, D] * 50
    g = Gazetteer(points, names)
    for ranked in g.lookup(rng.uniform(0, 100, (30, 2)), 10):
        assert len(ranked) == 4 and len({a for a, _ in ranked}) == 4
        assert [d for _, d in ranked] == sorted(d for _, d in ranked)


def test_ties_are_broken_by_address_text_whatever_the_point_order():
    points = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    for order in ([C, A, B], [B, C, A], [A, B, C]):
        (ranked,) = Gazetteer(points, order).lookup(np.zeros((1, 2)), 3)
        assert [a for a, _ in ranked] == [A, B, C]


def test_deep_search_when_nearest_points_share_one_address():
    # 100 points of A around the query, then B far away: the search must go deeper than its first pass.
    points = np.r_[np.random.default_rng(1).normal(0, 1, (100, 2)), [[500.0, 0.0]]]
    g = Gazetteer(points, [A] * 100 + [B])
    (ranked,) = g.lookup(np.zeros((1, 2)), 2)
    assert [a for a, _ in ranked] == [A, B] and ranked[1][1] == pytest.approx(500.0, abs=1e-9)


def test_duplicate_views_collapse_and_bytes_are_counted():
    g = Gazetteer(np.zeros((24, 2)), [A] * 24)
    assert len(g) == 1 and g.nbytes > 0


def test_bad_input():
    with pytest.raises(ValueError):
        Gazetteer(np.zeros((3, 3)), [A, B, C])
    with pytest.raises(ValueError):
        Gazetteer(np.zeros((0, 2)), [])


# --- GPS noise on coordinates (database tags for retrieval, the true query GPS for oracle-gps) ---

def test_gps_noise_is_deterministic_per_coordinate_and_zero_changes_nothing():
    from benchmark.geocoder import gps_noise

    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1000, (200, 2)) + [385_000.0, 6_672_000.0]
    a = gps_noise(points, 8.0, 3, "database")
    assert np.array_equal(a, gps_noise(points, 8.0, 3, "database"))
    assert not np.allclose(a, gps_noise(points, 8.0, 4, "database"))  # another seed
    assert not np.allclose(a, gps_noise(points, 8.0, 3, "queries"))  # another stream
    order = rng.permutation(len(points))
    assert np.array_equal(gps_noise(points[order], 8.0, 3, "database"), a[order])  # row order does not matter
    views = np.repeat(points[:5], 8, axis=0)  # eight views of one place share its GPS fix
    noisy = gps_noise(views, 8.0, 3, "database").reshape(5, 8, 2)
    assert np.array_equal(noisy, np.repeat(a[:5, None], 8, axis=1))
    assert np.array_equal(gps_noise(points, 0.0, 3, "database"), points)
    with pytest.raises(BenchmarkError, match="gps_noise_m"):
        gps_noise(points, -1.0, 3, "database")


def test_gps_noise_is_isotropic_gaussian_with_the_requested_sigma():
    from scipy import stats

    from benchmark.geocoder import gps_noise

    sigma, n = 8.0, 20_000
    points = np.column_stack([np.arange(n) * 3.7, np.arange(n) % 97 * 11.0]) + [385_000.0, 6_672_000.0]
    error = gps_noise(points, sigma, 0, "database") - points
    for axis in error.T:  # each axis N(0, sigma^2): Kolmogorov-Smirnov against the normal law
        assert stats.kstest(axis, "norm", args=(0.0, sigma)).pvalue > 0.001
    # The variance's 99.9 % chi-square interval (both axes pooled) holds sigma^2; the axes are uncorrelated.
    dof = error.size
    variance = (error ** 2).sum() / dof
    lo, hi = dof * variance / stats.chi2.ppf([0.9995, 0.0005], dof)
    assert lo < sigma ** 2 < hi
    assert stats.pearsonr(error[:, 0], error[:, 1]).pvalue > 0.001
    assert stats.ttest_1samp(error.ravel(), 0.0).pvalue > 0.001
