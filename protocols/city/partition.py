"""AddressCLIP's semantic address partition of an OSM city, and the capture locations along its streets.

1. The named ways of each street are line-merged into polylines ("parts"); a main street is every part
   of one name.
2. Junctions are points where a differently named street touches or crosses a part (within `SNAP_M`),
   placed along the part by linear referencing; junctions closer than `junction_merge_m` are one.
3. Each part is cut at its junctions into segments bounded by 0-2 junctions, and capture locations are
   laid every ~`spacing_m` along it; a location belongs to the segment it lies on.
4. Segments that one address cannot tell apart and that lie within `same_block_m` of each other (the two
   carriageways of a block, the arms of a loop) are one sub-street; a sub-street with fewer than
   `min_locations` locations joins a touching sub-street of its main street (or is dropped if none
   touches). Far-apart sub-streets that still share an address are named by another street meeting them
   at the same junction; if there is none they become one sub-street, listed in `Partition.merged_apart`.
5. Neighbourhoods are the extract's administrative areas at the finest level that holds 99 % of the named
   streets (two or more areas), else the Voronoi cells of the OSM place nodes, clipped to the extract.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Polygon, box
from shapely.ops import substring

from benchmark.address import Address, normalize
from benchmark.errors import BenchmarkError
from protocols.city.osm import STREET_HIGHWAYS, CityMap

SNAP_M = 1.0  # streets closer than this touch (OSM ways that should share a node but do not)
_RESERVED = re.compile(r"[(),]")  # the released address form's separators
_AND = re.compile(r"\s+and\s+")

Hit = tuple[float, str]  # (metres along a part, name of the street met there)


@dataclass(frozen=True)
class PartitionOptions:
    """How streets are cut into sub-streets and where capture locations go."""

    # A dual-carriageway crossing or a staggered junction puts 10-20 m between junctions that people call
    # one crossing; a city block is 60 m or more.
    junction_merge_m: float = 25.0
    min_locations: int = 5
    # Pitts250k's Street View panoramas are about 10 m apart along a street.
    spacing_m: float = 10.0
    headings: int = 8  # views per location, from the along-street direction: CaptureLocation.headings
    highways: tuple[str, ...] = STREET_HIGHWAYS
    # Capture points stay this far inside the extract, so that every view still looks at mapped city.
    margin_m: float = 25.0
    # Same-address segments this close are one stretch: boulevard carriageways lie up to ~40 m apart.
    same_block_m: float = 50.0
    # Where neighbourhood names come from: auto = administrative areas where complete, else place nodes.
    neighbourhoods: str = "auto"


@dataclass(frozen=True, eq=False)  # numpy parts: == would be ambiguous
class SubStreet:
    """One address: a stretch of a main street between (at most) two cross streets."""

    id: int
    address: str
    main_street: str
    neighbourhood: str
    cross_streets: tuple[tuple[str, str], ...]
    parts: tuple[np.ndarray, ...]  # UTM polylines [n, 2]; several for dual carriageways

    @property
    def geometry(self) -> LineString | MultiLineString:
        """The sub-street as one shapely geometry (UTM metres)."""
        return LineString(self.parts[0]) if len(self.parts) == 1 else MultiLineString(list(self.parts))


@dataclass(frozen=True)
class CaptureLocation:
    """A place where views are taken, on one sub-street."""

    id: int
    east: float
    north: float
    heading_along_deg: float  # direction of the street here, degrees clockwise from north
    sub_street_id: int

    def headings(self, n: int) -> tuple[float, ...]:
        """n view headings evenly spaced from the along-street direction, degrees in [0, 360)."""
        return tuple(round((self.heading_along_deg + i * 360.0 / n) % 360.0, 6) for i in range(n))


@dataclass(frozen=True)
class Partition:
    """The sub-streets of a city, their capture locations and the neighbourhood cells."""

    sub_streets: list[SubStreet]
    locations: list[CaptureLocation]
    neighbourhoods: dict[str, Polygon | MultiPolygon]  # several cells when place nodes share a name
    dropped_locations: int  # on sub-streets short of min_locations touching no other of their street
    merged_apart: tuple[str, ...]  # addresses covering stretches farther apart than same_block_m
    neighbourhood_source: str = "places"  # admin (areas at admin_level) or places (Voronoi cells of place nodes)
    admin_level: int | None = None


def clean_street(name: str) -> str:
    """A name usable inside an address: normalised, with the form's separators '(),' turned into spaces."""
    return normalize(_RESERVED.sub(" ", name))


def clean_neighbourhood(name: str) -> str:
    """Like clean_street; ' and ' also becomes ' & ', as it joins cross streets after a neighbourhood."""
    return _AND.sub(" & ", clean_street(name))


NEIGHBOURHOOD_SOURCES = ("auto", "admin", "places")
COMPLETE_SHARE = 0.99  # administrative areas are complete when they hold this share of the named streets' length


def complete_admin_level(city: CityMap, highways: tuple[str, ...] = STREET_HIGHWAYS) -> int | None:
    """The finest administrative level whose areas (two or more names) hold >= 99 % of the named streets' length,
    or None: a level that leaves streets outside every area would name them by a guess."""
    lines = [LineString(w.coords) for w in city.streets if w.highway in highways and clean_street(w.name)]
    if not lines or not city.areas:
        return None
    streets = MultiLineString(lines)
    total = streets.length
    for level in sorted({a.admin_level for a in city.areas}, reverse=True):
        areas = [a for a in city.areas if a.admin_level == level]
        if len({clean_neighbourhood(a.name) for a in areas}) < 2:
            continue
        covered = streets.intersection(shapely.union_all([a.polygon for a in areas])).length
        if covered >= COMPLETE_SHARE * total:
            return level
    return None


def _by_name(names: list[str], shapes: list) -> dict[str, Polygon | MultiPolygon]:
    """The shapes united per name (several place nodes or areas may share one), empty ones dropped."""
    cells: dict[str, list] = {}
    for name, shape in zip(names, shapes):
        cells.setdefault(name, []).append(shape)
    merged = {name: shapely.union_all(parts) for name, parts in sorted(cells.items())}
    return {name: cell for name, cell in merged.items() if not cell.is_empty}


class _Neighbourhoods:
    """Where a point's neighbourhood comes from: the extract's administrative areas at the finest complete level
    (the area holding the point, else the nearest), or the Voronoi cells of its place nodes within the extract
    (the nearest node). `source` is auto (areas when complete, else place nodes), admin or places."""

    def __init__(self, city: CityMap, source: str = "auto"):
        if source not in NEIGHBOURHOOD_SOURCES:
            raise BenchmarkError(f"neighbourhoods={source!r}: use one of {', '.join(NEIGHBOURHOOD_SOURCES)}")
        extent = box(*city.bounds)
        level = complete_admin_level(city) if source != "places" else None
        if source == "admin" and level is None:
            levels = sorted({a.admin_level for a in city.areas})
            raise BenchmarkError(f"{city.name}: no administrative level (found {levels or 'none'}) has two or more "
                                 f"areas holding {COMPLETE_SHARE:.0%} of the named streets; use neighbourhoods=places")
        self.admin_level = level
        self.source = "places" if level is None else "admin"
        self.areas: list[tuple[str, Polygon | MultiPolygon]] = []  # (name, polygon) at admin_level
        if level is not None:
            self._from_areas([a for a in city.areas if a.admin_level == level], extent)
        else:
            self._from_places(city, extent)

    def _from_areas(self, areas: list, extent: Polygon) -> None:
        self.names = [clean_neighbourhood(a.name) for a in areas]
        self.areas = [(name, a.polygon) for name, a in zip(self.names, areas)]
        self._areas = shapely.STRtree([a.polygon for a in areas])
        self.sites = [(name, tuple(np.asarray(a.polygon.representative_point().coords)[0]))
                      for name, a in zip(self.names, areas)]
        self.cells = _by_name(self.names, [a.polygon.intersection(extent) for a in areas])

    def _from_places(self, city: CityMap, extent: Polygon) -> None:
        sites: dict[tuple[float, float], str] = {}
        for place in city.places:
            sites.setdefault((round(place.xy[0], 3), round(place.xy[1], 3)), clean_neighbourhood(place.name))
        if not sites:  # no place nodes: the whole extract is one neighbourhood named after the city
            sites[(extent.centroid.x, extent.centroid.y)] = clean_neighbourhood(city.name.title())
        xy = sorted(sites)
        self.names = [sites[p] for p in xy]
        self.sites = [(sites[p], p) for p in xy]
        self._tree = cKDTree(np.array(xy))
        self.cells = self._cells(np.array(xy), extent)

    def _cells(self, xy: np.ndarray, extent: Polygon) -> dict[str, Polygon | MultiPolygon]:
        if len(xy) == 1:
            return {self.names[0]: extent}
        regions = list(shapely.voronoi_polygons(MultiPoint(xy), extend_to=extent).geoms)
        sites = [int(np.argmax(shapely.contains_xy(region, xy[:, 0], xy[:, 1]))) for region in regions]
        return _by_name([self.names[i] for i in sites], [r.intersection(extent) for r in regions])

    def of(self, xy: np.ndarray) -> str:
        """Neighbourhood of one point."""
        point = np.ravel(xy)[:2]
        if self.admin_level is not None:
            inside = self._areas.query(shapely.points(point), predicate="intersects")
            if not len(inside):
                inside = self._areas.query_nearest(shapely.points(point))
            return self.names[int(np.min(inside))]
        _, i = self._tree.query(point)
        return self.names[int(i)]


@dataclass(frozen=True)
class _Junction:
    names: tuple[str, ...]  # the cross streets meeting here, most prominent first
    hood: str


@dataclass(frozen=True)
class _End:
    xy: tuple[float, float]
    junction: _Junction | None


@dataclass
class _Piece:
    """A sub-street under construction: segments of one main street and the locations sampled on them."""

    main: str
    order: int  # creation rank, for deterministic tie-breaks
    lines: list[LineString]
    ends: list[_End]  # two per line
    samples: list[int]
    apart: bool = False  # holds same-address stretches farther apart than same_block_m
    choice: int = 0  # which of the address choices names it
    choices: list[Address] | None = field(default=None, repr=False)

    def absorb(self, other: _Piece) -> None:
        """Take over the other piece's segments and locations."""
        self.order = min(self.order, other.order)
        self.lines += other.lines
        self.ends += other.ends
        self.samples = sorted(self.samples + other.samples)
        self.apart = self.apart or other.apart
        self.choice, self.choices = 0, None

    @property
    def geometry(self) -> MultiLineString:
        """All segments, UTM."""
        return MultiLineString(self.lines)


def _main_streets(city: CityMap, highways: tuple[str, ...]) -> dict[str, list[LineString]]:
    """Line-merged parts of each named street, each oriented to start at its lexicographically smaller end."""
    ways: dict[str, list[LineString]] = {}
    for way in city.streets:
        name = clean_street(way.name)
        if name and way.highway in highways and len(way.coords) >= 2:
            ways.setdefault(name, []).append(LineString(way.coords))
    streets = {}
    for name in sorted(ways):
        merged = shapely.line_merge(MultiLineString(ways[name]))
        parts = [_oriented(p) for p in shapely.get_parts(merged) if p.length > 0]
        streets[name] = sorted(parts, key=lambda p: (_key(p.coords[0]), p.length))
    return streets


def _key(xy: object) -> tuple[float, float]:
    x, y = np.round(np.asarray(xy, np.float64)[:2], 3)
    return float(x), float(y)


def _oriented(line: LineString) -> LineString:
    """The line directed from its lexicographically smaller end, so way direction in OSM does not matter."""
    if not line.is_closed and _key(line.coords[-1]) < _key(line.coords[0]):
        return line.reverse()
    return line


def _hits(part: LineString, name: str, others: list[tuple[str, LineString]], tree: shapely.STRtree) -> list[Hit]:
    """Every point where another named street crosses or touches the part: crossings and near vertices."""
    found = set()
    ours = shapely.get_coordinates(part)
    for i in tree.query(part, predicate="dwithin", distance=SNAP_M):
        other_name, other = others[i]
        if other_name == name:
            continue
        theirs = shapely.get_coordinates(other)
        points = np.vstack([shapely.get_coordinates(part.intersection(other)),
                            theirs[shapely.distance(shapely.points(theirs), part) <= SNAP_M],
                            ours[shapely.distance(shapely.points(ours), other) <= SNAP_M]])
        for s in shapely.line_locate_point(part, shapely.points(points)):
            found.add((round(float(s), 3), other_name))
    return sorted(found)


def _rotated(ring: LineString, start: float) -> LineString:
    """A closed line re-started at distance `start` along it."""
    head, tail = substring(ring, start, ring.length), substring(ring, 0.0, start)
    return LineString(np.vstack([np.asarray(head.coords), np.asarray(tail.coords)[1:]]))


def _clusters(hits: list[Hit], gap: float) -> list[list[Hit]]:
    """Runs of hits whose consecutive positions are closer than gap: each run is one junction."""
    runs: list[list[Hit]] = []
    for hit in sorted(hits):
        if runs and hit[0] - runs[-1][-1][0] < gap:
            runs[-1].append(hit)
        else:
            runs.append([hit])
    return runs


class _Builder:
    """Cuts every part at its junctions, samples locations on it and keeps each segment as a piece."""

    def __init__(self, city: CityMap, options: PartitionOptions, hoods: _Neighbourhoods):
        self.options, self.hoods = options, hoods
        self.streets = _main_streets(city, options.highways)
        self.prominence = {name: sum(p.length for p in parts) for name, parts in self.streets.items()}
        self.others = [(name, part) for name, parts in self.streets.items() for part in parts]
        self.tree = shapely.STRtree([part for _, part in self.others])
        m = options.margin_m
        xmin, ymin, xmax, ymax = city.bounds
        self.inner = (xmin + m, ymin + m, xmax - m, ymax - m)
        self.xy: list[np.ndarray] = []
        self.heading: list[np.ndarray] = []
        self.n_samples = 0
        self.pieces: list[_Piece] = []

    def build(self) -> list[_Piece]:
        """Pieces of every part of every street, in name order."""
        for name, parts in self.streets.items():
            for part in parts:
                self._cut(name, part)
        return self.pieces

    def _junction(self, part: LineString, run: list[Hit]) -> _Junction:
        names = sorted({n for _, n in run}, key=lambda n: (-self.prominence[n], n))
        # A negative distance counts back from the end: used for the closing junction of a ring.
        at = part.interpolate(float(np.mean([s for s, _ in run])))
        return _Junction(tuple(names), self.hoods.of(np.asarray(at.coords)))

    def _cut(self, name: str, part: LineString) -> None:
        gap, length = self.options.junction_merge_m, part.length
        hits = _hits(part, name, self.others, self.tree)
        if part.is_closed and hits:
            # A ring starts at a junction, so no segment runs across an arbitrary start point.
            start = hits[0][0]
            part = _rotated(part, start)
            hits = [((s - start) % length, n) for s, n in hits]
            hits = [(s - length if s > length - gap else s, n) for s, n in hits]
        runs = _clusters(hits, gap)
        # A junction within `gap` of an end bounds that end rather than cutting off a stub.
        first = runs.pop(0) if runs and runs[0][0][0] <= gap else None
        last = runs.pop() if runs and runs[-1][-1][0] >= length - gap else None
        start_j = self._junction(part, first) if first else None
        end_j = start_j if part.is_closed else (self._junction(part, last) if last else None)
        cuts = [0.0, *(float(np.mean([s for s, _ in r])) for r in runs), length]
        bounds = [start_j, *(self._junction(part, r) for r in runs), end_j]
        owner, sample_ids = self._sample(part, cuts[1:-1])
        for k in range(len(cuts) - 1):
            line = shapely.remove_repeated_points(substring(part, cuts[k], cuts[k + 1]), tolerance=0.01)
            ends = [_End(_key(line.coords[0]), bounds[k]), _End(_key(line.coords[-1]), bounds[k + 1])]
            samples = [i for i, o in zip(sample_ids, owner) if o == k]
            self.pieces.append(_Piece(name, len(self.pieces), [line], ends, samples))

    def _sample(self, part: LineString, cuts: list[float]) -> tuple[np.ndarray, range]:
        """Evenly spaced locations on the part inside the margin: the segment of each, and their ids."""
        length = part.length
        n = max(1, round(length / self.options.spacing_m))
        s = (np.arange(n) + 0.5) * length / n
        xy = shapely.get_coordinates(shapely.line_interpolate_point(part, s))
        ahead = shapely.get_coordinates(shapely.line_interpolate_point(part, np.minimum(s + 1.0, length)))
        behind = shapely.get_coordinates(shapely.line_interpolate_point(part, np.maximum(s - 1.0, 0.0)))
        d = ahead - behind
        heading = np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 360.0
        xmin, ymin, xmax, ymax = self.inner
        keep = (xy[:, 0] >= xmin) & (xy[:, 0] <= xmax) & (xy[:, 1] >= ymin) & (xy[:, 1] <= ymax)
        self.xy.append(xy[keep])
        self.heading.append(heading[keep])
        ids = range(self.n_samples, self.n_samples + int(keep.sum()))
        self.n_samples += len(ids)
        return np.searchsorted(cuts, s[keep], side="right"), ids


def _bounding_ends(piece: _Piece) -> list[_End]:
    """Distinct junction ends that no other line of the piece continues from, else its inner junctions."""
    xy = np.array([e.xy for e in piece.ends])
    line = np.arange(len(xy)) // 2
    inner = ((np.linalg.norm(xy[:, None] - xy[None], axis=2) <= SNAP_M) & (line[:, None] != line[None])).any(1)
    open_ends = [e for e, shared in zip(piece.ends, inner) if not shared and e.junction]
    # A piece whose open ends meet no street (the two arms of a crossing, merged) is named by its inner ones.
    return list(dict.fromkeys(open_ends or [e for e in piece.ends if e.junction]))


def _cross_choices(piece: _Piece) -> list[tuple[tuple[str, str], ...]]:
    """Ways to name a piece's cross streets, best first: the junction(s) farthest apart, prominent names."""
    ends = _bounding_ends(piece)
    if not ends:
        return [()]
    xy = np.array([e.xy for e in ends])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    if d.max() <= SNAP_M:  # one junction
        junction = ends[0].junction
        assert junction is not None
        return [((name, junction.hood),) for name in junction.names]
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    a, b = ends[min(i, j)].junction, ends[max(i, j)].junction
    assert a is not None and b is not None
    # Two different streets say more than one street twice.
    pairs = sorted((x == y, ra + rb, ra, x, y) for ra, x in enumerate(a.names) for rb, y in enumerate(b.names))
    return list(dict.fromkeys(tuple(sorted({(x, a.hood), (y, b.hood)})) for *_, x, y in pairs))


def _midpoint(piece: _Piece) -> np.ndarray:
    """Halfway along the longest continuous stretch of the piece."""
    parts = shapely.get_parts(shapely.line_merge(piece.geometry))
    longest = max(parts, key=lambda p: p.length)
    return np.asarray(longest.interpolate(0.5, normalized=True).coords)


class _Resolver:
    """Names pieces and merges them until every address is distinct and holds enough locations."""

    def __init__(self, pieces: list[_Piece], hoods: _Neighbourhoods, options: PartitionOptions):
        self.pieces, self.hoods, self.options = pieces, hoods, options
        self.dropped = 0

    def resolve(self) -> list[_Piece]:
        """Merge same blocks, then short pieces, then same blocks again; then separate far duplicates."""
        self._merge_same_blocks()
        self._merge_short()
        self._merge_same_blocks()
        self._separate()
        return self.pieces

    def choices(self, piece: _Piece) -> list[Address]:
        """Candidate addresses of a piece, best first."""
        if piece.choices is None:
            hood = self.hoods.of(_midpoint(piece))
            piece.choices = [Address(piece.main, hood, cross) for cross in _cross_choices(piece)]
        return piece.choices

    def address(self, piece: _Piece) -> Address:
        """The address a piece goes by now."""
        return self.choices(piece)[piece.choice]

    def _merge(self, keep: _Piece, gone: _Piece) -> None:
        keep.absorb(gone)
        self.pieces.remove(gone)

    def _duplicates(self) -> list[list[_Piece]]:
        groups: dict[str, list[_Piece]] = {}
        for piece in self.pieces:
            groups.setdefault(self.address(piece).text, []).append(piece)
        return [g for _, g in sorted(groups.items()) if len(g) > 1]

    def _merge_same_blocks(self) -> None:
        while True:
            pair = next(((a, b) for group in self._duplicates() for i, a in enumerate(group) for b in group[i + 1:]
                         if a.geometry.distance(b.geometry) <= self.options.same_block_m), None)
            if pair is None:
                return
            self._merge(*pair)

    def _merge_short(self) -> None:
        """Each piece short of min_locations joins the touching piece of its street holding the fewest."""
        while True:
            short = [p for p in self.pieces if len(p.samples) < self.options.min_locations]
            if not short:
                return
            piece = min(short, key=lambda p: (len(p.samples), p.order))
            shape = piece.geometry
            touching = [q for q in self.pieces
                        if q is not piece and q.main == piece.main and q.geometry.distance(shape) <= SNAP_M]
            if touching:
                self._merge(min(touching, key=lambda q: (len(q.samples), q.order)), piece)
            else:
                self.dropped += len(piece.samples)
                self.pieces.remove(piece)

    def _separate(self) -> None:
        """Rename the later of two far-apart duplicates by another street at its junction, else merge them."""
        while groups := self._duplicates():
            group = groups[0]
            piece = max(group, key=lambda p: p.order)
            used = {self.address(p).text for p in self.pieces}
            free = [k for k, a in enumerate(self.choices(piece)) if a.text not in used]
            if free:
                piece.choice = free[0]
                continue
            shape = piece.geometry
            nearest = min((q for q in group if q is not piece), key=lambda q: (q.geometry.distance(shape), q.order))
            self._merge(nearest, piece)
            nearest.apart = True


def partition_city(city: CityMap, options: PartitionOptions | None = None) -> Partition:
    """Sub-streets with distinct addresses, the capture locations on them and the neighbourhood cells."""
    options = options or PartitionOptions()
    hoods = _Neighbourhoods(city, options.neighbourhoods)
    builder = _Builder(city, options, hoods)
    resolver = _Resolver(builder.build(), hoods, options)
    pieces = sorted(resolver.resolve(), key=lambda p: resolver.address(p).text)
    xy = np.vstack([np.zeros((0, 2)), *builder.xy])
    heading = np.concatenate([np.zeros(0), *builder.heading])
    sub_streets, locations = [], []
    for sid, piece in enumerate(pieces):
        address = resolver.address(piece)
        merged = shapely.get_parts(shapely.line_merge(piece.geometry))
        parts = sorted((np.asarray(_oriented(p).coords) for p in merged), key=lambda c: (_key(c[0]), len(c)))
        sub_streets.append(SubStreet(sid, address.text, address.main_street, address.neighbourhood,
                                     address.cross_streets, tuple(parts)))
        for i in piece.samples:
            locations.append(CaptureLocation(len(locations), float(xy[i, 0]), float(xy[i, 1]),
                                             float(heading[i]), sid))
    apart = tuple(sorted(resolver.address(p).text for p in pieces if p.apart))
    return Partition(sub_streets, locations, hoods.cells, resolver.dropped, apart, hoods.source, hoods.admin_level)


def _round_all(coords: np.ndarray, digits: int) -> list[list[float]]:
    return [[round(float(x), digits), round(float(y), digits)] for x, y in coords]


def write_geojson(partition: Partition, city: CityMap, path: Path | str) -> None:
    """The sub-streets as an RFC 7946 FeatureCollection (WGS84 lon/lat; UTM copy in properties), stable bytes."""
    counts = Counter(loc.sub_street_id for loc in partition.locations)
    features = []
    for sub in partition.sub_streets:
        lonlat = []
        for part in sub.parts:
            lat, lon = city.to_latlon(part[:, 0], part[:, 1])
            lonlat.append(_round_all(np.column_stack([lon, lat]), 7))  # 1e-7 degree is about 1 cm
        geometry = ({"type": "LineString", "coordinates": lonlat[0]} if len(lonlat) == 1
                    else {"type": "MultiLineString", "coordinates": lonlat})
        properties = {"address": sub.address, "main_street": sub.main_street, "neighbourhood": sub.neighbourhood,
                      "cross_streets": [list(c) for c in sub.cross_streets], "n_locations": counts[sub.id],
                      "utm_epsg": city.epsg, "utm_coordinates": [_round_all(p, 2) for p in sub.parts]}
        features.append({"type": "Feature", "id": sub.id, "geometry": geometry, "properties": properties})
    text = json.dumps({"type": "FeatureCollection", "features": features}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    Path(path).write_text(text + "\n", encoding="utf-8")
