"""Reader of the released IAL on-disk format, and the protocols over real datasets (Pitts-IAL, SF-IAL).

Layout under the dataset root::

    annotations/<prefix>_train.json, <prefix>_database.json, <prefix>_queries.json
        {"<image path relative to the images root>": ["<caption>", "<verbose address>", "<address>"]}
    images/...            (or the image folders directly under the root)

Coordinates come, in this order of precedence, from a sidecar ``annotations/coords.csv``
(``image,utm_east,utm_north``, optionally ``location``: the capture location's id), from '@UTM@' file names, or from Pitts250k ground truth
(a .mat holding the 2×L location UTMs and an image list; location = image index // 24).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark.address import AddressParseError, normalize, parse_address
from benchmark.dataset import SPLITS, Dataset, Problem
from benchmark.hashing import update_with_file
from benchmark.protocol import Protocol
from protocols.vpr_names import has_utm_name, parse_vpr_name

SIDECAR = "annotations/coords.csv"
VIEWS_PER_PITTS_LOCATION = 24


@dataclass(frozen=True)
class PittsGroundTruth:
    """Where Pitts250k keeps location coordinates: a .mat with a 2×L UTM array and the image list."""

    mat: str = "groundtruth/pittsburgh_database_10586_utm.mat"
    variable: str = "Cdb"
    image_list: str = "groundtruth/imagelist.txt"


@dataclass
class _Coordinates:
    utm: dict[str, tuple[float, float]] = field(default_factory=dict)
    location: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def read_annotation(path: Path, problems: list[Problem]) -> dict[str, list[str]] | None:
    """Read one annotation JSON; every defect becomes a Problem naming the file."""
    if not path.is_file():
        problems.append(Problem(str(path), "annotation file is missing; it must sit in <root>/annotations/"))
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        problems.append(Problem(str(path), f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}; "
                                           "fix the file or download it again"))
        return None
    except UnicodeDecodeError as e:
        problems.append(Problem(str(path), f"not UTF-8 text ({e.reason}); download the file again"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(str(path), "top level must be an object {image: [caption, verbose address, address]}"))
        return None
    good: dict[str, list[str]] = {}
    for key, value in data.items():
        if not (isinstance(value, list) and len(value) >= 3 and all(isinstance(v, str) for v in value[:3])):
            problems.append(Problem(str(path), f"entry {key!r}: value must be [caption, verbose address, address]"))
            continue
        good[key] = value
    return good


def _read_sidecar(root: Path, problems: list[Problem], coords: _Coordinates) -> None:
    path = root / SIDECAR
    if not path.is_file():
        return
    coords.files.append(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"image", "utm_east", "utm_north"} - set(reader.fieldnames or ())
        if missing:
            problems.append(Problem(str(path), f"missing column(s) {sorted(missing)}; the header must be "
                                               "image,utm_east,utm_north"))
            return
        for line, row in enumerate(reader, start=2):
            try:
                east, north = float(row["utm_east"]), float(row["utm_north"])
                if not (np.isfinite(east) and np.isfinite(north)):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(Problem(f"{path}:{line}", f"non-numeric UTM for {row['image']!r}: "
                                                          f"{row['utm_east']!r}, {row['utm_north']!r}"))
                continue
            coords.utm[row["image"]] = (east, north)
            if row.get("location"):
                coords.location[row["image"]] = row["location"]


def _read_pitts(root: Path, gt: PittsGroundTruth, problems: list[Problem], coords: _Coordinates) -> None:
    from scipy.io import loadmat  # only Pitts needs it

    mat_path, list_path = root / gt.mat, root / gt.image_list
    if not mat_path.is_file() or not list_path.is_file():
        return
    coords.files += [mat_path, list_path]
    try:
        utms = np.asarray(loadmat(mat_path)[gt.variable], np.float64)
    except (KeyError, ValueError, OSError) as e:
        problems.append(Problem(str(mat_path), f"cannot read variable {gt.variable!r} as a 2×L UTM array ({e})"))
        return
    if utms.ndim != 2 or 2 not in utms.shape:
        problems.append(Problem(str(mat_path), f"{gt.variable} has shape {utms.shape}; expected 2×L"))
        return
    utms = utms if utms.shape[0] == 2 else utms.T
    names = [line.strip() for line in list_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, name in enumerate(names):
        loc = i // VIEWS_PER_PITTS_LOCATION
        if loc >= utms.shape[1]:
            problems.append(Problem(str(list_path), f"line {i + 1} ({name}) maps to location {loc}, but "
                                                    f"{mat_path.name} has only {utms.shape[1]} locations"))
            break
        coords.utm.setdefault(name, (float(utms[0, loc]), float(utms[1, loc])))
        coords.location.setdefault(name, str(loc))


def _coordinate_of(key: str, coords: _Coordinates) -> tuple[tuple[float, float] | None, str | None, float | None, str | None]:
    """(utm, location id, heading, error) of one image, by order of precedence."""
    name = None
    if has_utm_name(key):
        try:
            name = parse_vpr_name(key)
        except ValueError as e:
            if key not in coords.utm:
                return None, None, None, f"bad coordinates in the file name: {e}"
    heading = name.heading if name else None
    if key in coords.utm:
        return coords.utm[key], coords.location.get(key), heading, None
    if name is not None:
        return (name.utm_east, name.utm_north), name.pano_id or None, heading, None
    return None, None, None, (f"no coordinates: the name has no '@UTM_east@UTM_north@' fields and no row in "
                              f"{SIDECAR} or the Pitts250k ground truth names it")


def _images_root(root: Path, candidates: Iterable[str], first_key: str | None) -> Path:
    dirs = [root / c for c in candidates if (root / c).is_dir()]
    for d in dirs:
        if first_key is not None and (d / first_key).exists():
            return d
    return dirs[0] if dirs else root


def read_ial(
    root: Path,
    *,
    name: str,
    version: str,
    prefix: str,
    images_dirs: tuple[str, ...] = ("images", "."),
    pitts: PittsGroundTruth | None = None,
    hash_images: bool = False,
    progress: bool = False,
) -> tuple[Dataset | None, list[Problem]]:
    """Read a dataset in the IAL format and report every problem with its file."""
    problems: list[Problem] = []
    annotations = {s: read_annotation(root / "annotations" / f"{prefix}_{s}.json", problems) for s in SPLITS}
    coords = _Coordinates()
    _read_sidecar(root, problems, coords)
    if pitts is not None:
        _read_pitts(root, pitts, problems, coords)
    first_key = next((k for a in annotations.values() if a for k in a), None)
    images_root = _images_root(root, images_dirs, first_key)

    seen: dict[str, str] = {}
    tables: dict[str, pd.DataFrame] = {}
    digest = hashlib.sha256()
    total = sum(len(a) for a in annotations.values() if a)
    bar = tqdm(total=total, desc=f"reading {name}", unit="img", disable=not progress, leave=False)
    for split in SPLITS:
        ann_path = root / "annotations" / f"{prefix}_{split}.json"
        entries = annotations[split] or {}
        if annotations[split] is not None:
            update_with_file(digest, ann_path)
        rows = []
        for key, value in entries.items():
            bar.update()
            image = images_root / key
            where = str(image)
            if key in seen:
                problems.append(Problem(where, f"listed in both {seen[key]} and {split}; splits must be disjoint"))
                continue
            seen[key] = split
            if not image.is_file():
                problems.append(Problem(where, f"image is missing (listed in {ann_path.name}); "
                                               f"images are read relative to {images_root}"))
                continue
            utm, location, heading, error = _coordinate_of(key, coords)
            if error:
                problems.append(Problem(where, error))
                continue
            try:
                parse_address(value[2])
            except AddressParseError as e:
                problems.append(Problem(str(ann_path), f"entry {key!r}: {e}"))
                continue
            address = normalize(value[2])
            digest.update(f"{split}\0{key}\0{image.stat().st_size}\n".encode())
            if hash_images:
                update_with_file(digest, image)
            rows.append((key, address, utm[0], utm[1], value[0], value[1], location, heading))
        tables[split] = pd.DataFrame(rows, columns=["image", "address", "utm_east", "utm_north", "caption",
                                                    "verbose_address", "location", "heading"])
    bar.close()
    for path in coords.files:
        update_with_file(digest, path)
    if any(a is None for a in annotations.values()):
        return None, problems

    candidates = set(tables["train"].address) | set(tables["database"].address)
    queries = tables["queries"]
    outside = queries[~queries.address.isin(candidates)]
    for address, group in outside.groupby("address", sort=True):
        problems.append(Problem(str(images_root / group.image.iloc[0]),
                                f"query address {address!r} ({len(group)} queries) is not in the candidate set "
                                "(train ∪ database); these queries are dropped from runs", "warning"))
    tables["queries"] = queries[queries.address.isin(candidates)].reset_index(drop=True)
    dataset = Dataset(name=name, version=version, root=root, images_root=images_root, splits=tables,
                      data_hash=digest.hexdigest(), dropped_queries=list(outside.image))
    return dataset, problems


class IALProtocol(Protocol):
    """A protocol over a released IAL dataset that the user points at with --data-root."""

    def __init__(self, name: str, version: str, summary: str, prefix: str, dirname: str,
                 pitts: PittsGroundTruth | None = None):
        self.name, self.version, self.summary = name, version, summary
        self.prefix, self.dirname, self.pitts = prefix, dirname, pitts

    @property
    def env_var(self) -> str:
        """Environment variable that names this dataset's folder."""
        return f"IALBENCH_{self.name.upper()}_ROOT"

    def resolve_root(self, data_root: Path | None, preset: str) -> Path:
        """--data-root, else $IALBENCH_<NAME>_ROOT, else $IALBENCH_DATA/<dirname>, else ./datasets/<dirname>."""
        if data_root is not None:
            return Path(data_root).expanduser()
        if os.environ.get(self.env_var):
            return Path(os.environ[self.env_var]).expanduser()
        return Path(os.environ.get("IALBENCH_DATA", "datasets")).expanduser() / self.dirname

    def read(self, root: Path, progress: bool = False) -> tuple[Dataset | None, list[Problem]]:
        """Read the released annotations and images under root."""
        return read_ial(root, name=self.name, version=self.version, prefix=self.prefix, pitts=self.pitts,
                        progress=progress)

    def missing_root_message(self, root: Path) -> str:
        """One line naming the missing folder and the two ways to point at the dataset."""
        return (f"{self.name}: dataset folder {root} does not exist; pass --data-root DIR (or set "
                f"{self.env_var}) to the folder holding annotations/{self.prefix}_*.json and the images")


PITTS_IAL = IALProtocol(
    "pitts_ial", "1", "Pitts-IAL (AddressCLIP): Pittsburgh-250k images with sub-street addresses",
    prefix="pitts", dirname="Pitts-IAL", pitts=PittsGroundTruth(),
)
SF_IAL_BASE = IALProtocol(
    "sf_ial_base", "1", "SF-IAL-Base (AddressCLIP): 6 km² of San Francisco SF-XL images",
    prefix="sf_base", dirname="SF-IAL-Base",
)
SF_IAL_LARGE = IALProtocol(
    "sf_ial_large", "1", "SF-IAL-Large (AddressCLIP): 170 km² of San Francisco SF-XL images",
    prefix="sf_large", dirname="SF-IAL-Large",
)

__all__ = ["IALProtocol", "PittsGroundTruth", "read_ial", "read_annotation", "PITTS_IAL", "SF_IAL_BASE",
           "SF_IAL_LARGE"]
