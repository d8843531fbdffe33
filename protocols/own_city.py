"""Bring your own city: an IAL dataset built offline from a folder of geotagged photos and an OpenStreetMap
extract (`python -m benchmark data build --from-images DIR --map AREA.osm.pbf --out ROOT`), and the `ial`
protocol that runs any such folder.

1. Positions: the CSV's row, else the `@UTM@` file name, else EXIF GPS (`protocols.geotags`); photos without
   one or outside the majority's UTM zone are left out. Positions are brought to the map's UTM zone.
2. The map's named streets are partitioned into sub-streets by the embedded cities' own code
   (`protocols.city.partition`); neighbourhoods from administrative areas where they are complete, else from
   place nodes.
3. The labelling rule: a photo takes the address of the sub-street nearest to its position (distance to the
   sub-street's polylines, as the `streetmap` geocoder ranks them; an exact tie goes to the alphabetically first
   address). A photo farther than `max_street_m` from every sub-street is left out, never guessed.
4. Capture locations: photos within `location_radius_m` of a location's first photo (in east, north order)
   are that location (groups never chain beyond twice the radius). Split: the user's `train/`, `database/`,
   `queries/` folders kept as they are, else a seeded location-disjoint 7:2:1 split of the locations.
   Queries whose sub-street has no train or database photo are left out (the IAL papers' rule).
5. Captions: the CSV's `caption` column, else a template caption from the map around the photo (`map`: the
   buildings and trees within sight, never a street or neighbourhood name), or none (`empty`).

Output, in the released IAL format: `annotations/<prefix>_{train,database,queries}.json`, `annotations/coords.csv`
(UTM in the map's zone and the location id), `images/` (links to the photos, or copies), `streets.geojson`,
`build.json` (options, map checksum, counts), `left_out.csv` (every photo left out and why) and `card/`.
It is written to a temporary folder beside ROOT and moved into place only when complete.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from benchmark.dataset import SPLITS, Dataset, Problem
from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from benchmark.options import apply_overrides
from benchmark.protocol import Protocol
from benchmark.streetnames import NamedWays
from protocols.city.captions import COMPASS, NUMBERS, SEE_M, TREES_M, in_view
from protocols.city.card import write_card
from protocols.city.osm import CityMap, load_city
from protocols.city.partition import (
    NEIGHBOURHOOD_SOURCES,
    Partition,
    PartitionOptions,
    partition_city,
    write_geojson,
)
from protocols.city.protocol import verbose_address
from protocols.generated import split_locations, write_annotations
from protocols.geotags import Geotag, Geotags, epsg_of, left_out_lines, read_geotags
from protocols.ial_format import SIDECAR, read_ial

BUILD_FILE = "build.json"
LEFT_OUT_FILE = "left_out.csv"
STREET_MAP = "streets.geojson"
BUILDER_VERSION = "1"
PHOTO_HFOV_DEG = 90.0  # the field of view a map caption assumes where the photo's heading is known


@dataclass(frozen=True)
class BuildOptions:
    """How photos become an IAL dataset (`--options key=value,...`)."""

    max_street_m: float = 25.0  # photos farther than this from every sub-street are left out
    location_radius_m: float = 5.0  # photos this close to a location's first photo are that location
    split: str = "auto"  # auto (folders when the photos lie in train/ database/ queries/, else random) | folders | random
    captions: str = "map"  # map (template captions from the map) | empty (the CSV's captions still win)
    images: str = "link"  # link (symbolic links to the photos) | copy
    neighbourhoods: str = "auto"  # auto (administrative areas where complete, else place nodes) | admin | places
    junction_merge_m: float = 25.0  # the partition's options, as the embedded cities use them
    min_locations: int = 5
    spacing_m: float = 10.0
    # Stretches within this of the edge of the map's streets have no sub-street, as in the embedded cities: there
    # an extract's cut-off streets lack the cross streets beyond the cut, so their addresses would be wrong.
    margin_m: float = 25.0
    prefix: str = "own"  # annotations/<prefix>_<split>.json
    seed: int = 0  # the random split

    def __post_init__(self) -> None:
        choices = {"split": ("auto", "folders", "random"), "captions": ("map", "empty"), "images": ("link", "copy"),
                   "neighbourhoods": NEIGHBOURHOOD_SOURCES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise BenchmarkError(f"{key}={getattr(self, key)!r}: use one of {', '.join(allowed)}")
        for key in ("max_street_m", "location_radius_m", "junction_merge_m", "spacing_m"):
            if not getattr(self, key) > 0:
                raise BenchmarkError(f"{key}={getattr(self, key)}: give a positive number of metres")
        if self.margin_m < 0:
            raise BenchmarkError(f"margin_m={self.margin_m}: give metres >= 0")
        if self.min_locations < 1:
            raise BenchmarkError(f"min_locations={self.min_locations}: give a positive count")
        if not self.prefix.replace("_", "").replace("-", "").isalnum():
            raise BenchmarkError(f"prefix={self.prefix!r}: use letters, digits, '_' or '-'")

    def partition(self) -> PartitionOptions:
        """The partition options these build options imply."""
        return PartitionOptions(junction_merge_m=self.junction_merge_m, min_locations=self.min_locations,
                                spacing_m=self.spacing_m, margin_m=self.margin_m, neighbourhoods=self.neighbourhoods)


def parse_options(text: str | None) -> BuildOptions:
    """`key=value,key=value` to BuildOptions; unknown keys and bad values are one clear error."""
    overrides: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise BenchmarkError(f"--options {text!r}: give key=value pairs, e.g. max_street_m=30,split=random")
        overrides[key.strip()] = value.strip()
    return apply_overrides(BuildOptions(), overrides, "data build --from-images")


# --- labelling ---------------------------------------------------------------------------------------------

class SubStreetIndex:
    """The labelling rule: each position's nearest sub-street (ties to the alphabetically first address)."""

    def __init__(self, partition: Partition):
        # partition_city numbers sub-streets in address order, so the smallest index of a tie is the first address
        self.sub_streets = partition.sub_streets
        self._tree = shapely.STRtree([s.geometry for s in self.sub_streets])

    def nearest(self, xy: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        """[N] sub-street index (-1 beyond max_distance) and [N] distance in metres (inf beyond it)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        index, distance = np.full(len(xy), -1, np.int64), np.full(len(xy), np.inf)
        if not len(xy):
            return index, distance
        (point, street), dist = self._tree.query_nearest(shapely.points(xy), max_distance=max_distance,
                                                          return_distance=True, all_matches=True)
        order = np.lexsort((street, point))  # per point, the smallest sub-street index first
        point, street, dist = point[order], street[order], dist[order]
        first = np.r_[True, point[1:] != point[:-1]] if len(point) else np.zeros(0, bool)
        index[point[first]], distance[point[first]] = street[first], dist[first]
        return index, distance


def group_locations(xy: np.ndarray, radius: float) -> np.ndarray:
    """[N] location id: in (east, north) order, each photo not yet grouped starts a location that takes every
    ungrouped photo within `radius` of it (leader clustering: no chaining, ids in that order)."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    group = np.full(len(xy), -1, np.int64)
    if not len(xy):
        return group
    tree = cKDTree(xy)
    n = 0
    for i in np.lexsort((xy[:, 1], xy[:, 0])):
        if group[i] >= 0:
            continue
        near = np.asarray(tree.query_ball_point(xy[i], radius), np.int64)
        near = near[group[near] < 0]
        group[near] = n
        n += 1
    return group


# --- captions ----------------------------------------------------------------------------------------------

class MapCaptioner:
    """Template captions from what the map says is around a photo: buildings (storeys, shops) and trees within
    sight, looking which way where the heading is known. Never a street or neighbourhood name."""

    def __init__(self, city: CityMap):
        self.centre = np.array([b.footprint.mean(axis=0) for b in city.buildings]).reshape(-1, 2)
        storeys = [b.levels if b.levels else (b.height / 3.0 if b.height else np.nan) for b in city.buildings]
        self.storeys = np.array(storeys, np.float64)
        self.shop = np.array([b.shop for b in city.buildings], bool)
        self._buildings = cKDTree(self.centre) if len(self.centre) else None
        self._trees = cKDTree(city.trees) if len(city.trees) else None
        self.trees = city.trees

    @staticmethod
    def _ahead(origin: np.ndarray, points: np.ndarray, heading: float | None) -> np.ndarray:
        if heading is None or not len(points):
            return np.ones(len(points), bool)
        return in_view(origin, heading, PHOTO_HFOV_DEG, points)

    def caption(self, east: float, north: float, heading: float | None = None) -> str:
        """One sentence about the place at (east, north), facing `heading` where known."""
        origin = np.array([east, north])
        text = "A street view" + (f" looking {COMPASS[int(((heading % 360) + 22.5) // 45) % 8]}" if heading is not None
                                  else "")
        seen = np.zeros(0, np.int64)
        if self._buildings is not None:
            near = np.array(sorted(self._buildings.query_ball_point(origin, SEE_M)), np.int64)
            seen = near[self._ahead(origin, self.centre[near], heading)] if len(near) else near
        if len(seen):
            storeys = self.storeys[seen]
            known = storeys[np.isfinite(storeys)]
            size = (f"{NUMBERS[int(np.clip(round(float(np.median(known))), 1, len(NUMBERS))) - 1]}-storey "
                    if len(known) else "")
            text += f": {size}buildings" if len(seen) > 1 else f": a {size}building"
            if self.shop[seen].any():
                text += " with shop fronts at street level"
        else:
            text += " across an open space"
        if self._trees is not None:
            idx = np.array(sorted(self._trees.query_ball_point(origin, TREES_M)), np.int64)
            trees = int(self._ahead(origin, self.trees[idx], heading).sum()) if len(idx) else 0
            if trees:
                text += ", " + ("a tree" if trees == 1 else "trees") + " along the street"
        return text + "."


# --- the build ---------------------------------------------------------------------------------------------

@dataclass
class BuildSummary:
    """What a build kept and left out, and how long it took."""

    root: Path
    images: dict[str, int]
    sub_streets: int
    neighbourhoods: str
    left_out: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    data_hash: str = ""

    def lines(self) -> list[str]:
        """The report printed after a build: kept per split, then every reason photos were left out."""
        kept = ", ".join(f"{self.images[s]} {s}" for s in SPLITS)
        out = [f"built {self.root}: {kept} images on {self.sub_streets} sub-streets (neighbourhoods from "
               f"{self.neighbourhoods}) in {self.seconds:.1f} s"]
        return out + left_out_lines(self.left_out)


def _to_map_zone(tags: dict[str, Geotag], epsg: int) -> np.ndarray:
    """[N, 2] positions in the map's UTM zone (exact reprojection where the photos' zone is another)."""
    xy = np.array([[t.east, t.north] for t in tags.values()], np.float64).reshape(-1, 2)
    zones = {epsg_of(t) for t in tags.values()}
    if zones and zones != {epsg}:
        (zone,) = zones  # read_geotags keeps the majority's zone only
        east, north = Transformer.from_crs(zone, epsg, always_xy=True).transform(xy[:, 0], xy[:, 1])
        xy = np.column_stack([east, north])
    return xy


def _splits(keys: list[str], groups: np.ndarray, options: BuildOptions) -> tuple[np.ndarray, str]:
    """The split of every photo — its top folder (train / database / queries), or a seeded split of the
    locations — and which of the two ('folders' or 'random')."""
    top = [k.split("/", 1)[0] if "/" in k else "" for k in keys]
    in_folders = [t in SPLITS for t in top]
    mode = options.split
    if mode == "auto":
        mode = "folders" if keys and all(in_folders) else "random"
        if any(in_folders) and not all(in_folders):
            stray = [k for k, f in zip(keys, in_folders) if not f]
            raise BenchmarkError(f"{len(stray)} photos lie outside the split folders train/, database/, queries/ "
                                 f"while others lie in them (e.g. {stray[0]}); put every photo in one of them, or "
                                 "pass --options split=random")
    if mode == "folders":
        stray = [k for k, f in zip(keys, in_folders) if not f]
        if stray:
            raise BenchmarkError(f"split=folders: {len(stray)} photos are not under train/, database/ or queries/ "
                                 f"(e.g. {stray[0]}); move them, or use split=random")
        return np.array(top, object), mode
    n = int(groups.max()) + 1 if len(groups) else 0
    return split_locations(n, np.random.default_rng(options.seed))[groups], mode


def label_photos(tags: dict[str, Geotag], city: CityMap, options: BuildOptions,
                 partition: Partition | None = None) -> tuple[dict[str, str], np.ndarray, list[str]]:
    """(photo -> address for every photo within max_street_m of a sub-street, [N, 2] positions in the map's zone,
    the photos farther than that) — the labelling rule alone, as the relabelling test checks it."""
    partition = partition or partition_city(city, options.partition())
    xy = _to_map_zone(tags, city.epsg)
    index = SubStreetIndex(partition)
    found, _ = index.nearest(xy, options.max_street_m)
    keys = list(tags)
    labels = {k: index.sub_streets[i].address for k, i in zip(keys, found) if i >= 0}
    return labels, xy, [k for k, i in zip(keys, found) if i < 0]


def _place_images(folder: Path, tmp: Path, pairs: list[tuple[str, str]], mode: str, progress: bool) -> None:
    """Link (or copy) each photo to images/<key>."""
    for source, key in tqdm(pairs, desc="placing images", unit="img", disable=not progress, leave=False):
        target = tmp / "images" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "copy":
            shutil.copy2(folder / source, target)
        else:
            target.symlink_to((folder / source).resolve())


@dataclass
class PhotoPlan:
    """The photos kept: key, place under images/, split, position (map zone), location id and address."""

    keys: list[str]
    target: dict[str, str]
    split: np.ndarray
    xy: np.ndarray
    groups: np.ndarray
    labels: dict[str, str]
    mode: str  # folders | random
    left_out: dict[str, list[str]]


def _read_map(map_path: Path, options: BuildOptions) -> CityMap:
    """The user's extract (buildings and trees too where map captions need them); one clear error if unreadable."""
    try:
        return load_city(map_path.name.split(".")[0], path=map_path, streets_only=options.captions != "map")
    except BenchmarkError:
        raise
    except Exception as e:  # pyrosm's own errors on a file that is not an extract
        raise BenchmarkError(f"--map {map_path}: not a readable OpenStreetMap extract ({type(e).__name__}: {e}); "
                             "give an .osm.pbf file") from None


def plan_photos(found: Geotags, city: CityMap, partition: Partition, options: BuildOptions) -> PhotoPlan:
    """Label, group and split the located photos; leave out those off the streets and the orphan queries."""
    left_out = dict(found.left_out)
    labels, xy, far = label_photos(found.tags, city, options, partition)
    left_out[f"photos farther than {options.max_street_m:g} m from every sub-street (off the map's named streets, "
             f"or within margin_m={options.margin_m:g} m of its edge)"] = far
    kept = np.array([k in labels for k in found.tags], bool)
    keys, xy = [k for k in labels], xy[kept]
    if not keys:
        raise BenchmarkError(f"no photo lies within {options.max_street_m:g} m of the map's streets; is --map the "
                             "photos' area? (" + "; ".join(f"{len(v)} {r}" for r, v in left_out.items() if v) + ")")
    groups = group_locations(xy, options.location_radius_m)
    split, mode = _splits(keys, groups, options)
    candidates = {labels[k] for k, s in zip(keys, split) if s != "queries"}
    orphan = [k for k, s in zip(keys, split) if s == "queries" and labels[k] not in candidates]
    left_out["queries whose sub-street has no train or database photo"] = orphan
    keep = ~np.isin(np.array(keys, object), np.array(orphan, object))
    keys, xy, groups, split = [k for k, x in zip(keys, keep) if x], xy[keep], groups[keep], split[keep]
    empty = [s for s in SPLITS if not (split == s).any()]
    if empty:
        raise BenchmarkError(f"split {empty[0]} would have no photos ({len(keys)} kept); give more photos or "
                             "their split folders")
    target = {k: (f"{s}/{k}" if mode == "random" else k) for k, s in zip(keys, split)}
    return PhotoPlan(keys, target, split, xy, groups, labels, mode, left_out)


def _tables(plan: PhotoPlan, found: Geotags, city: CityMap, options: BuildOptions) -> dict[str, dict[str, list[str]]]:
    """The annotation tables: {image: [caption, verbose address, address]} per split."""
    captioner = MapCaptioner(city) if options.captions == "map" else None
    tables: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for k, s, (east, north) in zip(plan.keys, plan.split, plan.xy):
        tag = found.tags[k]
        caption = tag.caption if tag.caption is not None else (
            captioner.caption(east, north, tag.heading) if captioner else "")
        tables[s][plan.target[k]] = [caption, verbose_address(plan.labels[k]), plan.labels[k]]
    return tables


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def build_from_images(folder: Path, map_path: Path, out: Path, csv_path: Path | None = None,
                      options: BuildOptions | None = None, progress: bool = True) -> BuildSummary:
    """Build the dataset at `out` (see the module docstring); every bad input is one BenchmarkError, and nothing
    is left at `out` unless the whole dataset was written and reads back without errors."""
    start = time.perf_counter()
    options = options or BuildOptions()
    folder, map_path, out = Path(folder).expanduser(), Path(map_path).expanduser(), Path(out).expanduser()
    if out.exists():
        raise BenchmarkError(f"--out {out} already exists; give a new folder (a build never overwrites)")
    if not map_path.is_file():
        raise BenchmarkError(f"--map {map_path}: no such file; give a local OpenStreetMap extract (.osm.pbf) of the "
                             "photos' area")
    if csv_path is not None and not Path(csv_path).is_file():
        raise BenchmarkError(f"--csv {csv_path}: no such file; give a CSV with image,lat,lon or "
                             "image,utm_east,utm_north,zone")
    found = read_geotags(folder, csv_path)
    if not found.tags:
        raise BenchmarkError(f"{folder}: no photo has a position; " + "; ".join(found.report()))
    city = _read_map(map_path, options)
    partition = partition_city(city, options.partition())
    if not partition.sub_streets:
        raise BenchmarkError(f"--map {map_path}: its named streets make no sub-street of {options.min_locations}+ "
                             "locations; give an extract of the photos' streets")
    plan = plan_photos(found, city, partition, options)
    tables = _tables(plan, found, city, options)
    record = {
        "builder": "ialbench data build --from-images", "version": BUILDER_VERSION,
        "options": dataclasses.asdict(options),
        "photos": str(folder.resolve()), "csv": str(Path(csv_path).resolve()) if csv_path else None,
        "map": {"path": str(map_path.resolve()), "sha256": file_sha256(map_path), "epsg": city.epsg,
                "neighbourhoods": partition.neighbourhood_source, "admin_level": partition.admin_level},
        "split": plan.mode, "images": {s: len(tables[s]) for s in SPLITS},
        "locations": int(len(np.unique(plan.groups))), "sub_streets": len(partition.sub_streets),
        "left_out": {reason: len(files) for reason, files in plan.left_out.items()},
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _place_images(folder, tmp, [(k, plan.target[k]) for k in plan.keys], options.images, progress)
        write_annotations(tmp, options.prefix, tables)
        rows = sorted([plan.target[k], f"{e:.3f}", f"{n:.3f}", f"L{g:06d}"]
                      for k, (e, n), g in zip(plan.keys, plan.xy, plan.groups))
        _write_csv(tmp / SIDECAR, ["image", "utm_east", "utm_north", "location"], rows)
        _write_csv(tmp / LEFT_OUT_FILE, ["image", "reason"],
                   [[file, reason] for reason, files in plan.left_out.items() for file in files])
        write_geojson(partition, city, tmp / STREET_MAP)
        (tmp / BUILD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        dataset, problems = OWN_CITY.read(tmp)
        errors = [p for p in problems if p.severity == "error"]
        if dataset is None or errors:
            raise BenchmarkError(f"the dataset written does not read back: {errors[0] if errors else 'unreadable'}")
        _write_card(dataset, tmp, record, out.name, tmp / "card")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    hoods = "places" if partition.admin_level is None else f"admin level {partition.admin_level}"
    return BuildSummary(out, record["images"], len(partition.sub_streets), hoods, plan.left_out,
                        time.perf_counter() - start, dataset.data_hash)


def _write_card(dataset: Dataset, root: Path, record: dict[str, Any], title: str, out_dir: Path) -> Path:
    """The dataset card, citing OpenStreetMap (ODbL) and listing what was left out."""
    map_name = Path(record["map"]["path"]).name
    source = (f"Built by ialbench (`data build --from-images`) from the photos in `{record['photos']}` and the "
              f"OpenStreetMap extract `{map_name}` (sha256 `{record['map']['sha256'][:16]}…`). Street names, "
              "geometry and neighbourhoods: © OpenStreetMap contributors, available under the Open Database "
              "License (ODbL 1.0, https://www.openstreetmap.org/copyright); a dataset that publishes these "
              "addresses must credit OpenStreetMap and share the address data under the ODbL.")
    hoods = record["map"]["neighbourhoods"]
    notes = ["## How it was built", "",
             f"- split: {record['split']}; locations: photos within {record['options']['location_radius_m']:g} m "
             "of a location's first photo",
             "- label: the sub-street nearest to the photo's position (ties to the alphabetically first address); "
             f"photos farther than {record['options']['max_street_m']:g} m from every sub-street left out",
             f"- neighbourhoods: {'administrative areas, admin_level ' + str(record['map']['admin_level']) if hoods == 'admin' else 'Voronoi cells of the place nodes'}",
             f"- options: `{json.dumps(record['options'], sort_keys=True)}`", "",
             "## Left out", "", *(f"- {n} {reason}" for reason, n in record["left_out"].items()),
             "", f"Every file left out is listed in `{LEFT_OUT_FILE}`.", ""]
    return write_card(dataset, root / STREET_MAP, out_dir, f"{title} (own photos)", source, notes)


# --- the protocol ------------------------------------------------------------------------------------------

class OwnCityProtocol(Protocol):
    """`ial`: a dataset built by `data build --from-images` (or any folder in the IAL format) at --data-root."""

    name = "ial"
    version = "1"
    summary = "a dataset you built with `data build --from-images` (or any IAL-format folder); needs --data-root"

    def with_options(self, overrides: dict[str, str]) -> OwnCityProtocol:
        """A copy for one run; its one option, `name=LABEL`, is how results and reports label the dataset (by
        default the data root's folder name, so that two datasets of one's own are never one table)."""
        unknown = sorted(set(overrides) - {"name"})
        if unknown:
            raise BenchmarkError(f"protocol ial takes one option, name=LABEL (the dataset's label in reports), "
                                 f"not {', '.join(unknown)}")
        clone = copy.copy(self)
        clone.overrides = dict(overrides)
        return clone

    def open(self, data_root: Path | None, preset: str, progress: bool = True) -> Dataset:
        """The dataset at --data-root; unless `name=` was given, it is labelled by its folder's name."""
        dataset = super().open(data_root, preset, progress)
        self.overrides = {"name": dataset.root.resolve().name, **self.overrides}
        return dataset

    def resolve_root(self, data_root: Path | None, preset: str) -> Path:
        """--data-root (there is no default place for one's own dataset)."""
        if data_root is None:
            raise BenchmarkError("protocol ial needs --data-root ROOT: the folder `data build --from-images` wrote")
        return Path(data_root).expanduser()

    def _record(self, root: Path) -> dict[str, Any]:
        path = root / BUILD_FILE
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{path}: malformed JSON at line {e.lineno} ({e.msg}); rebuild the dataset") from None

    def prefix(self, root: Path) -> str:
        """The annotations' prefix: build.json's, else the one prefix with a *_train.json file."""
        record = self._record(root)
        if record:
            return str(record["options"]["prefix"])
        found = sorted(p.name[: -len("_train.json")] for p in (root / "annotations").glob("*_train.json"))
        if len(found) != 1:
            raise BenchmarkError(f"{root}/annotations: expected one <prefix>_train.json, found {found or 'none'}; "
                                 "point --data-root at a dataset in the IAL format")
        return found[0]

    def read(self, root: Path, progress: bool = False) -> tuple[Dataset | None, list[Problem]]:
        """Read it with the released-format reader (coordinates from annotations/coords.csv)."""
        return read_ial(root, name=self.name, version=self.version, prefix=self.prefix(root),
                        images_dirs=("images", "."), progress=progress)

    def named_ways(self, root: Path) -> NamedWays | None:
        """The named ways of the extract the dataset was built from (build.json's map), when it is still there."""
        from protocols.city.streetnames import read_named_ways

        record = self._record(root)
        path = record.get("map", {}).get("path")
        if not path or not Path(path).is_file():
            return None
        return read_named_ways(path, record["options"].get("neighbourhoods", "auto"))

    def write_card(self, root: Path, out_dir: Path) -> Path:
        """Re-render the dataset card of a built dataset into out_dir."""
        record = self._record(root)
        if not record:
            raise BenchmarkError(f"{root}: no {BUILD_FILE}; only datasets built by `data build --from-images` "
                                 "have a card")
        dataset, problems = self.read(root)
        if dataset is None:
            raise BenchmarkError(f"cannot write a card for a broken dataset: {problems[0]}")
        return _write_card(dataset, root, record, root.name, out_dir)


OWN_CITY = OwnCityProtocol()
