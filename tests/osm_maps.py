"""Hand-made OpenStreetMap extracts (.osm.pbf, written with pyosmium) and geotagged photos for the builder's tests:
a grid town of east-west `Row` and north-south `Col` streets near Helsinki (UTM 35V), with optional
administrative areas and place nodes."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import ExifTags, Image
from pyproj import Transformer

LAT0, LON0 = 60.170, 24.940
DLAT, DLON = 0.001, 0.002  # about 111 m either way at this latitude
TO_UTM = Transformer.from_crs(4326, 32635, always_xy=True)


@dataclass(frozen=True)
class Grid:
    """rows × cols streets; administrative areas West / East meet at column `split_col` (`admin`: complete,
    partial = the south half only, or none); two suburb place nodes."""

    rows: int = 4
    cols: int = 4
    admin: str = "complete"  # complete | partial | none
    split_col: float = 1.3
    places: bool = True
    lat0: float = LAT0  # where the (0, 0) junction lies
    lon0: float = LON0

    def latlon(self, row: float, col: float) -> tuple[float, float]:
        """The WGS84 position of grid coordinates (row, col)."""
        return self.lat0 + row * DLAT, self.lon0 + col * DLON

    def utm(self, row: float, col: float) -> tuple[float, float]:
        """The UTM 35N position of grid coordinates (row, col)."""
        lat, lon = self.latlon(row, col)
        east, north = TO_UTM.transform(lon, lat)
        return float(east), float(north)


def write_map(path: Path, grid: Grid = Grid()) -> Path:
    """Write the grid town as an .osm.pbf."""
    import osmium
    from osmium.osm.mutable import Node, Relation, Way

    meta = {"version": 1, "changeset": 1, "uid": 1, "timestamp": "2020-01-01T00:00:00Z"}
    writer = osmium.SimpleWriter(str(path))
    ids = {"node": 0, "way": 0}

    def node(row: float, col: float, tags: dict | None = None) -> int:
        ids["node"] += 1
        lat, lon = grid.latlon(row, col)
        writer.add_node(Node(id=ids["node"], location=(lon, lat), tags=tags or {}, **meta))
        return ids["node"]

    def way(nodes: list[int], tags: dict) -> int:
        ids["way"] += 1
        writer.add_way(Way(id=ids["way"], nodes=nodes, tags=tags, **meta))
        return ids["way"]

    at = {(r, c): node(r, c) for r in range(grid.rows) for c in range(grid.cols)}
    # every street runs half a block past the outer junctions: the map reaches beyond the photos
    west, east = {r: node(r, -0.5) for r in range(grid.rows)}, {r: node(r, grid.cols - 0.5) for r in range(grid.rows)}
    south, north = {c: node(-0.5, c) for c in range(grid.cols)}, {c: node(grid.rows - 0.5, c) for c in range(grid.cols)}
    if grid.places:
        node(0.5, 0.5, {"place": "suburb", "name": "Westend"})
        node(0.5, grid.cols - 1.5, {"place": "suburb", "name": "Eastend"})
    areas = []
    if grid.admin != "none":
        lo, hi, s = -1.0, grid.cols, grid.split_col
        top = grid.rows if grid.admin == "complete" else (grid.rows - 1) / 2  # partial: the south half
        corners = [node(-1.0, lo), node(-1.0, s), node(top, s), node(top, lo), node(-1.0, hi), node(top, hi)]
        areas.append(("West", way([corners[0], corners[1], corners[2], corners[3], corners[0]], {})))
        areas.append(("East", way([corners[1], corners[4], corners[5], corners[2], corners[1]], {})))
    for r in range(grid.rows):
        way([west[r], *(at[r, c] for c in range(grid.cols)), east[r]], {"highway": "residential", "name": f"Row {r}"})
    for c in range(grid.cols):
        way([south[c], *(at[r, c] for r in range(grid.rows)), north[c]], {"highway": "residential", "name": f"Col {c}"})
    for i, (name, ring) in enumerate(areas, start=1):
        writer.add_relation(Relation(id=i, members=[("w", ring, "outer")], tags={
            "type": "boundary", "boundary": "administrative", "admin_level": "10", "name": name}, **meta))
    writer.close()
    return path


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    d = int(value)
    m = int((value - d) * 60)
    s = Fraction(round(((value - d) * 60 - m) * 60 * 10_000), 10_000)
    return Fraction(d), Fraction(m), s


def write_photo(path: Path, lat: float | None = None, lon: float | None = None, heading: float | None = None,
                colour: tuple[int, int, int] = (120, 80, 40)) -> Path:
    """A small JPEG, with EXIF GPS (and image direction) where lat/lon are given."""
    image = Image.new("RGB", (16, 12), colour)
    exif = image.getexif()
    if lat is not None and lon is not None:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        gps[ExifTags.GPS.GPSLatitude] = _dms(abs(lat))
        gps[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        gps[ExifTags.GPS.GPSLongitude] = _dms(abs(lon))
        if heading is not None:
            gps[ExifTags.GPS.GPSImgDirectionRef] = "T"
            gps[ExifTags.GPS.GPSImgDirection] = Fraction(round(heading * 100), 100)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif)
    return path
