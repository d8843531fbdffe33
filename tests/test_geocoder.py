"""The gazetteer: nearest labelled points to distinct ranked addresses, with its documented tie rule."""

from __future__ import annotations

import numpy as np
import pytest

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
