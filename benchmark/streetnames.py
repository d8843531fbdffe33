"""The street-name reverse geocoder: what a public service (Nominatim) knows of a city — its named ways, the
junctions where differently named ways meet and the place nodes naming neighbourhoods, never the benchmark's
sub-street partition — and the rule that matches its answer to a candidate address by name."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree

from benchmark.address import normalize, parse_address
from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.geocoder import StreetMap


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
    # (neighbourhood name, UTM shapely polygon): where given, a point lies in the area holding it (else the
    # nearest area), as where the partition names neighbourhoods by administrative areas
    areas: tuple[tuple[str, object], ...] = ()


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
        self._area_names = [normalize(n) for n, _ in named.areas]
        self._areas = shapely.STRtree([a for _, a in named.areas]) if named.areas else None
        self._area_bytes = sum(shapely.get_coordinates(a).nbytes for _, a in named.areas)
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
        places = self._place_xy.nbytes + sum(len(n.encode()) for n in self._place_names) + self._area_bytes
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

    def _neighbourhood(self, point: np.ndarray) -> str:
        """The area holding the point (else the nearest) where areas are known, else the nearest place node's."""
        if self._areas is None:
            return self._place_names[int(self._places.query(point)[1])]
        where = shapely.points(point)
        inside = self._areas.query(where, predicate="intersects")
        return self._area_names[int(np.min(inside if len(inside) else self._areas.query_nearest(where)))]

    def _reply(self, point: np.ndarray, street: int, distance: float) -> StreetAnswer:
        projected = [(self._ways[w].project(point), w) for w in self._street_ways[street]]
        (_, along, foot), w = min(projected, key=lambda h: (h[0][0], h[1]))
        hood = self._neighbourhood(foot)
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
