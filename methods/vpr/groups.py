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
