"""Semantic geocells at city scale, PIGEON's way (CVPR 2024, §3.1), built from the training split only.

Start from the neighbourhoods the addresses carry; merge a cell with fewer than `min_locations` training
locations into its nearest neighbour; split a cell with more than `max_locations` by OPTICS clustering of
its locations (outliers go to the nearest cluster; a cell OPTICS cannot split is halved along its long
axis); then give every cell a seamless area: the Voronoi regions of its locations, clipped to the training
area (the locations' convex hull grown by `margin_m`). Cells therefore tile that area without gaps or
overlaps, and every cell holds at least `min_locations` locations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import MultiPoint, Polygon
from sklearn.cluster import OPTICS

from benchmark.errors import BenchmarkError


@dataclass(frozen=True)
class Geocells:
    """A partition of the training locations into cells, with each cell's area and centroid (UTM metres)."""

    locations: np.ndarray  # [L, 2] distinct training locations
    location_cell: np.ndarray  # [L] cell of each location
    image_location: np.ndarray  # [N] location of each training image
    neighbourhoods: list[str]  # [C] the neighbourhood each cell lies in
    centroids: np.ndarray  # [C, 2] mean position of the cell's training images
    areas: list[Polygon]  # [C] the cell's area (a union of its locations' Voronoi regions)
    region: Polygon  # the training area every cell lies in

    def __len__(self) -> int:
        return len(self.neighbourhoods)

    @property
    def image_cell(self) -> np.ndarray:
        """[N] cell of each training image."""
        return self.location_cell[self.image_location]

    def sizes(self) -> np.ndarray:
        """[C] training locations per cell."""
        return np.bincount(self.location_cell, minlength=len(self))

    def locate(self, points: np.ndarray) -> np.ndarray:
        """[M] cell of each UTM point: the cell of its nearest training location (= the Voronoi area it is in)."""
        _, nearest = cKDTree(self.locations).query(np.asarray(points, np.float64))
        return self.location_cell[nearest]


def distinct_locations(utm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positions (to the centimetre) and, for every row, the index of its position."""
    keys = np.round(np.asarray(utm, np.float64) * 100).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return np.asarray(utm, np.float64)[first], inverse.reshape(-1)


def voronoi_regions(points: np.ndarray, region: Polygon) -> list[Polygon]:
    """The Voronoi region of every point (in order), clipped to `region`."""
    cells = shapely.voronoi_polygons(MultiPoint(points), extend_to=region, ordered=True)
    return [shapely.intersection(cell, region) for cell in shapely.get_parts(cells)]


def halve(points: np.ndarray) -> np.ndarray:
    """Labels 0/1 splitting points at the median of their principal axis (the first half gets the extra one)."""
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    order = np.argsort(centred @ axis, kind="stable")
    labels = np.ones(len(points), np.int64)
    labels[order[:(len(points) + 1) // 2]] = 0
    return labels


def optics_split(points: np.ndarray, min_locations: int) -> np.ndarray:
    """OPTICS clusters of points (labels 0..k-1); outliers join the cluster of their nearest clustered point,
    and clusters smaller than `min_locations` join the nearest larger one."""
    labels = OPTICS(min_samples=max(2, min_locations // 2), min_cluster_size=min_locations).fit(points).labels_
    if labels.max() < 1:
        return np.zeros(len(points), np.int64)
    clustered = labels >= 0
    if not clustered.all():
        _, nearest = cKDTree(points[clustered]).query(points[~clustered])
        labels[~clustered] = labels[clustered][nearest]
    while True:
        counts = Counter(labels.tolist())
        small = [c for c, n in sorted(counts.items(), key=lambda x: (x[1], x[0])) if n < min_locations]
        if not small or len(counts) == 1:
            break
        mine = labels == small[0]
        _, nearest = cKDTree(points[~mine]).query(points[mine])
        target = Counter(labels[~mine][nearest].tolist()).most_common(1)[0][0]
        labels[mine] = target
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _split(points: np.ndarray, min_locations: int, max_locations: int) -> np.ndarray:
    """Labels for one cell's locations: OPTICS first, then halving until no part exceeds max_locations."""
    labels = optics_split(points, min_locations) if len(points) > max_locations else np.zeros(len(points), np.int64)
    out = np.zeros(len(points), np.int64)
    next_label = 0
    for part in range(labels.max() + 1):
        rows = np.flatnonzero(labels == part)
        if len(rows) <= max_locations:
            out[rows] = next_label
            next_label += 1
            continue
        halves = halve(points[rows])
        for h in (0, 1):
            sub = rows[halves == h]
            inner = _split(points[sub], min_locations, max_locations) if len(sub) > max_locations else \
                np.zeros(len(sub), np.int64)
            out[sub] = inner + next_label
            next_label += inner.max() + 1
    return out


def _merge_small(locations: np.ndarray, cell: np.ndarray, min_locations: int) -> np.ndarray:
    """Merge the smallest under-sized cell into the cell of its nearest outside location, until none is left."""
    cell = cell.copy()
    while True:
        counts = np.bincount(cell)
        present = np.flatnonzero(counts)
        small = [c for c in present[np.argsort(counts[present], kind="stable")] if counts[c] < min_locations]
        if not small or len(present) == 1:
            return np.unique(cell, return_inverse=True)[1].reshape(-1)
        mine = cell == small[0]
        distance, nearest = cKDTree(locations[~mine]).query(locations[mine])
        cell[mine] = cell[~mine][nearest[np.argmin(distance)]]


def build_geocells(utm: np.ndarray, neighbourhoods: list[str], min_locations: int = 10,
                   max_locations: int = 25, margin_m: float = 50.0) -> Geocells:
    """Geocells of the training images at `utm` [N, 2] whose addresses lie in `neighbourhoods` [N]."""
    if min_locations < 1 or max_locations + 1 < 2 * min_locations:
        raise BenchmarkError(f"geocells: need 1 <= cells_min and cells_max >= 2 * cells_min - 1 (so a halved cell "
                             f"keeps the minimum); got cells_min={min_locations}, cells_max={max_locations}")
    utm = np.asarray(utm, np.float64)
    if len(utm) != len(neighbourhoods) or len(utm) == 0:
        raise BenchmarkError("geocells: one neighbourhood per training image is needed")
    locations, image_location = distinct_locations(utm)
    if len(locations) < min_locations:
        raise BenchmarkError(f"geocells: {len(locations)} training locations are fewer than cells_min={min_locations}")
    # A location's neighbourhood is the one most of its images' addresses name.
    votes: dict[int, Counter] = {}
    for loc, hood in zip(image_location.tolist(), neighbourhoods):
        votes.setdefault(loc, Counter())[hood] += 1
    location_hood = [votes[i].most_common(1)[0][0] for i in range(len(locations))]
    names = sorted(set(location_hood))
    cell = _merge_small(locations, np.array([names.index(h) for h in location_hood]), min_locations)
    final = np.empty(len(locations), np.int64)
    next_label = 0
    for c in range(cell.max() + 1):
        rows = np.flatnonzero(cell == c)
        labels = _split(locations[rows], min_locations, max_locations)
        final[rows] = labels + next_label
        next_label += labels.max() + 1
    region = MultiPoint(locations).convex_hull.buffer(margin_m)
    voronoi = voronoi_regions(locations, region)
    areas = [shapely.union_all([voronoi[i] for i in np.flatnonzero(final == c)]) for c in range(next_label)]
    image_cell = final[image_location]
    centroids = np.stack([utm[image_cell == c].mean(axis=0) for c in range(next_label)])
    hoods = [Counter(location_hood[i] for i in np.flatnonzero(final == c)).most_common(1)[0][0]
             for c in range(next_label)]
    return Geocells(locations, final, image_location, hoods, centroids, areas, region)
