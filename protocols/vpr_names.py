"""The standard VPR / SF-XL image name: '@UTM_east@UTM_north@zone@band@lat@lon@pano@tile@heading@...@'."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath

FIELDS = ("utm_east", "utm_north", "zone", "band", "lat", "lon", "pano_id", "tile", "heading",
          "pitch", "roll", "height", "timestamp", "note")


@dataclass(frozen=True)
class VPRName:
    """Fields parsed from an '@'-separated image name; only the coordinates are required."""

    utm_east: float
    utm_north: float
    pano_id: str = ""
    heading: float | None = None
    utm_zone: tuple[int, bool] | None = None  # (zone number, southern hemisphere) when the name carries them


def has_utm_name(path: str) -> bool:
    """True if the file name is in the '@UTM_east@UTM_north@...' form."""
    return PurePosixPath(path).name.count("@") >= 3


def parse_vpr_name(path: str) -> VPRName:
    """Parse coordinates (and pano id, heading when present); ValueError names the bad field."""
    fields = PurePosixPath(path).name.split("@")
    if len(fields) < 4:
        raise ValueError("name is not in the '@UTM_east@UTM_north@...@' form")
    values = []
    for name, text in (("UTM easting", fields[1]), ("UTM northing", fields[2])):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} {text!r} is not finite")
        values.append(value)
    heading = None
    if len(fields) > 9 and fields[9].strip():
        try:
            heading = float(fields[9])
        except ValueError:
            raise ValueError(f"heading {fields[9]!r} is not a number") from None
    pano = fields[7] if len(fields) > 7 else ""
    zone = None
    if len(fields) > 4 and fields[3].isdigit() and len(fields[4]) == 1 and fields[4].isalpha():
        zone = (int(fields[3]), fields[4].upper() < "N")  # latitude bands C..M are south, N..X north
    return VPRName(values[0], values[1], pano, heading, zone)


def format_vpr_name(
    utm_east: float, utm_north: float, zone: int, band: str, lat: float, lon: float,
    pano_id: str = "", heading: float | None = None, note: str = "", ext: str = ".jpg",
) -> str:
    """Build a name in the SF-XL convention (coordinates to the centimetre, lat/lon to 5 decimals)."""
    head = "" if heading is None else f"{int(round(heading)) % 360:03d}"
    parts = [f"{utm_east:010.2f}", f"{utm_north:010.2f}", str(zone), band, f"{lat:.5f}", f"{lon:.5f}",
             pano_id, "", head, "", "", "", "", note]
    return "@" + "@".join(parts) + "@" + ext
