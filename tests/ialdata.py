"""Write small datasets in the released IAL on-disk format (and broken variants) for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

A1 = "Main Street, Downtown (First Avenue, Downtown)"
A2 = "Main Street, Downtown (Second Avenue, Downtown)"
A3 = "Hill Road, Uptown (Main Street, Downtown and Lake Road, Uptown)"


def utm_name(east: float, north: float, heading: int = 0, pano: str = "") -> str:
    """An SF-XL style '@UTM@' file name."""
    return f"@{east:.2f}@{north:.2f}@17@T@40.44000@-80.00000@{pano}@@{heading:03d}@@@@@@.jpg"


def write_image(path: Path, value: int = 128) -> None:
    """A small solid JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def write_dataset(root: Path, splits: dict[str, list[tuple[str, str]]], prefix: str = "pitts",
                  images: bool = True) -> Path:
    """Write annotations/<prefix>_<split>.json ({key: [caption, verbose, address]}) and the images."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, entries in splits.items():
        table = {key: [f"a caption of {key}", f"located near {address}", address] for key, address in entries}
        (root / "annotations" / f"{prefix}_{split}.json").write_text(json.dumps(table), encoding="utf-8")
        if images:
            for i, (key, _) in enumerate(entries):
                write_image(root / "images" / key, (40 + 7 * i) % 256)
    return root


def good_splits() -> dict[str, list[tuple[str, str]]]:
    """Three location-disjoint splits with @UTM@ names over three sub-streets and two streets."""
    return {
        "train": [(f"train/{utm_name(100.0 + i, 0.0, h)}", A1 if i < 2 else A2) for i in range(4) for h in (0, 90)]
        + [(f"train/{utm_name(500.0, 50.0 + i)}", A3) for i in range(2)],
        "database": [(f"database/{utm_name(110.0 + i, 0.0)}", A2) for i in range(2)]
        + [(f"database/{utm_name(505.0, 60.0)}", A3)],
        "queries": [(f"queries/{utm_name(101.5, 0.5)}", A1), (f"queries/{utm_name(503.0, 55.0)}", A3)],
    }
