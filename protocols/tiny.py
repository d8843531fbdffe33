"""`tiny`: a few hundred generated street views on a synthetic grid, in the real on-disk format.

A test and smoke fixture, not a city: six named streets cross on a grid; each is split into sub-streets at
its junctions (dead ends keep one cross street); two neighbourhoods split the grid west/east. A view is a
crop of one smooth random "world texture" ahead of the camera, rotated to the heading, so views of nearby
places share pixels and far-apart ones do not. Queries differ from the database by exposure, noise,
position jitter and stronger JPEG compression.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from pyproj import Transformer
from scipy.ndimage import zoom
from tqdm.auto import tqdm

from protocols.generated import (
    GeneratedProtocol,
    candidate_addresses,
    split_locations,
    write_annotations,
)
from protocols.vpr_names import format_vpr_name

if TYPE_CHECKING:
    from benchmark.streetnames import NamedWays

EW_STREETS = ("First Street", "Second Street", "Third Street")
NS_STREETS = ("Maple Avenue", "Oak Avenue", "Pine Avenue")
ORIGIN = (385_000.0, 6_672_000.0)  # UTM 35V, central Helsinki's zone
ZONE, BAND = 35, "V"


@dataclass(frozen=True)
class TinyOptions:
    """Grid spacing, dead-end length, capture spacing, headings, image size and seed."""

    block_m: float = 80.0
    dead_end_m: float = 40.0
    spacing_m: float = 8.0
    headings: int = 2
    image_px: int = 64
    view_m: float = 48.0
    seed: int = 0


@dataclass(frozen=True)
class _Place:
    location: int
    east: float
    north: float
    along: float  # direction of travel along the street, degrees clockwise from north
    address: str
    street: str
    cross: tuple[str, ...]
    hood: str


def _hood(x: float, opts: TinyOptions) -> str:
    return "Westend" if x < opts.block_m else "Eastside"


def _places(opts: TinyOptions) -> list[_Place]:
    """Capture locations along every street, with the sub-street address of each."""
    junctions = [i * opts.block_m for i in range(len(EW_STREETS))]
    lo, hi = -opts.dead_end_m, junctions[-1] + opts.dead_end_m
    cuts = [lo, *junctions, hi]
    places: list[_Place] = []
    for horizontal, streets, crossers in ((True, EW_STREETS, NS_STREETS), (False, NS_STREETS, EW_STREETS)):
        for s_i, street in enumerate(streets):
            fixed = junctions[s_i]
            for a, b in zip(cuts[:-1], cuts[1:]):
                ends = [crossers[junctions.index(c)] for c in (a, b) if c in junctions]
                mid = (a + b) / 2
                mid_x = mid if horizontal else fixed
                hood = _hood(mid_x, opts)
                cross = []
                for c in (a, b):
                    if c in junctions:
                        jx = c if horizontal else fixed
                        cross.append(f"{crossers[junctions.index(c)]}, {_hood(jx, opts)}")
                address = f"{street}, {hood} ({' and '.join(cross)})"
                t = a + opts.spacing_m / 2
                while t < b:
                    east, north = (t, fixed) if horizontal else (fixed, t)
                    places.append(_Place(len(places), east, north, 90.0 if horizontal else 0.0, address,
                                         street, tuple(ends), hood))
                    t += opts.spacing_m
    return places


def _world(opts: TinyOptions, extent: tuple[float, float]) -> np.ndarray:
    """A smooth random RGB texture, 1 px per metre, covering the grid with margin."""
    rng = np.random.default_rng(opts.seed)
    size = int(extent[1] - extent[0])
    world = np.zeros((size, size, 3), np.float32)
    for cell, weight in ((32, 0.6), (12, 0.4)):
        coarse = rng.random((size // cell + 2, size // cell + 2, 3)).astype(np.float32)
        world += weight * zoom(coarse, (cell, cell, 1), order=1)[:size, :size]
    return world


def _view(world: np.ndarray, origin: float, east: float, north: float, heading: float,
          opts: TinyOptions) -> np.ndarray:
    """The square of world texture ahead of the camera, rotated so the heading points up."""
    rad = np.deg2rad(heading)
    cx = east + np.sin(rad) * opts.view_m / 2 - origin
    cy = north + np.cos(rad) * opts.view_m / 2 - origin
    half = int(opts.view_m / 2)
    col, row = int(round(cx)), int(round(world.shape[0] - 1 - cy))  # image rows grow southward
    patch = world[row - half:row + half, col - half:col + half]
    return np.rot90(patch, k=int(round(heading / 90.0)) % 4)


def _save(array: np.ndarray, path: Path, px: int, quality: int) -> None:
    image = Image.fromarray(np.clip(array * 255.0, 0, 255).astype(np.uint8)).resize((px, px), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=quality)


class TinyProtocol(GeneratedProtocol):
    """The generated test/smoke fixture."""

    name = "tiny"
    version = "1"
    summary = "a few hundred generated views on a synthetic street grid"
    prefix = "tiny"

    def preset_options(self, preset: str) -> TinyOptions:
        """The same small grid for every preset."""
        return TinyOptions()

    def generate(self, folder: Path, options: TinyOptions, progress: bool) -> None:
        """Write the three splits (7:2:1 by location) with @UTM@ names and annotation JSONs."""
        opts = options
        places = _places(opts)
        margin = opts.view_m * 2
        extent = (-opts.dead_end_m - margin, (len(EW_STREETS) - 1) * opts.block_m + opts.dead_end_m + margin)
        world = _world(opts, extent)
        rng = np.random.default_rng(opts.seed + 1)  # the split permutation, then the query jitter
        split_of = split_locations(len(places), rng)
        known = candidate_addresses((p.address for p in places), split_of)
        to_latlon = Transformer.from_crs(f"EPSG:326{ZONE}", "EPSG:4326", always_xy=True)
        annotations: dict[str, dict[str, list[str]]] = {"train": {}, "database": {}, "queries": {}}
        bar = tqdm(total=len(places) * opts.headings, desc="building tiny", unit="img", disable=not progress)
        for p in places:
            split = split_of[p.location]
            if split == "queries" and p.address not in known:
                bar.update(opts.headings)
                continue
            for h in range(opts.headings):
                heading = (p.along + h * 360.0 / opts.headings) % 360.0
                east, north, look = p.east, p.north, heading
                gain, noise, quality = 1.0, 0.0, 90
                if split == "queries":
                    east += rng.uniform(-1.5, 1.5)
                    north += rng.uniform(-1.5, 1.5)
                    gain, noise, quality = rng.uniform(0.6, 0.8), 0.04, 50
                pixels = _view(world, extent[0], east, north, look, opts) * gain
                if noise:
                    pixels = pixels + rng.normal(0, noise, pixels.shape)
                utm_e, utm_n = ORIGIN[0] + east, ORIGIN[1] + north
                lon, lat = to_latlon.transform(utm_e, utm_n)
                key = f"{split}/" + format_vpr_name(utm_e, utm_n, ZONE, BAND, lat, lon,
                                                    pano_id=f"L{p.location:04d}", heading=heading)
                _save(pixels, folder / "images" / key, opts.image_px, quality)
                facing = ["north", "east", "south", "west"][int(round(heading / 90.0)) % 4]
                caption = f"A street view facing {facing}, with {p.street.split()[0].lower()} coloured surroundings."
                verbose = (f"located in {p.hood}, specifically on a section of {p.street} that lies "
                           f"{'between ' + ' and '.join(p.cross) if len(p.cross) == 2 else 'next to ' + p.cross[0]}")
                annotations[split][key] = [caption, verbose, p.address]
                bar.update()
        bar.close()
        write_annotations(folder, self.prefix, annotations)

    def named_ways(self, root: Path) -> NamedWays:
        """The grid's six streets as named ways (a real geocoder's view: no sub-streets), with one place node per
        neighbourhood placed so that their Voronoi boundary is the grid's west/east line (x < block_m is Westend)."""
        from protocols.city.osm import CityMap, Place, StreetWay
        from protocols.city.streetnames import named_ways

        spec = root / "generator.json"
        opts = TinyOptions(**json.loads(spec.read_text())["options"]) if spec.is_file() else TinyOptions()
        x0, y0 = ORIGIN
        far = (len(EW_STREETS) - 1) * opts.block_m + opts.dead_end_m
        near = -opts.dead_end_m
        streets = []
        for i, name in enumerate(EW_STREETS):
            y = y0 + i * opts.block_m
            streets.append(StreetWay(i + 1, name, "residential", np.array([[x0 + near, y], [x0 + far, y]])))
        for i, name in enumerate(NS_STREETS):
            x = x0 + i * opts.block_m
            streets.append(StreetWay(i + 11, name, "residential", np.array([[x, y0 + near], [x, y0 + far]])))
        # Sites 1 km either side of x = block_m - 1 cm: a point on the middle avenue (x = block_m) is Eastside.
        boundary, mid_y = x0 + opts.block_m - 0.01, y0 + opts.block_m
        places = [Place("Westend", "neighbourhood", (boundary - 1000.0, mid_y)),
                  Place("Eastside", "neighbourhood", (boundary + 1000.0, mid_y))]
        bounds = (x0 + near, y0 + near, x0 + far, y0 + far)
        return named_ways(CityMap("tiny", 32600 + ZONE, ZONE, BAND, streets, [], np.zeros((0, 2)), places, bounds))


TINY = TinyProtocol()
