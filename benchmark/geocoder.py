"""Reverse geocoding by gazetteer: UTM coordinates to a ranked list of distinct sub-street addresses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from benchmark.address import normalize
from benchmark.dataset import Dataset


class Gazetteer:
    """Nearest labelled points (train ∪ database), as the IAL datasets themselves filled in addresses.

    An address is ranked by the distance from the query to its nearest labelled point. Ties in distance
    are broken by the address text (lexicographic), so the ranking never depends on the order of points.
    """

    def __init__(self, utm: np.ndarray, addresses: Sequence[str]):
        utm = np.asarray(utm, np.float64)
        if utm.ndim != 2 or utm.shape[1] != 2 or len(utm) != len(addresses):
            raise ValueError(f"gazetteer needs [P, 2] coordinates and P addresses, got {utm.shape} and {len(addresses)}")
        if len(addresses) == 0:
            raise ValueError("gazetteer needs at least one labelled point")
        self.names: list[str] = sorted({normalize(a) for a in addresses})
        lookup = {a: i for i, a in enumerate(self.names)}
        ids = np.array([lookup[normalize(a)] for a in addresses], np.int64)
        # Views of one location share coordinates and address: keep one point per (place, address).
        keyed = np.unique(np.column_stack([utm, ids.astype(np.float64)]), axis=0)
        self.points: np.ndarray = np.ascontiguousarray(keyed[:, :2])
        self.point_address: np.ndarray = keyed[:, 2].astype(np.int64)
        self._tree = cKDTree(self.points)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def nbytes(self) -> int:
        """Bytes of the points, their address ids and the address strings (what inference needs)."""
        strings = sum(len(a.encode()) for a in self.names)
        return int(self.points.nbytes + self.point_address.nbytes + strings)

    def lookup(self, utm: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each coordinate, up to k distinct addresses with their distance in metres, nearest first."""
        utm = np.atleast_2d(np.asarray(utm, np.float64))
        k = min(k, len(self.names))
        n_points = len(self.points)
        results: list[list[tuple[str, float]] | None] = [None] * len(utm)
        todo = np.arange(len(utm))
        depth = min(n_points, max(8 * k, 16))
        while len(todo):
            dist, idx = self._tree.query(utm[todo], k=depth)
            dist, idx = dist.reshape(len(todo), -1), idx.reshape(len(todo), -1)
            unfinished = []
            for row, q in enumerate(todo):
                ranked = self._distinct(dist[row], idx[row])
                if len(ranked) >= k or depth >= n_points:
                    results[q] = ranked[:k]
                else:
                    unfinished.append(q)
            todo = np.array(unfinished, np.int64)
            depth = min(n_points, depth * 4)
        return results  # type: ignore[return-value]

    def _distinct(self, dist: np.ndarray, idx: np.ndarray) -> list[tuple[str, float]]:
        best: dict[int, float] = {}
        for d, i in zip(dist.tolist(), idx.tolist()):
            a = int(self.point_address[i])
            if a not in best:
                best[a] = d
        # Only the nearest points were searched, so an address whose distance equals the deepest one
        # searched may have an unseen tie; callers asking for more than the sure part search deeper.
        ranked = sorted(best.items(), key=lambda item: (item[1], self.names[item[0]]))
        horizon = dist[-1]
        if len(dist) < len(self.points):
            ranked = [r for r in ranked if r[1] < horizon]
        return [(self.names[a], float(d)) for a, d in ranked]


def labelled_points(dataset: Dataset) -> tuple[np.ndarray, list[str]]:
    """Coordinates and addresses of train ∪ database: the points a gazetteer is built from."""
    utm = np.concatenate([dataset.utm("train"), dataset.utm("database")])
    addresses = list(dataset.splits["train"].address) + list(dataset.splits["database"].address)
    return utm, addresses


def gazetteer_for(dataset: Dataset) -> Gazetteer:
    """The gazetteer of a dataset's labelled points."""
    return Gazetteer(*labelled_points(dataset))
