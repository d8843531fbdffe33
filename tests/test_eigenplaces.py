"""EigenPlaces' classes by hand: focal points off a cell's principal directions, and the view of each location
that looks at them. (The published checkpoint layout is in test_vpr_checkpoints, the run on `tiny` in the
registry's smoke test.)"""

from __future__ import annotations

import numpy as np
import pytest

from methods.vpr.groups import bearing, eigenplaces_groups, focal_point

STREET = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])  # three captures along an east-west street


def test_lateral_focal_points_look_across_the_street_and_frontal_ones_along_it():
    lateral, frontal = focal_point(STREET, 10.0, 0.0), focal_point(STREET, 10.0, 90.0)
    assert lateral[0] == pytest.approx(10.0) and abs(lateral[1]) == pytest.approx(10.0)
    assert frontal[1] == pytest.approx(0.0, abs=1e-9) and abs(frontal[0] - 10.0) == pytest.approx(10.0)


def test_bearing_is_clockwise_from_north():
    assert bearing(np.zeros(2), np.array([0.0, 5.0])) == pytest.approx(0.0)
    assert bearing(np.zeros(2), np.array([5.0, 0.0])) == pytest.approx(90.0)
    assert bearing(np.zeros(2), np.array([-5.0, 0.0])) == pytest.approx(270.0)


def test_each_location_gives_the_view_facing_the_focal_point():
    # locations 1 m apart at north = 5, four headings each; a lone location in another cell is dropped
    locations = [(9.0, 5.0), (10.0, 5.0), (11.0, 5.0), (100.0, 100.0)]
    utm = np.array([loc for loc in locations for _ in range(4)])
    heading = np.tile([0.0, 90.0, 180.0, 270.0], len(locations))
    (lateral, frontal), = eigenplaces_groups(utm, heading, m=30, n=3, focal_dist=10, min_locations=2)
    assert list(lateral) == list(frontal) == [(0, 0)]
    side = heading[lateral[(0, 0)]]
    assert len(side) == 3 and len(set(side)) == 1 and side[0] in (0.0, 180.0)  # across the street
    along = heading[frontal[(0, 0)]]
    assert len(set(along)) == 1 and along[0] in (90.0, 270.0)  # down the street
    with pytest.raises(ValueError, match="min_locations"):
        eigenplaces_groups(utm, heading, min_locations=1)
