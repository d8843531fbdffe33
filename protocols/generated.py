"""Protocols whose dataset is generated on this machine, written in the released IAL format and cached.

Also the pieces every generator shares: the location-disjoint 7:2:1 split, the candidate addresses a
query must hit to be kept, and the annotation-JSON writer.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.dataset import SPLITS, Dataset, Problem
from benchmark.options import apply_overrides
from benchmark.protocol import Protocol, cache_root
from protocols.ial_format import read_ial

SPLIT_SHARES = (0.7, 0.2)  # train, database; queries get the rest


def split_locations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Split name per location ('train' / 'database' / 'queries'), 7:2:1 by one permutation drawn from rng.

    The generator is passed in (not a seed) so that a caller can keep drawing from the same stream.
    """
    order = rng.permutation(n)
    n_train, n_db = round(SPLIT_SHARES[0] * n), round(SPLIT_SHARES[1] * n)
    split = np.empty(n, object)
    split[order[:n_train]] = "train"
    split[order[n_train:n_train + n_db]] = "database"
    split[order[n_train + n_db:]] = "queries"
    return split


def candidate_addresses(addresses: Iterable[str], splits: Iterable[str]) -> set[str]:
    """The addresses of the train and database locations: a query whose address is not among them is dropped."""
    return {address for address, split in zip(addresses, splits) if split != "queries"}


def write_annotations(folder: Path, prefix: str, tables: Mapping[str, Mapping[str, list[str]]]) -> None:
    """Write annotations/<prefix>_<split>.json for every split: {image key: [caption, verbose, address]}."""
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with open(folder / "annotations" / f"{prefix}_{split}.json", "w", encoding="utf-8") as f:
            json.dump(tables.get(split, {}), f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")


class GeneratedProtocol(Protocol):
    """Builds its dataset deterministically from options (per preset) into the cache on first use."""

    generated = True
    prefix: str
    overrides: dict[str, str] = {}

    @abstractmethod
    def preset_options(self, preset: str) -> Any:
        """The generator options (a dataclass) of a preset."""

    def options(self, preset: str) -> Any:
        """The preset's options with this protocol's `key=value` overrides applied."""
        return apply_overrides(self.preset_options(preset), self.overrides, self.name)

    def with_options(self, overrides: dict[str, str]) -> GeneratedProtocol:
        """A copy generating with overridden options (its data goes to its own cache folder)."""
        clone = copy.copy(self)
        clone.overrides = {**self.overrides, **overrides}
        clone.options("default")  # unknown keys and bad values fail here, before any work
        return clone

    def record(self, preset: str) -> dict[str, Any]:
        """The generator options, stored in results."""
        return {"options": dataclasses.asdict(self.options(preset))}

    @abstractmethod
    def generate(self, folder: Path, options: Any, progress: bool) -> None:
        """Write annotations/ and images/ under folder."""

    def options_hash(self, preset: str) -> str:
        """sha256 of the protocol version and generator options."""
        blob = json.dumps({"version": self.version, **dataclasses.asdict(self.options(preset))}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def resolve_root(self, data_root: Path | None, preset: str) -> Path:
        """--data-root, else <cache>/data/<name>-v<version>-<options hash>."""
        if data_root is not None:
            return Path(data_root).expanduser()
        return cache_root() / "data" / f"{self.name}-v{self.version}-{self.options_hash(preset)[:12]}"

    def missing_root_message(self, root: Path) -> str:
        """Generated data is built, not downloaded: say how."""
        return (f"{self.name}: no dataset at {root} yet; build it with `python -m benchmark data build "
                f"--protocol {self.name}` (with the same --preset / --data-root), or just `run`")

    def build(self, root: Path, preset: str, progress: bool = True) -> None:
        """Generate into a temporary folder beside root, then move it into place."""
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self.generate(tmp, self.options(preset), progress)
            (tmp / "generator.json").write_text(json.dumps(
                {"protocol": self.name, "version": self.version, "preset": preset,
                 "options": dataclasses.asdict(self.options(preset))}, indent=2, sort_keys=True) + "\n")
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read(self, root: Path, progress: bool = False) -> tuple[Dataset | None, list[Problem]]:
        """Read it back with the released-format reader (image bytes are part of the data hash)."""
        return read_ial(root, name=self.name, version=self.version, prefix=self.prefix, images_dirs=("images",),
                        hash_images=True, progress=progress)
