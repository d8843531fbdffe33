"""Street-level views of an OpenStreetMap city: a deterministic, CPU-only 2.5-D column ray caster.

Every vertical surface is a "primitive": a segment on the ground plane with a height range and a material.
Building walls come from the footprints, trees are camera-facing billboards (a round canopy over a trunk),
vehicles are small boxes. For a level pinhole camera 1/depth is linear in the screen column, so each wall
covers a column range where its depth and facade coordinate interpolate exactly. Each column keeps its K
nearest primitives not hidden behind a nearer wall; a painter pass gives every pixel a layer. Because depth and facade position are constant
along a column of one primitive, lighting, haze and distance filtering are computed per (layer, column)
into a small palette; a pixel only picks a palette slot from its material's tile (window grid, shop front).
Sky and ground are palettes per image row (cloud level, ground class from a rasterised street map).
"""

from __future__ import annotations

import io
import math
import mmap
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from protocols.city.osm import CityMap

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_HFOV_DEG = 160, 120, 90.0
CAMERA_HEIGHT_M = 2.5
STOREY_M = 3.2  # height per OSM level, plus 1 m for roof and plinth

TILE_BITS = 4
TILE = 1 << TILE_BITS  # facade tile texels per period, both ways
LAYERS = 4  # nearest visible primitives kept per column
CANDIDATES = 12  # nearest primitives per column searched for visible ones
NEAR_M = 0.5
VIEW_M = 200.0  # walls and trees farther than this are not drawn
GROUND_MAX_M = 300.0
GROUND_RES_M = 0.25
CELL_M = 32.0

# material slots (a material's tile holds slot numbers; its palette one colour per slot)
WALL, GLASS, TRIM, SHOP, ACCENT, DARK, LIT = 0, 1, 2, 3, 4, 5, 6
SLOTS = 8
# ground classes, each in NOISE brightness variants
OTHER, PAVEMENT, KERB, ROAD, MARKING, PLAZA = range(6)
NOISE = 4
SKY_LEVELS = 8
CLOUD_ROWS = 64  # cloud texture: rows over 0-90 degrees elevation, half-degree columns of azimuth

ROAD_WIDTH_M = {"motorway": 20.0, "trunk": 16.0, "primary": 14.0, "secondary": 12.0, "tertiary": 10.0,
                "unclassified": 8.0, "residential": 8.0, "living_street": 6.0, "service": 5.0,
                "pedestrian": 8.0, "primary_link": 7.0, "secondary_link": 7.0, "tertiary_link": 7.0}
PAVEMENT_M = 3.0
MARKED = ("motorway", "trunk", "primary", "secondary", "tertiary")
FACADES = np.array([[0.80, 0.65, 0.40], [0.90, 0.86, 0.74], [0.93, 0.84, 0.55], [0.85, 0.58, 0.48],
                    [0.72, 0.72, 0.70], [0.62, 0.30, 0.22], [0.92, 0.92, 0.90], [0.66, 0.75, 0.62],
                    [0.50, 0.38, 0.28], [0.55, 0.62, 0.70], [0.86, 0.68, 0.66], [0.42, 0.42, 0.44]])
SIGNS = np.array([[0.75, 0.12, 0.10], [0.10, 0.25, 0.60], [0.10, 0.45, 0.20], [0.90, 0.75, 0.10],
                  [0.08, 0.08, 0.08], [0.95, 0.95, 0.95]])
CAR_COLOURS = np.array([[0.90, 0.90, 0.90], [0.06, 0.06, 0.07], [0.62, 0.64, 0.66], [0.10, 0.16, 0.36],
                        [0.62, 0.08, 0.07], [0.35, 0.36, 0.38]])
PLAIN_KINDS = ("garage", "garages", "shed", "roof", "carport", "parking", "transformer_tower", "service")
GROUND_ALBEDO = np.array([[0.40, 0.44, 0.32], [0.60, 0.59, 0.57], [0.78, 0.78, 0.76], [0.30, 0.30, 0.32],
                          [0.88, 0.88, 0.86], [0.58, 0.53, 0.47]])


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera: position (UTM m), heading (degrees clockwise from north), height, optics."""

    east: float
    north: float
    heading_deg: float
    height_m: float = CAMERA_HEIGHT_M
    hfov_deg: float = DEFAULT_HFOV_DEG
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT


@dataclass(frozen=True)
class Conditions:
    """Lighting, atmosphere, traffic and sensor effects of a view (the defaults are the database's day)."""

    sun_azimuth_deg: float = 160.0
    sun_elevation_deg: float = 40.0
    sun: float = 0.50
    ambient: float = 0.58
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    sky_zenith: tuple[float, float, float] = (0.30, 0.50, 0.82)
    sky_horizon: tuple[float, float, float] = (0.74, 0.84, 0.95)
    cloud_cover: float = 0.35
    cloud_colour: tuple[float, float, float] = (0.96, 0.96, 0.97)
    haze_per_m: float = 0.002
    haze_colour: tuple[float, float, float] = (0.78, 0.84, 0.92)
    lit_windows: float = 0.0
    vehicles: int = 0
    exposure: float = 1.0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None
    seed: int = 0

    @classmethod
    def day(cls) -> Conditions:
        """Clear midday: how the database and training views are rendered."""
        return cls()

    @classmethod
    def query(cls, rng: np.random.Generator) -> Conditions:
        """A query's conditions: another time of day, haze, vehicles, sensor noise and JPEG artefacts."""
        preset = QUERY_PRESETS[int(rng.integers(len(QUERY_PRESETS)))]
        return replace(preset, haze_per_m=preset.haze_per_m * float(rng.uniform(1.0, 3.0)),
                       vehicles=int(rng.integers(1, 5)), exposure=float(rng.uniform(0.85, 1.15)),
                       noise_sigma=float(rng.uniform(2.0, 6.0)), jpeg_quality=int(rng.integers(30, 71)),
                       seed=int(rng.integers(2**31)))


QUERY_PRESETS = (
    Conditions(sun_azimuth_deg=275.0, sun_elevation_deg=7.0, sun=0.70, ambient=0.38, tint=(1.0, 0.74, 0.52),
               sky_zenith=(0.26, 0.32, 0.52), sky_horizon=(0.96, 0.64, 0.42), cloud_cover=0.45,
               cloud_colour=(0.95, 0.62, 0.45), haze_per_m=0.004, haze_colour=(0.86, 0.66, 0.52),
               lit_windows=0.25),
    Conditions(sun_elevation_deg=30.0, sun=0.0, ambient=0.82, tint=(0.92, 0.94, 0.97),
               sky_zenith=(0.60, 0.62, 0.65), sky_horizon=(0.80, 0.81, 0.82), cloud_cover=1.0,
               cloud_colour=(0.70, 0.71, 0.73), haze_per_m=0.006, haze_colour=(0.76, 0.77, 0.79)),
    Conditions(sun_elevation_deg=-6.0, sun=0.0, ambient=0.30, tint=(0.62, 0.72, 1.0),
               sky_zenith=(0.04, 0.06, 0.16), sky_horizon=(0.28, 0.28, 0.42), cloud_cover=0.3,
               cloud_colour=(0.20, 0.20, 0.28), haze_per_m=0.004, haze_colour=(0.22, 0.24, 0.34),
               lit_windows=0.45),
    Conditions(sun_azimuth_deg=100.0, sun_elevation_deg=16.0, sun=0.60, ambient=0.46, tint=(1.0, 0.92, 0.80),
               sky_zenith=(0.40, 0.55, 0.78), sky_horizon=(0.92, 0.86, 0.78), cloud_cover=0.2,
               haze_per_m=0.005, haze_colour=(0.88, 0.84, 0.78)),
)


@dataclass
class Materials:
    """Facade tiles (slot per texel, [M, 2 (upper, ground floor), TILE, TILE]), slot albedos and periods."""

    tiles: np.ndarray  # uint8 [M, 2, TILE, TILE]
    albedo: np.ndarray  # float32 [M, SLOTS, 3]
    mean: np.ndarray  # float32 [M, 3] what a facade looks like from afar
    u_period: np.ndarray  # float32 [M] metres per tile along the wall
    v_period: np.ndarray  # float32 [M] metres per tile upwards (a storey)


@dataclass
class Scene:
    """A city prepared for rendering: walls, trees, materials, ground raster and spatial grids."""

    seed: int
    heights: np.ndarray  # [buildings] metres, OSM height, else from levels, else drawn from (osm_id, seed)
    walls: np.ndarray  # float64 [N, 4] x0 y0 x1 y1, footprints counter-clockwise so outward is to the right
    wall_u: np.ndarray  # float64 [N] facade coordinate of the wall's start (length along the footprint)
    wall_building: np.ndarray  # int32 [N]
    trees: np.ndarray  # float64 [T, 2]
    tree_shape: np.ndarray  # float32 [T, 3] canopy radius, canopy bottom, material offset
    materials: Materials
    ground: np.ndarray  # uint8 [rows, cols] ground class * NOISE + noise variant
    ground_origin: tuple[float, float]
    clouds: np.ndarray  # uint8 [elevation bins, azimuth bins] cloud level 0..SKY_LEVELS-1
    grid_origin: tuple[float, float]
    grid_shape: tuple[int, int]
    wall_cells: tuple[np.ndarray, np.ndarray] = field(repr=False)  # CSR: offsets [cells+1], wall ids
    tree_cells: tuple[np.ndarray, np.ndarray] = field(repr=False)
    material_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_city(cls, city: CityMap, seed: int = 0) -> Scene:
        """Build the render scene of a city; deterministic in (city, seed)."""
        heights = building_heights(city, seed)
        walls, wall_u, wall_building = _walls(city)
        materials, material_ids = _materials(city, heights, seed)
        trees = np.asarray(city.trees, np.float64).reshape(-1, 2)
        tree_shape = _tree_shapes(len(trees), seed)
        x0, y0, x1, y1 = _extent(city, walls)
        ground, ground_origin = _ground_raster(city, (x0, y0, x1, y1), seed)
        grid_origin = (x0 - VIEW_M, y0 - VIEW_M)
        grid_shape = (int((y1 - y0 + 2 * VIEW_M) // CELL_M) + 1, int((x1 - x0 + 2 * VIEW_M) // CELL_M) + 1)
        wall_cells = _cells(walls, grid_origin, grid_shape)
        tree_cells = _cells(np.concatenate([trees, trees], axis=1), grid_origin, grid_shape)
        return cls(seed, heights, walls, wall_u, wall_building, trees, tree_shape, materials, ground,
                   ground_origin, _cloud_texture(seed), grid_origin, grid_shape, wall_cells, tree_cells,
                   material_ids)


def building_heights(city: CityMap, seed: int = 0) -> np.ndarray:
    """Height of every building: OSM height, else levels * 3.2 m + 1 m, else 9-24 m drawn from (osm_id, seed)."""
    ids = np.array([b.osm_id for b in city.buildings], np.int64)
    drawn = 9.0 + 15.0 * _hash01(ids, seed, 1)
    out = np.empty(len(ids))
    for i, b in enumerate(city.buildings):
        out[i] = b.height if b.height is not None else (
            b.levels * STOREY_M + 1.0 if b.levels is not None else drawn[i])
    return out


def jitter_camera(camera: Camera, rng: np.random.Generator, position_m: float = 2.0,
                  heading_deg: float = 8.0) -> Camera:
    """The camera moved by up to position_m (uniform in a disc) and turned by up to heading_deg."""
    radius = position_m * math.sqrt(rng.uniform())
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return replace(camera, east=camera.east + radius * math.cos(angle),
                   north=camera.north + radius * math.sin(angle),
                   heading_deg=(camera.heading_deg + rng.uniform(-heading_deg, heading_deg)) % 360.0)


# ---------------------------------------------------------------- scene building

def _hash01(keys: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) per integer key (splitmix64 of key, seed and salt)."""
    mix = (seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & ((1 << 64) - 1)
    x = np.asarray(keys, np.int64).view(np.uint64) ^ np.uint64(mix)
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _walls(city: CityMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every footprint edge (rings made counter-clockwise), its facade start coordinate and building."""
    segs, us, owner = [], [], []
    for i, b in enumerate(city.buildings):
        ring = np.asarray(b.footprint, np.float64)
        x, y = ring[:, 0], ring[:, 1]
        if np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y) < 0:
            ring = ring[::-1]
        nxt = np.roll(ring, -1, axis=0)
        length = np.hypot(*(nxt - ring).T)
        keep = length > 0.05
        segs.append(np.concatenate([ring, nxt], axis=1)[keep])
        us.append((np.cumsum(length) - length)[keep])
        owner.append(np.full(int(keep.sum()), i, np.int32))
    if not segs:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int32)
    return np.concatenate(segs), np.concatenate(us), np.concatenate(owner)


def _extent(city: CityMap, walls: np.ndarray) -> tuple[float, float, float, float]:
    pts = [np.concatenate([s.coords for s in city.streets])] if city.streets else []
    if len(walls):
        pts.append(walls[:, :2])
    if len(city.trees):
        pts.append(np.asarray(city.trees).reshape(-1, 2))
    allxy = np.concatenate(pts) if pts else np.zeros((1, 2))
    return (float(allxy[:, 0].min()), float(allxy[:, 1].min()), float(allxy[:, 0].max()),
            float(allxy[:, 1].max()))


def _cells(segs: np.ndarray, origin: tuple[float, float], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cells (CSR: offsets [cells + 1], segment ids) listing every segment within VIEW_M of the cell,
    by bounding box (a little generous; the renderer culls by depth)."""
    reach = VIEW_M + CELL_M
    lo = np.floor((np.minimum(segs[:, :2], segs[:, 2:]) - reach - origin) / CELL_M).astype(np.int64)
    hi = np.floor((np.maximum(segs[:, :2], segs[:, 2:]) + reach - origin) / CELL_M).astype(np.int64)
    lo = np.clip(lo, 0, [shape[1] - 1, shape[0] - 1])
    hi = np.clip(hi, 0, [shape[1] - 1, shape[0] - 1])
    span = hi - lo + 1
    counts = span[:, 0] * span[:, 1]
    owner = np.repeat(np.arange(len(segs)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    col = lo[owner, 0] + local % span[owner, 0]
    row = lo[owner, 1] + local // span[owner, 0]
    cell = row * shape[1] + col
    order = np.argsort(cell, kind="stable")
    offsets = np.zeros(shape[0] * shape[1] + 1, np.int64)
    offsets[1:] = np.cumsum(np.bincount(cell, minlength=shape[0] * shape[1]))
    return offsets, owner[order].astype(np.int32)


def _tree_shapes(count: int, seed: int) -> np.ndarray:
    keys = np.arange(count)
    radius = 1.8 + 1.6 * _hash01(keys, seed, 11)
    bottom = 1.8 + 1.4 * _hash01(keys, seed, 12)
    variant = np.floor(3 * _hash01(keys, seed, 13))
    return np.column_stack([radius, bottom, variant]).astype(np.float32)


def _smooth_noise(shape: tuple[int, int], sigma: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Periodic smooth noise, uniform in [0, 1]: white noise blurred by a Gaussian (sigma in cells), ranked."""
    spectrum = np.fft.rfft2(rng.standard_normal(shape))
    fy = np.fft.fftfreq(shape[0])[:, None] * sigma[0]
    fx = np.fft.rfftfreq(shape[1])[None, :] * sigma[1]
    field_ = np.fft.irfft2(spectrum * np.exp(-2 * math.pi**2 * (fx**2 + fy**2)), s=shape)
    ranks = np.argsort(np.argsort(field_.ravel()))
    return (ranks / (ranks.size - 1)).reshape(shape)


def _cloud_texture(seed: int) -> np.ndarray:
    noise = _smooth_noise((CLOUD_ROWS, 720), (2.5, 14.0), np.random.default_rng([seed, 7]))
    return np.minimum(noise * SKY_LEVELS, SKY_LEVELS - 1).astype(np.uint8)


def _ground_raster(city: CityMap, extent: tuple[float, float, float, float],
                   seed: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Rasterise street centrelines (by highway width) into ground classes, plus a brightness noise variant."""
    margin = 30.0
    ox, oy = extent[0] - margin, extent[1] - margin
    cols = int((extent[2] - extent[0] + 2 * margin) / GROUND_RES_M) + 1
    rows = int((extent[3] - extent[1] + 2 * margin) / GROUND_RES_M) + 1
    img = Image.new("L", (cols, rows), OTHER)
    draw = ImageDraw.Draw(img)

    def px(coords: np.ndarray) -> list[tuple[float, float]]:
        return [((x - ox) / GROUND_RES_M, (y - oy) / GROUND_RES_M) for x, y in coords]

    def width_px(metres: float) -> int:
        return max(1, round(metres / GROUND_RES_M))

    streets = sorted(city.streets, key=lambda s: ROAD_WIDTH_M.get(s.highway, 8.0))
    for s in streets:
        w = ROAD_WIDTH_M.get(s.highway, 8.0)
        if s.highway != "pedestrian":
            draw.line(px(s.coords), fill=PAVEMENT, width=width_px(w + 2 * PAVEMENT_M), joint="curve")
    for s in streets:
        w = ROAD_WIDTH_M.get(s.highway, 8.0)
        if s.highway == "pedestrian":
            draw.line(px(s.coords), fill=PLAZA, width=width_px(w), joint="curve")
        else:
            draw.line(px(s.coords), fill=KERB, width=width_px(w + 0.6), joint="curve")
    for s in streets:
        if s.highway != "pedestrian":
            draw.line(px(s.coords), fill=ROAD, width=width_px(ROAD_WIDTH_M.get(s.highway, 8.0)), joint="curve")
    for s in streets:
        if s.highway in MARKED:
            for dash in _dashes(s.coords, 3.0, 9.0):
                draw.line(px(dash), fill=MARKING, width=1)
    ground = np.array(img, np.uint8)
    ground[[0, -1], :] = OTHER
    ground[:, [0, -1]] = OTHER
    ground *= NOISE
    tile = _smooth_noise((512, 512), (24.0, 24.0), np.random.default_rng([seed, 5]))
    tile = np.minimum(tile * NOISE, NOISE - 1).astype(np.uint8)
    for r in range(0, rows, 512):
        for c in range(0, cols, 512):
            block = ground[r:r + 512, c:c + 512]
            block += tile[:block.shape[0], :block.shape[1]]
    return ground, (ox, oy)


def _dashes(coords: np.ndarray, dash: float, period: float) -> list[np.ndarray]:
    """Pieces [dash m long, every period m] of a polyline."""
    step = np.hypot(*np.diff(coords, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(step)])
    out = []
    for start in np.arange(period / 2, along[-1] - dash, period):
        t = np.array([start, start + dash])
        out.append(np.column_stack([np.interp(t, along, coords[:, 0]), np.interp(t, along, coords[:, 1])]))
    return out


def _colour(name: str | None) -> np.ndarray | None:
    if not name:
        return None
    try:
        return np.array(ImageColor.getrgb(name.strip())[:3], np.float64) / 255.0
    except ValueError:
        return None


def _materials(city: CityMap, heights: np.ndarray, seed: int) -> tuple[Materials, dict[str, int]]:
    """Building facades (one material each), then tree canopies, trunk and vehicle faces."""
    parts = [_facades(city, heights, seed), _canopies(seed), _trunk(), _vehicles_faces()]
    ids: dict[str, int] = {}
    at = len(city.buildings)
    for name, count in (("canopy", 3), ("trunk", 1), ("car_side", len(CAR_COLOURS)),
                        ("car_end", len(CAR_COLOURS))):
        ids[name] = at
        at += count
    tiles = np.concatenate([p[0] for p in parts]).astype(np.uint8)
    albedo = np.concatenate([p[1] for p in parts]).astype(np.float32)
    periods = np.concatenate([p[2] for p in parts]).astype(np.float32)
    counts = np.stack([np.bincount(t.ravel(), minlength=SLOTS) for t in tiles]) / tiles[0].size
    mean = np.einsum("ms,msc->mc", counts, albedo).astype(np.float32)
    return Materials(tiles, albedo, mean, periods[:, 0].copy(), periods[:, 1].copy()), ids


def _facades(city: CityMap, heights: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One material per building: tiles, albedo and (bay width, storey height) from OSM tags and hashes."""
    ids = np.array([b.osm_id for b in city.buildings], np.int64)

    def h(salt: int) -> np.ndarray:
        return _hash01(ids, seed, salt)

    levels = np.array([b.levels or 0.0 for b in city.buildings])
    storey = np.where(levels > 0, np.clip((heights - 1.0) / np.maximum(levels, 1.0), 2.7, 4.5), 2.9 + 0.8 * h(2))
    bay = 2.2 + 1.8 * h(3)
    shop = np.array([b.shop for b in city.buildings], bool) | (h(4) < 0.3)
    plain = np.array([b.kind in PLAIN_KINDS for b in city.buildings], bool)
    tiles = _facade_tiles(h, shop, plain)
    colours = [_colour(b.colour) for b in city.buildings]
    return tiles, _facade_albedo(h, colours), np.column_stack([bay, storey])


def _facade_tiles(h, shop: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """[n, 2, TILE, TILE] slots: an upper storey (punched, paired or ribbon windows) and a ground floor
    (shop front with a sign band, or windows over a plinth)."""
    uf = ((np.arange(TILE) + 0.5) / TILE)[None, None, :]
    vf = ((np.arange(TILE) + 0.5) / TILE)[None, :, None]
    inside = np.abs(uf - 0.5)
    style = h(11)[:, None, None]
    ribbon = style > 0.82
    half = np.where(ribbon, 0.47, 0.17 + 0.15 * h(5)[:, None, None])
    sill = (0.22 + 0.12 * h(6))[:, None, None]
    head = (0.70 + 0.14 * h(7))[:, None, None]
    opening = (inside < half) & (vf >= sill) & (vf < head) & ~plain[:, None, None]
    mullion = (style > 0.62) & ~ribbon & (half > 0.22) & (inside < 0.5 / TILE)
    window = opening & ~mullion
    edge = 1.0 / TILE
    frame = (inside < half + edge) & (vf >= sill - edge) & (vf < head + edge) & ~plain[:, None, None]
    frame = (frame & ~opening & (h(8) < 0.6)[:, None, None]) | (opening & mullion)
    band = (vf < edge) & (h(9) < 0.4)[:, None, None]
    upper = np.where(window, GLASS, np.where(frame | band, TRIM, WALL))
    front = (inside < 0.42) & (vf >= 0.08) & (vf < 0.76)
    shop_floor = np.where(front, SHOP, np.where((vf >= 0.80) & (vf < 0.95), ACCENT, WALL))
    shop_floor = np.where(vf < 0.08, DARK, shop_floor)
    plain_floor = np.where((vf < 0.12) & (h(10) < 0.7)[:, None, None], DARK,
                           np.where(window & (vf >= 0.35), GLASS, np.where(frame, TRIM, WALL)))
    ground = np.where(shop[:, None, None], shop_floor, plain_floor)
    return np.stack([upper, ground], axis=1)


def _facade_albedo(h, colours: list[np.ndarray | None]) -> np.ndarray:
    """[n, SLOTS, 3]: facade colour (OSM building:colour when given), glass, trim, shop glass, sign, plinth."""
    n = len(colours)
    wall = FACADES[np.floor(h(20) * len(FACADES)).astype(int)] * (0.92 + 0.16 * np.stack([h(21), h(22), h(23)], 1))
    for i, osm in enumerate(colours):
        if osm is not None:
            wall[i] = osm * 0.85 + 0.05
    albedo = np.zeros((n, SLOTS, 3))
    albedo[:, WALL] = wall
    albedo[:, GLASS] = np.array([0.16, 0.20, 0.26]) * (0.8 + 0.5 * h(24))[:, None]
    albedo[:, LIT] = albedo[:, GLASS]
    lighter = (h(25) < 0.5)[:, None]
    albedo[:, TRIM] = np.where(lighter, 0.55 * wall + 0.42, 0.7 * wall)
    albedo[:, SHOP] = np.array([0.10, 0.12, 0.14]) + 0.08 * h(26)[:, None]
    albedo[:, ACCENT] = SIGNS[np.floor(h(27) * len(SIGNS)).astype(int)]
    albedo[:, DARK] = 0.45 * wall
    return albedo


def _canopies(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 3])
    noise = rng.uniform(size=(3, TILE, TILE))
    slots = np.where(noise < 0.3, TRIM, np.where(noise > 0.75, ACCENT, WALL)).astype(np.uint8)
    tiles = np.stack([slots, slots], axis=1)
    albedo = np.zeros((3, SLOTS, 3))
    base = np.array([[0.24, 0.38, 0.16], [0.30, 0.40, 0.14], [0.20, 0.33, 0.17]])
    albedo[:, WALL] = base
    albedo[:, TRIM] = base * 0.6
    albedo[:, ACCENT] = base * 1.35
    return tiles, albedo, np.full((3, 2), 1.6)


def _trunk() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    slots = np.where((np.arange(TILE) % 5 == 0)[None, :], TRIM, WALL) * np.ones((TILE, 1), np.int64)
    albedo = np.zeros((1, SLOTS, 3))
    albedo[0, WALL] = (0.34, 0.26, 0.19)
    albedo[0, TRIM] = (0.22, 0.17, 0.12)
    return np.stack([slots, slots])[None], albedo, np.array([[0.4, 1.0]])


def _vehicles_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Car sides (4.4 m) and ends (1.8 m) in every car colour; the pattern lives in the ground-floor tile."""
    uf = ((np.arange(TILE) + 0.5) / TILE)[None, :]
    vf = ((np.arange(TILE) + 0.5) / TILE)[:, None]  # of 1.6 m; the box is 1.5 m high
    wheel = ((np.abs(uf - 0.2) < 0.08) | (np.abs(uf - 0.8) < 0.08)) & (vf < 0.28)
    side = np.where(wheel, DARK, np.where((vf > 0.58) & (np.abs(uf - 0.5) < 0.36) & (np.abs(uf - 0.5) > 0.02),
                                          SHOP, np.where(vf < 0.18, TRIM, WALL)))
    end = np.where(vf < 0.2, TRIM, np.where((vf > 0.56) & (np.abs(uf - 0.5) < 0.4), SHOP,
                                            np.where((np.abs(vf - 0.45) < 0.06) & (np.abs(uf - 0.5) > 0.38), ACCENT, WALL)))
    n = len(CAR_COLOURS)
    tiles = np.concatenate([np.repeat(np.stack([side, side])[None], n, 0),
                            np.repeat(np.stack([end, end])[None], n, 0)])
    albedo = np.zeros((2 * n, SLOTS, 3))
    albedo[:, WALL] = np.concatenate([CAR_COLOURS, CAR_COLOURS])
    albedo[:, SHOP] = (0.10, 0.12, 0.15)  # car glass, never a lit window
    albedo[:, TRIM] = (0.12, 0.12, 0.12)
    albedo[:, DARK] = (0.04, 0.04, 0.04)
    albedo[:, ACCENT] = (0.75, 0.12, 0.10)
    periods = np.array([[4.4, 1.6]] * n + [[1.8, 1.6]] * n)
    return tiles, albedo, periods


# ---------------------------------------------------------------- per-image geometry

@dataclass(frozen=True, eq=False)
class _Optics:
    """Per-size constants: focal length, horizon, column directions, row offsets."""

    width: int
    height: int
    focal: float
    horizon: float
    ground_row: int  # first row below the horizon
    column_x: np.ndarray  # float32 [W] pixel centres
    column_slope: np.ndarray  # float64 [W] lateral / forward of each column's ray
    rise: np.ndarray  # float32 [H, 1] horizon - row centre
    row_y: np.ndarray  # float32 [H, 1] row centres
    column_index: np.ndarray  # int32 [1, W]
    column_rows: np.ndarray  # intp [W, 1], for indexing per-column candidate tables
    ground_dist: np.ndarray  # float64 [rows below horizon] forward distance of the ground seen in that row
    sky_elevation: np.ndarray  # int [rows above horizon] cloud texture row (CLOUD_ROWS over 0-90 degrees)


@lru_cache(maxsize=16)
def _optics(width: int, height: int, hfov_deg: float, cam_h: float) -> _Optics:
    focal = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    horizon = height / 2
    rows = np.arange(height) + 0.5
    ground_row = int(np.searchsorted(rows, horizon, side="right"))
    below = rows[ground_row:] - horizon
    dist = np.minimum(focal * cam_h / below, GROUND_MAX_M)
    above = horizon - rows[:ground_row]
    elevation = np.degrees(np.arctan(above / focal))
    columns = np.arange(width) + 0.5
    return _Optics(width, height, focal, horizon, ground_row, columns.astype(np.float32),
                   (columns - width / 2) / focal, (horizon - rows).astype(np.float32)[:, None],
                   rows.astype(np.float32)[:, None],
                   np.arange(width, dtype=np.int32)[None, :], np.arange(width)[:, None], dist,
                   np.minimum(elevation / 90.0 * CLOUD_ROWS, CLOUD_ROWS - 1).astype(np.intp))


@dataclass
class _Prims:
    """Primitives in camera space, clipped to the near plane and projected: one row per surface."""

    sx0: np.ndarray  # screen x of the left end
    sx1: np.ndarray
    iz0: np.ndarray  # 1 / forward depth at the ends
    iz1: np.ndarray
    u0: np.ndarray  # facade coordinate at the ends
    u1: np.ndarray
    z_mid: np.ndarray  # height range centre and half extent, metres
    z_half: np.ndarray
    rounded: np.ndarray  # the height range shrinks like an ellipse across the surface
    material: np.ndarray
    light: np.ndarray  # [n, 3] light reaching the surface


def _frame(camera: Camera) -> tuple[float, float]:
    h = math.radians(camera.heading_deg)
    return math.sin(h), math.cos(h)


def _light(normals: np.ndarray, cond: Conditions) -> np.ndarray:
    """Ambient plus direct sun on vertical surfaces with these outward normals ([n, 2]), tinted."""
    az, el = math.radians(cond.sun_azimuth_deg), math.radians(cond.sun_elevation_deg)
    sun = np.array([math.sin(az), math.cos(az)]) * math.cos(el) * (cond.sun if el > 0 else 0.0)
    lam = cond.ambient + np.maximum(normals[:, 0] * sun[0] + normals[:, 1] * sun[1], 0.0)
    return (lam[:, None] * np.asarray(cond.tint)[None, :]).astype(np.float32)


def _wall_prims(x: np.ndarray, u: np.ndarray, height: np.ndarray, material: np.ndarray, camera: Camera,
                optics: _Optics, cond: Conditions) -> _Prims | None:
    """Walls (world segments [n, 4], counter-clockwise footprints) facing the camera, clipped and projected."""
    s, c = _frame(camera)
    rx0, ry0 = x[:, 0] - camera.east, x[:, 1] - camera.north
    rx1, ry1 = x[:, 2] - camera.east, x[:, 3] - camera.north
    ex, ey = rx1 - rx0, ry1 - ry0
    z0, z1 = rx0 * s + ry0 * c, rx1 * s + ry1 * c
    front = rx0 * ey - ry0 * ex < 0  # the camera is on the outward (right-hand) side
    keep = front & (np.maximum(z0, z1) > NEAR_M) & (np.minimum(z0, z1) < VIEW_M)
    if not keep.any():
        return None
    idx = np.flatnonzero(keep)
    rx0, ry0, ex, ey, z0, z1 = rx0[idx], ry0[idx], ex[idx], ey[idx], z0[idx], z1[idx]
    length = u[idx, 1] - u[idx, 0]
    dz = np.where(z1 == z0, 1.0, z1 - z0)
    t0 = np.where(z0 < NEAR_M, (NEAR_M - z0) / dz, 0.0)
    t1 = np.where(z1 < NEAR_M, (z1 - NEAR_M) / dz, 0.0)
    l0 = (rx0 + t0 * ex) * c - (ry0 + t0 * ey) * s
    l1 = (rx0 + (1 - t1) * ex) * c - (ry0 + (1 - t1) * ey) * s
    z0, z1 = z0 + t0 * (z1 - z0), z1 - t1 * (z1 - z0)
    sx0 = optics.width / 2 + optics.focal * l0 / z0
    sx1 = optics.width / 2 + optics.focal * l1 / z1
    visible = (sx1 > 0) & (sx0 < optics.width) & (sx1 - sx0 > 1e-3)
    sel = np.flatnonzero(visible)
    norm = np.hypot(ex[sel], ey[sel])
    normals = np.column_stack([ey[sel], -ex[sel]]) / norm[:, None]
    u0 = u[idx, 0] + t0 * length
    u1 = u[idx, 1] - t1 * length
    h = height[idx][sel]
    return _Prims(sx0[sel], sx1[sel], 1 / z0[sel], 1 / z1[sel], u0[sel], u1[sel], h / 2, h / 2,
                  np.zeros(len(sel), bool), material[idx][sel], _light(normals, cond))


def _tree_prims(scene: Scene, cell: int, camera: Camera, optics: _Optics, cond: Conditions) -> _Prims | None:
    """Camera-facing billboards for the trees near the camera: a round canopy and a trunk each."""
    lo, hi = scene.tree_cells[0][cell], scene.tree_cells[0][cell + 1]
    if hi == lo:
        return None
    ids = scene.tree_cells[1][lo:hi]
    s, c = _frame(camera)
    rx, ry = scene.trees[ids, 0] - camera.east, scene.trees[ids, 1] - camera.north
    z, lat = rx * s + ry * c, rx * c - ry * s
    shape = scene.tree_shape[ids]
    radius = shape[:, 0].astype(np.float64)
    sx = optics.width / 2 + optics.focal * lat / np.maximum(z, 1e-6)
    reach = optics.focal * radius / np.maximum(z, 1e-6)
    keep = (z > 1.5) & (z < VIEW_M) & (sx + reach > 0) & (sx - reach < optics.width)
    if not keep.any():
        return None
    z, lat, radius, shape, ids = z[keep], lat[keep], radius[keep], shape[keep], ids[keep]
    bottom = shape[:, 1].astype(np.float64)
    n = len(z)
    trunk = 0.18 + 0.02 * radius
    half_h = 1.15 * radius
    lat2 = np.concatenate([lat, lat])
    half_w = np.concatenate([radius, trunk])
    zz = np.concatenate([z, z + 0.05])
    sx0 = optics.width / 2 + optics.focal * (lat2 - half_w) / zz
    sx1 = optics.width / 2 + optics.focal * (lat2 + half_w) / zz
    offset = np.concatenate([(ids % 7) * 0.37, np.zeros(n)])
    material = np.concatenate([scene.material_ids["canopy"] + shape[:, 2].astype(np.int64),
                               np.full(n, scene.material_ids["trunk"])])
    top_trunk = bottom + 0.6 * half_h
    sun = cond.sun * max(math.sin(math.radians(cond.sun_elevation_deg)), 0.0)
    amb = (np.asarray(cond.tint) * (cond.ambient + 0.35 * sun)).astype(np.float32)
    return _Prims(sx0, sx1, 1 / zz, 1 / zz, offset, offset + 2 * half_w,
                  np.concatenate([bottom + half_h, top_trunk / 2]), np.concatenate([half_h, top_trunk / 2]),
                  np.concatenate([np.ones(n, bool), np.zeros(n, bool)]), material,
                  np.repeat(amb[None], 2 * n, axis=0))


def _vehicle_walls(scene: Scene, camera: Camera, cond: Conditions) -> tuple[np.ndarray, ...] | None:
    """Boxes (cars, vans) on the road ahead of the camera, drawn from the conditions' seed."""
    if cond.vehicles <= 0:
        return None
    rng = np.random.default_rng([cond.seed, 17])
    s, c = _frame(camera)
    walls, us, heights, materials, centres = [], [], [], [], []
    for _ in range(cond.vehicles):
        ahead, side = rng.uniform(4.0, 30.0), rng.choice([-1.0, 1.0]) * rng.uniform(1.8, 4.5)
        yaw = math.radians(camera.heading_deg + rng.normal(0.0, 4.0) + 180.0 * (rng.uniform() < 0.3))
        van = rng.uniform() < 0.25
        half_len, half_wid, height = (2.8, 1.0, 2.2) if van else (2.2, 0.9, 1.5)
        colour = int(rng.integers(len(CAR_COLOURS)))
        cx, cy = camera.east + ahead * s + side * c, camera.north + ahead * c - side * s
        if _ground_class(scene, cx, cy) not in (ROAD, MARKING) or any(
                math.hypot(cx - x, cy - y) < 6.0 for x, y in centres):
            continue
        centres.append((cx, cy))
        d = np.array([math.sin(yaw), math.cos(yaw)])
        p = np.array([math.cos(yaw), -math.sin(yaw)])
        centre = np.array([cx, cy])
        corners = [centre + d * half_len + p * half_wid, centre + d * half_len - p * half_wid,
                   centre - d * half_len - p * half_wid, centre - d * half_len + p * half_wid]
        for k in range(4):
            a, b = corners[k], corners[(k + 1) % 4]
            walls.append(np.concatenate([a, b]))
            face = "car_end" if k % 2 == 0 else "car_side"
            us.append((0.0, float(scene.materials.u_period[scene.material_ids[face]])))  # one tile per face
            heights.append(height)
            materials.append(scene.material_ids[face] + colour)
    if not walls:
        return None
    return np.array(walls), np.array(us), np.array(heights), np.array(materials)


def _ground_class(scene: Scene, x: float, y: float) -> int:
    ix = int((x - scene.ground_origin[0]) / GROUND_RES_M)
    iy = int((y - scene.ground_origin[1]) / GROUND_RES_M)
    if not (0 <= iy < scene.ground.shape[0] and 0 <= ix < scene.ground.shape[1]):
        return OTHER
    return int(scene.ground[iy, ix]) // NOISE


def _cell(scene: Scene, camera: Camera) -> int:
    rows, cols = scene.grid_shape
    col = min(max(int((camera.east - scene.grid_origin[0]) // CELL_M), 0), cols - 1)
    row = min(max(int((camera.north - scene.grid_origin[1]) // CELL_M), 0), rows - 1)
    return row * cols + col


def _gather_prims(scene: Scene, camera: Camera, optics: _Optics, cond: Conditions) -> _Prims | None:
    cell = _cell(scene, camera)
    ids = scene.wall_cells[1][scene.wall_cells[0][cell]:scene.wall_cells[0][cell + 1]]
    walls = scene.walls[ids]
    u0 = scene.wall_u[ids]
    u = np.column_stack([u0, u0 + np.hypot(walls[:, 2] - walls[:, 0], walls[:, 3] - walls[:, 1])])
    owner = scene.wall_building[ids]
    heights, material = scene.heights[owner], owner.astype(np.int64)
    vehicles = _vehicle_walls(scene, camera, cond)
    if vehicles is not None:
        walls, u = np.concatenate([walls, vehicles[0]]), np.concatenate([u, vehicles[1]])
        heights, material = np.concatenate([heights, vehicles[2]]), np.concatenate([material, vehicles[3]])
    parts = [p for p in (_wall_prims(walls, u, heights, material, camera, optics, cond),
                         _tree_prims(scene, cell, camera, optics, cond)) if p is not None]
    if not parts:
        return None
    return _Prims(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Prims)))


# ---------------------------------------------------------------- per-column layers

@dataclass
class _Layers:
    """The K nearest primitives of every column (index K is an empty layer): rows covered and shading."""

    top: np.ndarray  # float32 [K, W] first covered row (centre coordinate)
    bottom: np.ndarray  # float32 [K, W]
    tile_base: np.ndarray  # int32 [K+1, W] material tile offset plus the column's texel
    v_base: np.ndarray  # float32 [K+1, W] tile rows at the horizon
    v_step: np.ndarray  # float32 [K+1, W] tile rows per image row
    bay: np.ndarray  # int32 [K+1, W] facade bay number (lit window pattern)
    palette: np.ndarray  # float32 [K+1, W, SLOTS, 3]


def _layers(prims: _Prims, scene: Scene, optics: _Optics, cond: Conditions, cam_h: float) -> _Layers:
    """Intersect every column's ray with the primitives; keep the nearest LAYERS that are not hidden."""
    pick, iz, t = _visible_hits(prims, optics, cam_h)
    hit = iz > 0
    iz_safe = np.where(hit, iz, 1.0)
    depth = 1.0 / iz_safe
    uz0, uz1 = prims.u0 * prims.iz0, prims.u1 * prims.iz1
    u = (uz0[pick] + t * (uz1 - uz0)[pick]) / iz_safe  # perspective-correct facade coordinate
    across = np.where(prims.rounded[pick], np.sqrt(np.clip(1 - (2 * t - 1) ** 2, 0, 1)), 1.0)
    reach = prims.z_half[pick] * across

    def row(z: np.ndarray) -> np.ndarray:
        return np.where(hit, optics.horizon - optics.focal * (z - cam_h) * iz, 0.0).astype(np.float32)

    mats = scene.materials
    material = prims.material[pick]
    u_per, v_per = mats.u_period[material], mats.v_period[material]
    bays = u / u_per
    texel = np.minimum(((bays - np.floor(bays)) * TILE).astype(np.int32), TILE - 1)
    palette = _palette(mats, material, prims.light[pick], depth, u_per, optics.focal, cond)
    return _Layers(row(prims.z_mid[pick] + reach), row(prims.z_mid[pick] - reach),
                   _pad(material.astype(np.int32) * (2 * TILE * TILE) + texel),
                   _pad((TILE * cam_h / v_per).astype(np.float32)),
                   _pad((TILE * depth / (optics.focal * v_per)).astype(np.float32)),
                   _pad(np.floor(bays).astype(np.int32)), _pad(palette))


def _pad(a: np.ndarray) -> np.ndarray:
    """a with one more (empty) layer: where pixels with no primitive point."""
    return np.concatenate([a, np.zeros((1, *a.shape[1:]), a.dtype)])


def _visible_hits(prims: _Prims, optics: _Optics, cam_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column, the nearest LAYERS primitives not hidden behind a nearer ground-standing one:
    (primitive, 1/depth (0: none), position across it), each [LAYERS, W], nearest first."""
    span = (prims.sx1 - prims.sx0).astype(np.float32)
    t = (optics.column_x[:, None] - prims.sx0.astype(np.float32)) / span  # [W, N]
    inv_depth = prims.iz0.astype(np.float32) + t * (prims.iz1 - prims.iz0).astype(np.float32)
    inv_depth[(t < 0) | (t >= 1)] = 0.0
    n = inv_depth.shape[1]
    m = min(n, CANDIDATES)
    rows = optics.column_rows
    if n > m:
        pick = np.argpartition(inv_depth, n - m, axis=1)[:, n - m:]
    else:
        pick = np.broadcast_to(np.arange(n), (optics.width, n))
    order = np.argsort(-inv_depth[rows, pick], axis=1, kind="stable")
    pick = pick[rows, order]
    iz = inv_depth[rows, pick]
    # hidden: a nearer primitive standing on the ground reaches at least as high (tops are image rows)
    top = optics.horizon - optics.focal * (prims.z_mid + prims.z_half - cam_h)[pick] * iz
    hit = iz > 0
    grounded = hit & ((prims.z_mid - prims.z_half <= 0) & ~prims.rounded)[pick]
    cover = np.minimum.accumulate(np.where(grounded, top, np.inf), axis=1)
    visible = hit.copy()
    visible[:, 1:] &= top[:, 1:] < cover[:, :-1]
    keep = np.argsort(~visible, axis=1, kind="stable")[:, :LAYERS]
    pick = pick[rows, keep]
    iz = np.where(visible[rows, keep], iz[rows, keep], 0.0).T
    t, pick = t[rows, pick].T, pick.T
    if m < LAYERS:
        pad = ((0, LAYERS - m), (0, 0))
        pick, iz, t = np.pad(pick, pad), np.pad(iz, pad), np.pad(t, pad)
    return pick, iz, t


def _palette(mats: Materials, material: np.ndarray, light: np.ndarray, depth: np.ndarray, u_per: np.ndarray,
             focal: float, cond: Conditions) -> np.ndarray:
    """Slot colours per (layer, column): albedo under the surface's light, fading to the facade's mean colour
    once a pixel spans several texels (so far windows do not alias), lit windows glowing, then haze."""
    albedo = mats.albedo[material]  # [K, W, S, 3]
    texels_per_px = depth / focal * TILE / u_per
    fade = np.clip((texels_per_px - 1.5) / 3.0, 0.0, 1.0)[..., None, None]
    albedo = albedo + fade * (mats.mean[material][:, :, None, :] - albedo)
    colour = albedo * light[:, :, None, :]
    colour[:, :, LIT] = np.array([1.0, 0.80, 0.48]) * (0.55 + 0.45 * (1 - fade[:, :, 0]))
    haze = (1.0 - np.exp(-cond.haze_per_m * depth))[..., None, None]
    return (colour + haze * (np.asarray(cond.haze_colour) - colour)).astype(np.float32)


# ---------------------------------------------------------------- sky and ground

@lru_cache(maxsize=64)
def _sky_palette(cond: Conditions, optics: _Optics) -> np.ndarray:
    """[rows above horizon, SKY_LEVELS, 3]: a zenith-to-horizon gradient under clouds of rising density."""
    rows = np.arange(optics.ground_row) + 0.5
    elevation = np.arctan((optics.horizon - rows) / optics.focal) / (math.pi / 2)
    mix = np.sqrt(np.clip(elevation, 0, 1))[:, None]
    sky = np.asarray(cond.sky_horizon) * (1 - mix) + np.asarray(cond.sky_zenith) * mix
    level = np.arange(SKY_LEVELS) / (SKY_LEVELS - 1)
    cover = np.clip((level - (1.0 - cond.cloud_cover)) / 0.35, 0.0, 1.0)
    cover = cover[None, :, None] * (0.35 + 0.65 * mix[:, :, None])
    out = sky[:, None, :] + cover * (np.asarray(cond.cloud_colour) - sky[:, None, :])
    return out.astype(np.float32)


@lru_cache(maxsize=64)
def _ground_palette(cond: Conditions, optics: _Optics) -> np.ndarray:
    """[rows below horizon, classes * NOISE, 3]: ground albedo under the sun, hazed by each row's distance."""
    brightness = 0.9 + 0.06 * np.arange(NOISE)
    albedo = (GROUND_ALBEDO[:, None, :] * brightness[None, :, None]).reshape(-1, 3)
    sun = cond.sun * max(math.sin(math.radians(cond.sun_elevation_deg)), 0.0)
    colour = albedo * (np.asarray(cond.tint) * (cond.ambient + sun))
    haze = (1.0 - np.exp(-cond.haze_per_m * optics.ground_dist))[:, None, None]
    return (colour[None] + haze * (np.asarray(cond.haze_colour) - colour[None])).astype(np.float32)


def _background(scene: Scene, camera: Camera, optics: _Optics) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the row-palette entry of the sky above the horizon and of the ground below it."""
    s, c = _frame(camera)
    azimuth = camera.heading_deg + np.degrees(np.arctan(optics.column_slope))
    az_bin = (np.round(azimuth * 2).astype(np.int64) % scene.clouds.shape[1])
    sky_rows = np.arange(optics.ground_row)[:, None] * SKY_LEVELS
    sky = sky_rows + scene.clouds[optics.sky_elevation[:, None], az_bin[None, :]]
    dx = (s + optics.column_slope * c) / GROUND_RES_M
    dy = (c - optics.column_slope * s) / GROUND_RES_M
    dist = optics.ground_dist[:, None]
    gx = ((camera.east - scene.ground_origin[0]) / GROUND_RES_M + dist * dx[None, :]).astype(np.int32)
    gy = ((camera.north - scene.ground_origin[1]) / GROUND_RES_M + dist * dy[None, :]).astype(np.int32)
    rows, cols = scene.ground.shape
    np.clip(gx, 0, cols - 1, out=gx)
    np.clip(gy, 0, rows - 1, out=gy)
    ground_rows = np.arange(len(optics.ground_dist), dtype=np.int32)[:, None] * (NOISE * len(GROUND_ALBEDO))
    ground = ground_rows + _gather(scene.ground, gy * cols + gx)
    return sky.astype(np.int32), ground


# ---------------------------------------------------------------- compositing

def render(scene: Scene, camera: Camera, conditions: Conditions | None = None) -> np.ndarray:
    """One view, uint8 [height, width, 3]; byte-identical for the same scene, camera and conditions."""
    cond = conditions or Conditions.day()
    optics = _optics(camera.width, camera.height, camera.hfov_deg, camera.height_m)
    sky, ground = _background(scene, camera, optics)
    sky_pal, ground_pal = _sky_palette(cond, optics), _ground_palette(cond, optics)
    index = np.empty((optics.height, optics.width), np.int32)
    index[:optics.ground_row] = sky
    index[optics.ground_row:] = ground + sky_pal.shape[0] * SKY_LEVELS
    parts = [sky_pal.reshape(-1, 3), ground_pal.reshape(-1, 3)]
    prims = _gather_prims(scene, camera, optics, cond)
    if prims is not None and len(prims.sx0):
        layers = _layers(prims, scene, optics, cond, camera.height_m)
        base = sum(len(p) for p in parts)
        _composite(index, layers, scene, optics, cond, base)
        parts.append(layers.palette.reshape(-1, 3))
    palette = np.concatenate(parts) * cond.exposure
    image = np.take(_to_uint8(palette), index, axis=0)
    return _sensor(image, cond)


def _composite(index: np.ndarray, layers: _Layers, scene: Scene, optics: _Optics, cond: Conditions,
               base: int) -> None:
    """Paint the layers far to near into the palette index image (in place)."""
    layer = np.full(index.shape, LAYERS, np.int32)
    for k in range(LAYERS - 1, -1, -1):
        np.copyto(layer, k, where=(optics.row_y >= layers.top[k]) & (optics.row_y < layers.bottom[k]))
    hit = layer < LAYERS
    kx = layer * optics.width + optics.column_index
    q = (_gather(layers.v_base, kx) + _gather(layers.v_step, kx) * optics.rise).astype(np.int32)
    texel = _gather(layers.tile_base, kx) + ((q & (TILE - 1)) << TILE_BITS) + (q < TILE) * (TILE * TILE)
    slot = _gather(scene.materials.tiles, texel).astype(np.int32)
    if cond.lit_windows > 0:
        window = ((q >> TILE_BITS) * 7919 + _gather(layers.bay, kx) * 104729 + cond.seed % 65536).astype(np.uint32)
        lit = (slot == GLASS) & ((window * np.uint32(2654435761)) >> 16 < int(cond.lit_windows * 0x10000))
        slot = np.where(lit, LIT, slot)
    np.copyto(index, base + kx * SLOTS + slot, where=hit)


def _gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """table.ravel()[index] for indices in range by construction ('wrap' skips numpy's bounds check)."""
    return np.take(table, index, mode="wrap")


def _to_uint8(colour: np.ndarray) -> np.ndarray:
    return np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=2)
def _noise_bank(size: int) -> np.ndarray:
    """Standard normal samples; an image's noise is a slice at a seeded offset (cheaper than drawing it)."""
    return np.random.default_rng(0).standard_normal(size, dtype=np.float32)


def _sensor(image: np.ndarray, cond: Conditions) -> np.ndarray:
    """Sensor noise and JPEG compression, seeded by the conditions."""
    if cond.noise_sigma > 0:
        bank = _noise_bank(max(1 << 20, 2 * image.size))
        start = int(np.random.default_rng([cond.seed, 29]).integers(bank.size - image.size))
        noise = bank[start:start + image.size].reshape(image.shape)
        image = np.clip(image + (noise * np.float32(cond.noise_sigma) + np.float32(0.5)), 0, 255).astype(np.uint8)
    if cond.jpeg_quality is not None:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=cond.jpeg_quality)
        buffer.seek(0)
        image = np.asarray(Image.open(buffer).convert("RGB"))
    return image


def render_many(scene: Scene, cameras: Sequence[Camera],
                conditions: Conditions | Sequence[Conditions] | None = None) -> np.ndarray:
    """Views of many cameras of one image size (one conditions for all, or one each), uint8 [n, h, w, 3]."""
    conds = _per_camera(cameras, conditions)
    if not cameras:
        return np.zeros((0, DEFAULT_HEIGHT, DEFAULT_WIDTH, 3), np.uint8)
    return np.stack([render(scene, cam, cond) for cam, cond in zip(cameras, conds)])


def _per_camera(cameras: Sequence[Camera], conditions: Conditions | Sequence[Conditions] | None) -> list[Conditions]:
    if conditions is None or isinstance(conditions, Conditions):
        return [conditions or Conditions.day()] * len(cameras)
    if len(conditions) != len(cameras):
        raise ValueError(f"{len(conditions)} conditions for {len(cameras)} cameras")
    return list(conditions)


def _render_share(scene: Scene, cameras: Sequence[Camera], conds: list[Conditions], out: np.ndarray, share: int,
                  shares: int) -> None:
    """Render every shares-th view starting at share into out."""
    for i in range(share, len(cameras), shares):
        out[i] = render(scene, cameras[i], conds[i])


def render_parallel(scene: Scene, cameras: Sequence[Camera],
                    conditions: Conditions | Sequence[Conditions] | None = None, workers: int = 2) -> np.ndarray:
    """render_many over `workers` processes (this one and forked children writing into shared memory);
    the same bytes as render_many. Cameras must share one image size."""
    conds = _per_camera(cameras, conditions)
    workers = min(workers, len(cameras), os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return render_many(scene, cameras, conds)
    shape = (len(cameras), cameras[0].height, cameras[0].width, 3)
    out = np.frombuffer(mmap.mmap(-1, math.prod(shape)), np.uint8).reshape(shape)  # anonymous, shared on fork
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_render_share, args=(scene, cameras, conds, out, w, workers))
                for w in range(1, workers)]
    for child in children:
        child.start()
    _render_share(scene, cameras, conds, out, 0, workers)
    for child in children:
        child.join()
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError("a render worker process failed")
    return out.copy()
