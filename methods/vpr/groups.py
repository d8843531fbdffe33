"""Which training images belong together: VPR positives/negatives by distance, CosPlace classes and groups,
and the places of MixVPR/SALAD's MultiSimilarity batches."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.spatial import cKDTree

ClassId = tuple[int, int, int]
GroupId = tuple[int, int, int]


def positives_and_far(utm: np.ndarray, positive_m: float = 10.0, negative_m: float = 25.0
                      ) -> tuple[list[np.ndarray], cKDTree]:
    """Per image the other images within positive_m (training positives); the tree answers 'within negative_m'."""
    tree = cKDTree(np.asarray(utm, np.float64))
    near = tree.query_ball_point(utm, r=positive_m)
    return [np.array(sorted(set(n) - {i}), np.int64) for i, n in enumerate(near)], tree


def cosplace_class_group(east: float, north: float, heading: float, m: float = 10, alpha: float = 30,
                         n: int = 5, l: int = 2) -> tuple[ClassId, GroupId]:  # noqa: E741 (CosPlace's name)
    """CosPlace `get__class_id__group_id`: the (M x M metres, alpha degrees) cell and its group among N x N x L."""
    e, no, h = int(east // m * m), int(north // m * m), int(heading // alpha * alpha)
    return (e, no, h), (int(e % (m * n) // m), int(no % (m * n) // m), int(h % (alpha * l) // alpha))


def cosplace_groups(utm: np.ndarray, heading: np.ndarray, m: float = 10, alpha: float = 30, n: int = 5,
                    l: int = 2, min_images_per_class: int = 10) -> list[dict[ClassId, list[int]]]:  # noqa: E741
    """CosPlace groups: per group, its classes with the image indices of each; classes with fewer than
    min_images_per_class images are dropped, empty groups too. Groups are ordered largest first (by number
    of classes, then group id), classes within a group by class id, so the order never depends on the data order.
    """
    images: dict[ClassId, list[int]] = defaultdict(list)
    group_of: dict[ClassId, GroupId] = {}
    for i, ((e, no), h) in enumerate(zip(np.asarray(utm, np.float64), np.asarray(heading, np.float64))):
        class_id, group_id = cosplace_class_group(e, no, h, m, alpha, n, l)
        images[class_id].append(i)
        group_of[class_id] = group_id
    groups: dict[GroupId, dict[ClassId, list[int]]] = defaultdict(dict)
    for class_id in sorted(images):
        if len(images[class_id]) >= min_images_per_class:
            groups[group_of[class_id]][class_id] = images[class_id]
    order = sorted(groups, key=lambda g: (-len(groups[g]), g))
    return [groups[g] for g in order]


def places(utm: np.ndarray, heading: np.ndarray, cell_m: float, heading_deg: float,
           min_images: int = 2) -> list[np.ndarray]:
    """Places for MultiSimilarity batches: images in the same cell_m square facing the same heading_deg bin.

    GSV-Cities (MixVPR, SALAD) has places of several images; here a place is a short stretch of street seen
    in one direction. Places with fewer than min_images images are dropped; order by cell id.
    """
    buckets: dict[ClassId, list[int]] = defaultdict(list)
    for i, ((e, no), h) in enumerate(zip(np.asarray(utm, np.float64), np.asarray(heading, np.float64))):
        buckets[cosplace_class_group(e, no, h, cell_m, heading_deg)[0]].append(i)
    return [np.array(v, np.int64) for _, v in sorted(buckets.items()) if len(v) >= min_images]


EigenClassId = tuple[int, int]


def focal_point(points: np.ndarray, distance: float, angle: float) -> np.ndarray:
    """EigenPlaces' focal point of a class: its mean position plus `distance` metres along its second principal
    direction (across the street) rotated by `angle` degrees counter-clockwise (0: lateral, 90: frontal)."""
    points = np.asarray(points, np.float64)
    mu = points.mean(0)
    u, _, _ = np.linalg.svd((points - mu).T, full_matrices=True)  # columns: principal directions, (east, north)
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return mu + rotation @ u[:, 1] * distance


def bearing(from_utm: np.ndarray, to_utm: np.ndarray) -> np.ndarray:
    """Compass bearing (degrees clockwise from north, as the datasets' headings) from points to a point."""
    d = np.asarray(to_utm, np.float64) - np.asarray(from_utm, np.float64)
    return np.degrees(np.arctan2(d[..., 0], d[..., 1])) % 360.0


def eigenplaces_groups(utm: np.ndarray, heading: np.ndarray, m: float = 15, n: int = 3, focal_dist: float = 10,
                       min_locations: int = 5) -> list[tuple[dict[EigenClassId, list[int]],
                                                             dict[EigenClassId, list[int]]]]:
    """EigenPlaces classes: M x M metre cells (no heading) in N x N groups; per group the lateral (angle 0) and
    frontal (angle 90) classes, each class holding, for every capture location in its cell, the one view among
    that location's headings that looks most directly at the class's focal point (EigenPlaces crops panoramas
    towards it; here the headings are fixed). Cells with fewer than min_locations locations are dropped.
    Groups are ordered largest first, then by group id; classes by class id."""
    if min_locations < 2:
        raise ValueError("min_locations must be at least 2 (a class's principal directions need two locations)")
    utm, heading = np.asarray(utm, np.float64), np.asarray(heading, np.float64)
    rows_at: dict[tuple[float, float], list[int]] = defaultdict(list)
    for i, (e, no) in enumerate(np.round(utm, 2)):
        rows_at[(float(e), float(no))].append(i)
    cells: dict[EigenClassId, list[tuple[float, float]]] = defaultdict(list)
    for e, no in rows_at:
        cells[(int(e // m * m), int(no // m * m))].append((e, no))
    groups: dict[tuple[int, int], tuple[dict, dict]] = defaultdict(lambda: ({}, {}))
    for class_id in sorted(cells):
        locations = sorted(cells[class_id])
        if len(locations) < min_locations:
            continue
        group = (int(class_id[0] % (m * n) // m), int(class_id[1] % (m * n) // m))
        for side, angle in zip(groups[group], (0.0, 90.0)):
            target = focal_point(np.array(locations), focal_dist, angle)
            chosen = []
            for location in locations:
                rows = np.array(rows_at[location])
                turn = np.abs((heading[rows] - bearing(np.array(location), target) + 180.0) % 360.0 - 180.0)
                chosen.append(int(rows[np.argmin(turn)]))
            side[class_id] = chosen
    order = sorted(groups, key=lambda g: (-len(groups[g][0]), g))
    return [groups[g] for g in order]
