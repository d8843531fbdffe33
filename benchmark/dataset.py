"""The dataset contract: three location-disjoint splits of labelled images, and the problems found reading them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from benchmark.address import AddressBook
from benchmark.hashing import json_sha256

SPLITS = ("train", "database", "queries")
COLUMNS = ("image", "address", "utm_east", "utm_north", "caption", "verbose_address", "location", "heading")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, with the file it is in."""

    file: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"


@dataclass
class Dataset:
    """A loaded dataset: one table per split with the COLUMNS above (image paths relative to images_root)."""

    name: str
    version: str
    root: Path
    images_root: Path
    splits: dict[str, pd.DataFrame]
    data_hash: str
    dropped_queries: list[str] = field(default_factory=list)
    query_labels_hidden: bool = False

    @cached_property
    def address_book(self) -> AddressBook:
        """The candidate set: sub-street addresses seen in train ∪ database."""
        return AddressBook(pd.concat([self.splits["train"].address, self.splits["database"].address]))

    @property
    def street_map(self) -> Path | None:
        """The sub-street geometry (GeoJSON) shipped with the dataset, if any."""
        path = self.root / "streets.geojson"
        return path if path.is_file() else None

    def for_methods(self) -> Dataset:
        """The view a method prepares on: train and database as they are, queries reduced to their images.

        A method reading a query's address, coordinates, caption or heading gets an error, not the answer.
        """
        splits = {**self.splits, "queries": self.splits["queries"][["image"]].copy()}
        view = Dataset(self.name, self.version, self.root, self.images_root, splits, self.data_hash,
                       list(self.dropped_queries), query_labels_hidden=True)
        view.__dict__["address_book"] = self.address_book  # same candidates, not recomputed
        return view

    def covering(self, fraction: float) -> Dataset:
        """This dataset with a seeded share `fraction` of its train and of its database locations, queries and
        candidate set unchanged; the shares are nested (a smaller one keeps a subset of a larger one's), and
        the data hash names the share, so nothing trained on the whole is reused."""
        splits = dict(self.splits)
        for i, split in enumerate(("train", "database")):
            table = splits[split]
            keys = location_keys(table)
            unique = np.unique(keys)
            order = np.random.default_rng([COVERAGE_SEED, i]).permutation(len(unique))
            kept = unique[order[:max(1, round(fraction * len(unique)))]]
            splits[split] = table[np.isin(keys, kept)].reset_index(drop=True)
        view = Dataset(self.name, self.version, self.root, self.images_root, splits,
                       json_sha256({"data_hash": self.data_hash, "coverage": fraction}), list(self.dropped_queries),
                       self.query_labels_hidden)
        view.__dict__["address_book"] = self.address_book  # every address stays a candidate
        return view

    def utm(self, split: str) -> np.ndarray:
        """[N, 2] float64 UTM (east, north) of a split."""
        if split == "queries" and self.query_labels_hidden:
            raise PermissionError(f"{self.name}: the queries' coordinates are hidden from methods; "
                                  "only the runner scores against them")
        t = self.splits[split]
        return t[["utm_east", "utm_north"]].to_numpy(np.float64)

    def paths(self, split: str) -> list[Path]:
        """Absolute image paths of a split."""
        return [self.images_root / p for p in self.splits[split].image]

    def counts(self) -> dict[str, int]:
        """Counts a user checks a dataset by: images, locations, sub-streets, streets, neighbourhoods."""
        everything = pd.concat(self.splits.values(), ignore_index=True)
        book = AddressBook(everything.address)
        out = {f"images_{s}": len(self.splits[s]) for s in SPLITS}
        out["images"] = len(everything)
        out["locations"] = count_locations(everything)
        out["sub_streets"] = len(book)
        out["sub_streets_candidates"] = len(self.address_book)
        out["streets"] = len(book.streets)
        out["neighbourhoods"] = len(book.neighbourhoods)
        return out


COVERAGE_SEED = 0  # one fixed draw of locations per split, whatever the run's seed


def location_keys(table: pd.DataFrame) -> np.ndarray:
    """Each row's capture location: its location id where every row has one, else its coordinates (1 cm)."""
    if "location" in table and table.location.notna().all():
        return table.location.astype(str).to_numpy()
    xy = table[["utm_east", "utm_north"]].to_numpy(np.float64).round(2)
    return np.array([f"{e:.2f},{n:.2f}" for e, n in xy])


def count_locations(table: pd.DataFrame) -> int:
    """Distinct capture locations: the location ids where known, else distinct coordinates (1 cm)."""
    return len(np.unique(location_keys(table)))
