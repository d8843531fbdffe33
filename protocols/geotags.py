"""Where each photo of a folder was taken (issue 16's first step): from VPR / SF-XL `@UTM@` file names, from
EXIF GPS tags, or from a CSV (latitude/longitude, or UTM easting/northing with its zone). Every coordinate is
brought to UTM; photos without one, or in another UTM zone than the majority, are reported and left out,
never guessed."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import ExifTags, Image
from pyproj import Transformer

from benchmark.errors import BenchmarkError
from protocols.city.osm import utm_zone
from protocols.vpr_names import has_utm_name, parse_vpr_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
SHOWN = 5  # files named in a report line


@dataclass(frozen=True)
class Geotag:
    """A photo's position in UTM (metres) and its zone, and where the position came from."""

    east: float
    north: float
    zone: int
    south: bool
    source: str  # name | exif | csv
    heading: float | None = None  # degrees clockwise from north, where the name, EXIF or CSV gives one
    caption: str | None = None  # the CSV's `caption` column, where it has one


@dataclass
class Geotags:
    """The positions found (image path relative to the folder -> Geotag) and the photos left out, by reason."""

    tags: dict[str, Geotag]
    left_out: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> list[str]:
        """One line per reason: the count and the first few files."""
        return left_out_lines(self.left_out)


def left_out_lines(left_out: dict[str, list[str]]) -> list[str]:
    """'left out N <reason>: first files …', one line per reason that left any file out."""
    return [f"left out {len(files)} {reason}: {', '.join(files[:SHOWN])}{' …' if len(files) > SHOWN else ''}"
            for reason, files in left_out.items() if files]


def to_utm(lat: float, lon: float, source: str, heading: float | None = None, caption: str | None = None) -> Geotag:
    """A WGS84 position as UTM in its own zone."""
    if not (-80 <= lat <= 84 and -180 <= lon <= 180):
        raise ValueError(f"latitude {lat}, longitude {lon} is outside the UTM range")
    zone, _, epsg = utm_zone(lon, lat)
    east, north = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return Geotag(float(east), float(north), zone, lat < 0, source, heading, caption)


def epsg_of(tag: Geotag) -> int:
    """The EPSG code of a geotag's UTM zone (WGS84 / UTM north 326zz, south 327zz)."""
    return (32700 if tag.south else 32600) + tag.zone


def _optional(row: object, column: str) -> object:
    value = getattr(row, column, None)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _degrees(value: object, ref: object) -> float:
    """An EXIF (degrees, minutes, seconds) rational triple and its N/S/E/W reference as signed degrees."""
    d, m, s = (float(v) for v in value)  # type: ignore[union-attr]
    sign = -1.0 if str(ref).strip().upper() in ("S", "W") else 1.0
    return sign * (d + m / 60.0 + s / 3600.0)


def from_exif(path: Path) -> Geotag | None:
    """The EXIF GPS position of an image file (None when it has none)."""
    with Image.open(path) as image:
        gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    if not gps or ExifTags.GPS.GPSLatitude not in gps or ExifTags.GPS.GPSLongitude not in gps:
        return None
    lat = _degrees(gps[ExifTags.GPS.GPSLatitude], gps.get(ExifTags.GPS.GPSLatitudeRef, "N"))
    lon = _degrees(gps[ExifTags.GPS.GPSLongitude], gps.get(ExifTags.GPS.GPSLongitudeRef, "E"))
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    direction = gps.get(ExifTags.GPS.GPSImgDirection)
    heading = float(direction) % 360.0 if direction is not None and math.isfinite(float(direction)) else None
    return to_utm(lat, lon, "exif", heading)


def from_name(name: str) -> Geotag | None:
    """The position in a VPR / SF-XL `@UTM_east@UTM_north@zone@band@...` name (None without one or its zone)."""
    if not has_utm_name(name):
        return None
    parsed = parse_vpr_name(name)
    if parsed.utm_zone is None:
        return None
    zone, south = parsed.utm_zone
    return Geotag(parsed.utm_east, parsed.utm_north, zone, south, "name", parsed.heading)


def read_csv(path: Path) -> dict[str, Geotag]:
    """image -> position from a CSV with the columns `image` and `lat`, `lon`, or `image`, `utm_east`,
    `utm_north` and `zone` (e.g. `35N`, `35V`, or `35` with a `south` column), and optionally `heading` (degrees
    clockwise from north) and `caption`; a bad file is one clear error."""
    try:
        table = pd.read_csv(path, dtype={"image": str, "caption": str})
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise BenchmarkError(f"{path}: not a readable CSV ({e}); give columns image,lat,lon or "
                             "image,utm_east,utm_north,zone") from None
    columns = set(table.columns)
    out: dict[str, Geotag] = {}
    if {"image", "lat", "lon"} <= columns:
        for row in table.itertuples(index=False):
            try:
                heading = _optional(row, "heading")
                out[str(row.image)] = to_utm(float(row.lat), float(row.lon), "csv",
                                             None if heading is None else float(heading) % 360.0,
                                             _optional(row, "caption"))  # type: ignore[arg-type]
            except ValueError as e:
                raise BenchmarkError(f"{path}: {row.image}: {e}; fix the row or remove it") from None
        return out
    if {"image", "utm_east", "utm_north", "zone"} <= columns:
        for row in table.itertuples(index=False):
            text = str(row.zone).strip().upper()
            digits = "".join(ch for ch in text if ch.isdigit())
            band = text[len(digits):]
            if not digits or not 1 <= int(digits) <= 60 or (band and (len(band) != 1 or band not in "CDEFGHJKLMNPQRSTUVWX")):
                raise BenchmarkError(f"{path}: {row.image}: zone {row.zone!r} is not a UTM zone like 35N or 35V")
            south = bool(getattr(row, "south", False)) if not band else band < "N"
            try:
                east, north = float(row.utm_east), float(row.utm_north)
                heading = _optional(row, "heading")
                heading = None if heading is None else float(heading) % 360.0  # type: ignore[arg-type]
                if not (math.isfinite(east) and math.isfinite(north)):
                    raise ValueError
            except (TypeError, ValueError):
                raise BenchmarkError(f"{path}: {row.image}: non-numeric UTM or heading ({row.utm_east!r}, "
                                     f"{row.utm_north!r}); fix the row or remove it") from None
            out[str(row.image)] = Geotag(east, north, int(digits), south, "csv", heading,
                                         _optional(row, "caption"))  # type: ignore[arg-type]
        return out
    raise BenchmarkError(f"{path}: has columns {sorted(columns)}; give image,lat,lon or "
                         "image,utm_east,utm_north,zone")


def read_geotags(folder: Path, csv: Path | None = None) -> Geotags:
    """Every image under `folder` with its position: the CSV's row where one is given, else its `@UTM@` name,
    else its EXIF GPS; images with none, or outside the majority UTM zone, are left out and reported."""
    if not folder.is_dir():
        raise BenchmarkError(f"{folder}: no such folder; pass --from-images DIR holding the photos")
    table = read_csv(csv) if csv is not None else {}
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise BenchmarkError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}); pass the folder of photos")
    tags: dict[str, Geotag] = {}
    missing: list[str] = []
    for path in images:
        key = path.relative_to(folder).as_posix()
        tag = table.get(key) or table.get(path.name) or from_name(path.name) or from_exif(path)
        if tag is None:
            missing.append(key)
        else:
            tags[key] = tag
    found = {p.relative_to(folder).as_posix() for p in images} | {p.name for p in images}
    left_out = {"images without coordinates (no CSV row, @UTM@ name or EXIF GPS)": missing,
                "CSV rows naming no image in the folder": sorted(k for k in table if k not in found)}
    if tags:
        (zone, south), _ = Counter((t.zone, t.south) for t in tags.values()).most_common(1)[0]
        other = sorted(k for k, t in tags.items() if (t.zone, t.south) != (zone, south))
        left_out[f"images outside UTM zone {zone}{'S' if south else 'N'} (the majority's)"] = other
        tags = {k: t for k, t in tags.items() if k not in set(other)}
    return Geotags(tags, left_out)
