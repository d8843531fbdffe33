"""Reverse geocoding: UTM coordinates to a ranked list of distinct sub-street addresses — by gazetteer (nearest
labelled points), street map (nearest sub-street geometry) or street names (a public service's named ways, matched
to the candidates by name) — and the GPS noise of real photo tags."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from benchmark.address import normalize, parse_address
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
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 arrays (multiplication wraps modulo 2^64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _unit(x: np.ndarray) -> np.ndarray:
    """53 random bits of each uint64 as a float in (0, 1)."""
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(2 ** 53)


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
    cm = np.round(flat * 100.0).astype(np.int64).view(np.uint64)
    key = np.full(len(flat), np.uint64(seed % 2 ** 64) ^ np.uint64(GPS_STREAMS[stream] << 56), np.uint64)
    h = _splitmix(_splitmix(_splitmix(key) ^ cm[:, 0]) ^ cm[:, 1])
    radius = np.sqrt(-2.0 * np.log(_unit(_splitmix(h ^ np.uint64(1)))))  # Box–Muller: two independent normals
    angle = 2.0 * np.pi * _unit(_splitmix(h ^ np.uint64(2)))
    noise = sigma_m * np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return (flat + noise).reshape(utm.shape)


# --- the street-name geocoder ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NamedWays:
    """What a public reverse-geocoding service (Nominatim) knows of a city, and nothing of the benchmark's
    sub-streets: the named ways, the junctions where differently named ways meet, and the place nodes that name
    neighbourhoods (a point lies in the neighbourhood of its nearest place node: the Voronoi cells the city
    protocols use). Names are already in the address form (the protocol's street / neighbourhood cleaning).
    A protocol supplies it through `Protocol.named_ways`."""

    ways: tuple[tuple[str, np.ndarray], ...]  # (street name, UTM polyline [n, 2]); a name may have many ways
    junctions: tuple[tuple[str, str, tuple[float, float]], ...]  # (street, cross street, UTM point on the street)
    places: tuple[tuple[str, tuple[float, float]], ...]  # (neighbourhood name, UTM point)


@dataclass(frozen=True)
class StreetAnswer:
    """The service's reply for one coordinate: the nearest named way, the neighbourhood of the point on it nearest
    the coordinate, the cross streets at the junctions either side of that point along the way (`between`,
    nearest first; one past the last junction of a dead end) and then every street meeting the way
    (`cross_streets`, those of `between` first, the rest nearest junction first), and the distance to the way."""

    street: str
    neighbourhood: str
    between: tuple[str, ...]
    cross_streets: tuple[str, ...]
    distance: float


@dataclass(frozen=True, eq=False)
class _Way:
    """One named way as a polyline with its along-way measure and the junctions on it."""

    street: int
    start: np.ndarray  # [S, 2] segment starts
    end: np.ndarray  # [S, 2] segment ends
    offset: np.ndarray  # [S] metres along the way at each segment start
    length: float
    closed: bool

    def project(self, point: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(distance, metres along the way, foot point) of the way's point nearest `point`."""
        d = self.end - self.start
        length2 = (d ** 2).sum(axis=1)
        t = np.clip(((point - self.start) * d).sum(axis=1) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
        foot = self.start + t[:, None] * d
        dist = np.linalg.norm(point - foot, axis=1)
        i = int(np.argmin(dist))
        return float(dist[i]), float(self.offset[i] + t[i] * np.sqrt(length2[i])), foot[i]


JUNCTION_SNAP_M = 1.0  # junction points closer than this along a way are one junction (several streets meet)


class StreetNames:
    """A public reverse-geocoding service (named ways only) whose answers are matched to candidate addresses.

    The service (`answer`) knows only a `NamedWays` map, never the sub-street partition: for a coordinate, the
    nearest named way (by distinct name: all ways of one name are one street), the neighbourhood at the point of
    that way nearest the coordinate, the cross streets at the nearest junction behind and ahead of that point
    along the way (`between`: one junction past the end of a dead end; a closed way wraps around), and every
    street meeting the way, those first and the rest nearest junction first (`cross_streets`).

    Matching (`lookup`), the documented rule: ways are taken nearest first; a way that is no candidate's main
    street is passed over (the next-nearest way answers instead). The candidates whose main street is the way's
    name follow, ordered by
      1. the neighbourhood: the way's own before any other (same main street in another neighbourhood is the
         fall-back);
      2. how many of the `between` streets are among the candidate's cross streets (more first), then how many
         of its cross streets are not (fewer first): the candidate bounded by exactly the junctions either side
         of the point wins, a dead end's one-cross-street address included;
      3. the cross streets' ranks in `cross_streets` (a street that meets the way nowhere is ∞), sorted
         ascending and compared lexicographically: the nearer cross streets win;
      4. the address text.
    Cross streets are compared by name only (not their neighbourhood). Then the next-nearest way's candidates,
    and so on; candidates whose main street the map does not name come last, in text order, so k addresses are
    always returned when the candidate set has k. The distance given with an address is that of the way it was
    matched through (the farthest way's, for the last group).
    """

    def __init__(self, named: NamedWays, addresses: Sequence[str]):
        if not named.ways:
            raise ValueError("street-name geocoder needs at least one named way")
        if not addresses:
            raise ValueError("street-name geocoder needs at least one candidate address")
        self._distances = StreetMap([(name, line) for name, line in named.ways])  # distance to each distinct name
        self.streets: list[str] = self._distances.names
        street_id = {s: i for i, s in enumerate(self.streets)}
        self._ways: list[_Way] = []
        self._street_ways: dict[int, list[int]] = {}
        for name, line in named.ways:
            line = np.asarray(line, np.float64).reshape(-1, 2)
            if len(line) == 1:
                line = np.vstack([line, line])
            if len(line) == 0:
                continue
            seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
            way = _Way(street_id[normalize(name)], line[:-1], line[1:], np.r_[0.0, np.cumsum(seg)[:-1]],
                       float(seg.sum()), bool(len(line) > 2 and np.allclose(line[0], line[-1])))
            self._street_ways.setdefault(way.street, []).append(len(self._ways))
            self._ways.append(way)
        # Junctions: on the way of their street nearest them, at their measure along it; sorted by measure.
        found: dict[int, list[tuple[float, str, float, float]]] = {}
        for street, cross, (x, y) in named.junctions:
            street, cross = normalize(street), normalize(cross)
            if street not in street_id or cross == street:
                continue
            point = np.array([x, y], np.float64)
            hits = [(self._ways[w].project(point), w) for w in self._street_ways[street_id[street]]]
            (_, along, _), w = min(hits, key=lambda h: (h[0][0], h[1]))
            found.setdefault(w, []).append((along, cross, float(x), float(y)))
        self._junction_at: dict[int, np.ndarray] = {}  # way -> [J] measures
        self._junction_xy: dict[int, np.ndarray] = {}  # way -> [J, 2]
        self._junction_name: dict[int, list[str]] = {}  # way -> J cross-street names
        for w, rows in found.items():
            rows = sorted(set(rows))
            self._junction_at[w] = np.array([r[0] for r in rows], np.float64)
            self._junction_xy[w] = np.array([[r[2], r[3]] for r in rows], np.float64)
            self._junction_name[w] = [r[1] for r in rows]
        if named.places:
            self._place_names = [normalize(n) for n, _ in named.places]
            self._place_xy = np.array([xy for _, xy in named.places], np.float64)
        else:  # no place nodes: one unnamed neighbourhood, which matches no candidate's
            self._place_names, self._place_xy = [""], np.zeros((1, 2))
        self._places = cKDTree(self._place_xy)
        self.names: list[str] = sorted({normalize(a) for a in addresses})
        self._parsed = [parse_address(a) for a in self.names]
        self._width = max(1, max(len(p.cross_streets) for p in self._parsed))
        self._by_street: dict[int, list[int]] = {}
        self._unmapped: list[int] = []
        for i, p in enumerate(self._parsed):
            sid = street_id.get(p.main_street)
            if sid is None:
                self._unmapped.append(i)
            else:
                self._by_street.setdefault(sid, []).append(i)

    def __len__(self) -> int:
        return len(self._ways)

    @property
    def nbytes(self) -> int:
        """Bytes of the way segments, their measures and names, the junctions (measure, point, name), the place
        nodes and the candidate strings."""
        measures = sum(w.offset.nbytes for w in self._ways)
        junctions = sum(a.nbytes + xy.nbytes for a, xy in zip(self._junction_at.values(), self._junction_xy.values()))
        junction_names = sum(len(c.encode()) + 8 for names in self._junction_name.values() for c in names)
        places = self._place_xy.nbytes + sum(len(n.encode()) for n in self._place_names)
        candidates = sum(len(a.encode()) for a in self.names)
        return int(self._distances.nbytes + measures + junctions + junction_names + places + candidates)

    def _side(self, w: int, along: float, ahead: bool) -> list[str]:
        """Names at the nearest junction behind (or ahead of) a measure along way w; wrapping round a closed way."""
        at, names, way = self._junction_at[w], self._junction_name[w], self._ways[w]
        pick = np.flatnonzero(at >= along) if ahead else np.flatnonzero(at <= along)
        if len(pick):
            j = pick[0] if ahead else pick[-1]
        elif way.closed:
            j = 0 if ahead else len(at) - 1
        else:
            return []
        return [n for a, n in zip(at, names) if abs(a - at[j]) <= JUNCTION_SNAP_M]

    def _reply(self, point: np.ndarray, street: int, distance: float) -> StreetAnswer:
        projected = [(self._ways[w].project(point), w) for w in self._street_ways[street]]
        (_, along, foot), w = min(projected, key=lambda h: (h[0][0], h[1]))
        hood = self._place_names[int(self._places.query(foot)[1])]
        between: list[str] = []
        others: list[tuple[float, str]] = []
        if w in self._junction_at:
            behind, ahead = self._side(w, along, False), self._side(w, along, True)
            way = self._ways[w]
            gaps = np.abs(self._junction_at[w] - along)
            if way.closed:
                gaps = np.minimum(gaps, way.length - gaps)
            near = min(zip(gaps.tolist(), self._junction_name[w]))[1]
            first, second = (behind, ahead) if near in behind else (ahead, behind)
            between = list(dict.fromkeys(first + second))
        for v in self._street_ways[street]:  # every junction of the street, nearest first
            if v in self._junction_xy:
                d = np.linalg.norm(self._junction_xy[v] - foot, axis=1)
                others += [(float(x), n) for x, n in zip(d, self._junction_name[v])]
        cross = list(dict.fromkeys(between + [n for _, n in sorted(others)]))
        return StreetAnswer(self.streets[street], hood, tuple(between), tuple(cross), float(distance))

    def answer(self, utm: np.ndarray) -> list[StreetAnswer]:
        """The service's reply for each coordinate (its nearest named way, whether or not a candidate is on it)."""
        utm = np.atleast_2d(np.asarray(utm, np.float64))
        dist = self._distances.distances(utm)
        return [self._reply(p, int(np.argmin(row)), float(row.min())) for p, row in zip(utm, dist)]

    def _matched(self, answer: StreetAnswer, street: int) -> list[int]:
        """The candidates on the answered street, in the documented order."""
        rank = {c: r for r, c in enumerate(answer.cross_streets)}
        between = set(answer.between)
        inf = float("inf")

        def key(i: int) -> tuple:
            p = self._parsed[i]
            names = {c for c, _ in p.cross_streets}
            ranks = sorted(rank.get(c, inf) for c in names)
            ranks += [inf] * (self._width - len(ranks))
            return (p.neighbourhood != answer.neighbourhood, -len(between & names), len(names - between),
                    tuple(ranks), self.names[i])

        return sorted(self._by_street[street], key=key)

    def lookup(self, utm: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each coordinate, up to k distinct candidate addresses by the matching rule, with the distance in
        metres to the way each was matched through (non-decreasing)."""
        utm = np.atleast_2d(np.asarray(utm, np.float64))
        k = min(k, len(self.names))
        # Retrieved views of one place share its coordinates: each distinct coordinate is geocoded once.
        distinct, inverse = np.unique(utm, axis=0, return_inverse=True)
        out = []
        for point, row in zip(distinct, self._distances.distances(distinct)):
            ranked: list[tuple[str, float]] = []
            for street in np.argsort(row, kind="stable"):  # names are sorted: ties go by street name
                if len(ranked) >= k:
                    break
                if int(street) not in self._by_street:
                    continue
                reply = self._reply(point, int(street), float(row[street]))
                ranked += [(self.names[i], reply.distance) for i in self._matched(reply, int(street))[:k - len(ranked)]]
            far = float(row.max()) if len(row) else 0.0
            ranked += [(self.names[i], far) for i in self._unmapped[:k - len(ranked)]]
            out.append(ranked)
        return [list(out[i]) for i in np.ravel(inverse)]

    def coverage(self, utm: np.ndarray) -> float:
        """Median distance in metres from the coordinates to their nearest named way (a map-coverage check)."""
        utm = np.atleast_2d(np.asarray(utm, np.float64))
        return float(np.median(self._distances.distances(utm).min(axis=1))) if len(utm) else 0.0


def protocol_named_ways(dataset: Dataset) -> NamedWays | None:
    """The named ways of the map a dataset was generated from, through its protocol's `named_ways` hook (the
    protocol is found by name, from the dataset's generator.json or else the dataset's name); None if none."""
    from benchmark.registry import PROTOCOLS

    name = dataset.name
    spec = dataset.root / "generator.json"
    if spec.is_file():
        with contextlib.suppress(json.JSONDecodeError, AttributeError):  # unreadable: go by the dataset's name
            name = json.loads(spec.read_text(encoding="utf-8")).get("protocol", name)
    try:
        protocol = PROTOCOLS.get(name)
    except BenchmarkError:
        return None
    hook = getattr(protocol, "named_ways", None)
    return hook(dataset.root) if hook is not None else None


def street_names_for(dataset: Dataset, named: NamedWays | None = None) -> StreetNames:
    """The street-name geocoder of a dataset over its candidate addresses: from the given map of named ways,
    else the protocol's; one clear error when there is neither."""
    named = named if named is not None else protocol_named_ways(dataset)
    if named is None:
        raise BenchmarkError(
            f"{dataset.name}: geocoder=streetnames needs an OpenStreetMap map of the named ways, and this dataset "
            "has none (the generated protocols helsinki, kotka and tiny do); pass map=PATH.osm.pbf, an OpenStreetMap "
            "extract covering the dataset, or use geocoder=gazetteer")
    return StreetNames(named, dataset.address_book.addresses)
