"""The protocol contract: where a dataset lives, how it is read, checked and (for generated ones) built."""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.dataset import Dataset, Problem
from benchmark.errors import BenchmarkError
from benchmark.options import parse_spec

if TYPE_CHECKING:
    from benchmark.streetnames import NamedWays

PRESETS = ("smoke", "default", "paper")


def cache_root() -> Path:
    """Where generated datasets and trained models are cached ($IALBENCH_CACHE, else ~/.cache/ialbench)."""
    return Path(os.environ.get("IALBENCH_CACHE", Path.home() / ".cache" / "ialbench")).expanduser()


class Protocol(ABC):
    """A named evaluation protocol over one dataset in the IAL on-disk format."""

    name: str
    version: str
    summary: str
    generated: bool = False
    overrides: dict[str, str] = {}  # `name:key=value` options (generated protocols only)
    coverage: float = 1.0  # share of the train and database locations kept (`name:coverage=F`, any protocol)

    @abstractmethod
    def resolve_root(self, data_root: Path | None, preset: str) -> Path:
        """The dataset folder to use, from --data-root, the environment, or the cache."""

    @abstractmethod
    def read(self, root: Path, progress: bool = False) -> tuple[Dataset | None, list[Problem]]:
        """Read and validate the dataset; return it (None if unreadable) and every problem found."""

    def with_options(self, overrides: dict[str, str]) -> Protocol:
        """This protocol with `key=value` overrides (only generated protocols take any)."""
        if overrides:
            raise BenchmarkError(f"protocol {self.name!r} reads a released dataset and takes no options")
        return self

    def covering(self, value: str) -> Protocol:
        """A copy that keeps a share of the train and database locations (`coverage=F`, 0 < F <= 1)."""
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not 0 < share <= 1:
            raise BenchmarkError(f"{self.name}:coverage={value}: give the share of training and database locations "
                                 "to keep, a number in (0, 1], e.g. coverage=0.125")
        clone = copy.copy(self)
        clone.coverage = share
        return clone

    def given(self) -> dict[str, str]:
        """Every option given on the command line (results record these; the report labels by them)."""
        return {**self.overrides, **({"coverage": f"{self.coverage:g}"} if self.coverage != 1 else {})}

    def query_groups(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Named subsets of the queries (boolean masks) that results also score alone, e.g. each city of a joint
        protocol; none by default."""
        return {}

    def record(self, preset: str) -> dict[str, Any]:
        """What results store about the protocol besides name, version and data hash."""
        return {}

    def named_ways(self, root: Path) -> NamedWays | None:
        """The named ways, junctions and neighbourhood places of the map the dataset at root was made from (what a
        public reverse-geocoding service knows, for `geocoder=streetnames`); None when there is no such map."""
        return None

    def build(self, root: Path, preset: str, progress: bool = True) -> None:
        """Write the dataset under root (generated protocols only)."""
        raise BenchmarkError(f"protocol {self.name!r} reads an existing dataset and cannot be built")

    def check(self, data_root: Path | None, preset: str, progress: bool = False) -> tuple[Path, Dataset | None, list[Problem]]:
        """Validate the dataset without building it."""
        root = self.resolve_root(data_root, preset)
        if not root.exists():
            raise BenchmarkError(self.missing_root_message(root))
        dataset, problems = self.read(root, progress)
        return root, dataset, problems

    def open(self, data_root: Path | None, preset: str, progress: bool = True) -> Dataset:
        """The dataset for a run: built first if generated and absent; errors are fatal, queries whose
        address is not in the candidate set are dropped (as the IAL papers did) and recorded."""
        root = self.resolve_root(data_root, preset)
        if not root.exists():
            if not self.generated:
                raise BenchmarkError(self.missing_root_message(root))
            self.build(root, preset, progress)
        dataset, problems = self.read(root, progress)
        errors = [p for p in problems if p.severity == "error"]
        if errors or dataset is None:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            first = errors[0] if errors else "unreadable dataset"
            raise BenchmarkError(
                f"{first}{more}; run `python -m benchmark data check --protocol {self.name} --data-root {root}` "
                "to list every problem"
            )
        return dataset if self.coverage == 1 else dataset.covering(self.coverage)

    def missing_root_message(self, root: Path) -> str:
        """One line naming the missing folder and how to point at the dataset."""
        return f"dataset folder {root} does not exist; pass --data-root DIR pointing at the {self.name} dataset"


def resolve_protocol(text: str) -> Protocol:
    """'name' or 'name:key=value,...' to a protocol (with its options applied)."""
    from benchmark.registry import PROTOCOLS

    name, overrides = parse_spec(text)
    coverage = overrides.pop("coverage", None)
    protocol = PROTOCOLS.get(name).with_options(overrides)
    return protocol if coverage is None else protocol.covering(coverage)
