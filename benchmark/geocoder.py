"""Reverse geocoding: UTM coordinates to a ranked list of distinct sub-street addresses — by gazetteer (nearest
labelled points), street map (nearest sub-street geometry) or street names (a public service's named ways, matched
to the candidates by name) — and the GPS noise of real photo tags."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from benchmark.address import normalize
from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError


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


class StreetMap:
    """Nearest sub-street geometry: an address is ranked by the distance to the nearest of its segments.

    Built from the street map a protocol ships (GeoJSON, one feature per sub-street with properties
    `address` and `utm_coordinates`, a list of polylines in metres). Ties in distance are broken by the
    address text, as in the gazetteer.
    """

    def __init__(self, polylines: Sequence[tuple[str, np.ndarray]]):
        if not polylines:
            raise ValueError("street map needs at least one sub-street polyline")
        self.names: list[str] = sorted({normalize(a) for a, _ in polylines})
        lookup = {a: i for i, a in enumerate(self.names)}
        starts, ends, owners = [], [], []
        for address, line in polylines:
            line = np.asarray(line, np.float64).reshape(-1, 2)
            if len(line) == 0:
                continue
            if len(line) == 1:
                line = np.vstack([line, line])  # a single vertex is a zero-length segment
            starts.append(line[:-1])
            ends.append(line[1:])
            owners.append(np.full(len(line) - 1, lookup[normalize(address)], np.int64))
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")  # segments grouped by address for reduceat
        self.segment_start: np.ndarray = np.ascontiguousarray(np.concatenate(starts)[order])
        self.segment_end: np.ndarray = np.ascontiguousarray(np.concatenate(ends)[order])
        self.segment_address: np.ndarray = owner[order]
        self._first = np.flatnonzero(np.r_[True, np.diff(self.segment_address) != 0])
        self._present = self.segment_address[self._first]

    @classmethod
    def from_geojson(cls, path: Path | str) -> StreetMap:
        """Read the street map a city protocol writes (properties.address + properties.utm_coordinates)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        polylines = []
        for feature in data.get("features", []):
            props = feature.get("properties", {})
            if "address" not in props or "utm_coordinates" not in props:
                raise ValueError(f"{path}: feature {feature.get('id')} lacks properties.address/utm_coordinates")
            polylines += [(props["address"], np.asarray(part, np.float64)) for part in props["utm_coordinates"]]
        return cls(polylines)

    def __len__(self) -> int:
        return len(self.segment_address)

    @property
    def nbytes(self) -> int:
        """Bytes of the segment end points, their address ids and the address strings."""
        strings = sum(len(a.encode()) for a in self.names)
        return int(self.segment_start.nbytes + self.segment_end.nbytes + self.segment_address.nbytes + strings)

    def distances(self, utm: np.ndarray) -> np.ndarray:
        """[Q, A] distance in metres from each coordinate to each address's nearest segment (A = len(names))."""
        utm = np.atleast_2d(np.asarray(utm, np.float64))
        a, b = self.segment_start, self.segment_end
        d = b - a
        length2 = (d ** 2).sum(axis=1)
        safe = np.where(length2 > 0, length2, 1.0)
        out = np.full((len(utm), len(self.names)), np.inf)
        chunk = max(1, 2_000_000 // max(1, len(a)))
        for lo in range(0, len(utm), chunk):
            p = utm[lo:lo + chunk, None, :]  # [q, 1, 2]
            t = np.clip(((p - a) * d).sum(axis=2) / safe, 0.0, 1.0)
            dist = np.linalg.norm(p - (a + t[..., None] * d), axis=2)  # [q, S]
            out[lo:lo + chunk, self._present] = np.minimum.reduceat(dist, self._first, axis=1)
        return out

    def lookup(self, utm: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each coordinate, up to k distinct addresses with their distance in metres, nearest first."""
        dist = self.distances(utm)
        k = min(k, int(np.isfinite(dist[0]).sum()) if len(dist) else 0)
        # Names are sorted, so a stable sort on distance breaks ties by address text.
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return [[(self.names[j], float(row[j])) for j in idx] for row, idx in zip(dist, order)]


def street_map_for(dataset: Dataset) -> StreetMap:
    """The street-map geocoder of a dataset; one clear error if the protocol ships no street map."""
    path = dataset.street_map
    if path is None:
        raise BenchmarkError(f"{dataset.name}: no street map (streets.geojson) in {dataset.root}; "
                             "use geocoder=gazetteer")
    return StreetMap.from_geojson(path)


# --- GPS noise -------------------------------------------------------------------------------------------

GPS_STREAMS = {"database": 1, "queries": 2}  # independent noise draws for the two uses of one seed


def gps_noise(utm: np.ndarray, sigma_m: float, seed: int, stream: str) -> np.ndarray:
    """The coordinates [N, 2] with a GPS error added: isotropic Gaussian, N(0, sigma_m²) on each axis (so the
    radial error is Rayleigh: median 1.18 σ, mean 1.25 σ; phones are typically 5–10 m off).

    The error of a coordinate depends only on (seed, stream, the coordinate to the centimetre): views that share
    a capture position (one panorama, one GPS fix) share one error, and the result never depends on row order,
    batching or the other rows. `stream` is 'database' or 'queries' (independent draws). σ = 0 returns the
    coordinates unchanged.
    """
    utm = np.asarray(utm, np.float64)
    if sigma_m < 0 or not np.isfinite(sigma_m):
        raise BenchmarkError(f"gps_noise_m={sigma_m}: give a standard deviation in metres ≥ 0")
    if sigma_m == 0 or utm.size == 0:
        return utm
    flat = np.atleast_2d(utm)
    positions, inverse = np.unique(np.round(flat * 100.0).astype(np.int64), axis=0, return_inverse=True)
    noise = np.array([np.random.default_rng([seed, GPS_STREAMS[stream], *(int(v) % 2 ** 63 for v in cm)])
                      .normal(0.0, sigma_m, 2) for cm in positions])[np.ravel(inverse)]
    return (flat + noise).reshape(utm.shape)
