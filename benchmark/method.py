"""The method contract: prepare on a dataset, predict k distinct sub-streets per query, state a footprint."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.hashing import json_sha256
from benchmark.measure import StageClock
from benchmark.options import apply_overrides

Family = Literal["ial", "retrieval", "classification", "reference"]


@dataclass(frozen=True)
class Prediction:
    """One query's answer: distinct sub-streets best first, their scores, and optional coordinates."""

    topk: list[str]
    scores: list[float]
    utm: tuple[float, float] | None = None
    retrieved: list[int] | None = None  # database indices, best first (retrieval methods)


@dataclass
class QueryBatch:
    """A batch of queries: preprocessed images (None for methods that need none) and their paths.

    `true_utm` is filled only for methods that declare `sees_true_coordinates` (oracle-gps); None otherwise.
    """

    images: torch.Tensor | None
    paths: list[str]
    true_utm: np.ndarray | None = None


@dataclass(frozen=True)
class Footprint:
    """Bytes needed at inference: model weights, database/index, map/gazetteer; and `search`, the resident
    structure each query is matched against (the paper's Table 5 "Memory"): the candidate address embeddings
    (IAL), the index (retrieval), the class rows of the head plus geocell centroids and location means
    (classification), the gazetteer (oracle). `search` overlaps the others; it is not part of `total`."""

    model: int = 0
    database: int = 0
    map: int = 0
    search: int = 0

    @property
    def total(self) -> int:
        """All bytes together."""
        return self.model + self.database + self.map


@dataclass(frozen=True)
class TrainingSummary:
    """What a method's training did (read back from the cache when it was trained earlier)."""

    steps: int
    images_seen: int
    wall_seconds: float
    cached: bool
    loss_log: str | None = None
    backbone: str | None = None
    input_size: list[int] | None = None


@dataclass
class RunContext:
    """What a method gets from the runner: device, seed, preset, its cache folder and UI settings.

    `cache_dir` is None for methods that do not train; for those that do, the runner names it by the
    cache key (see `cache_key`), so a method never computes its own.
    """

    device: torch.device
    seed: int
    preset: str
    cache_dir: Path | None = None
    progress: bool = True
    batch_size: int = 32


@dataclass(frozen=True)
class NoOptions:
    """For methods without options."""


class Method(ABC):
    """Base of every method. Subclasses set `name`, `family`, an `Options` dataclass and its `PRESETS`.

    `trains`: the method learns state that the runner caches (under a key it computes); options named in
    `PIPELINE_OPTIONS` change only indexing, search or geocoding and are left out of that key.
    `sees_true_coordinates`: the runner passes the queries' true UTM in every QueryBatch (oracle only).
    """

    name: ClassVar[str]
    family: ClassVar[Family]
    Options: ClassVar[type] = NoOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    PIPELINE_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    needs_images: ClassVar[bool] = True
    trains: ClassVar[bool] = False
    sees_true_coordinates: ClassVar[bool] = False

    def __init__(self, options: Any, ctx: RunContext):
        self.options = options
        self.ctx = ctx
        self.training: TrainingSummary | None = None

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one decoded RGB image into the tensor this method's encoder takes (runs in the loader)."""
        raise NotImplementedError(f"{self.name} reads no images")

    @abstractmethod
    def prepare(self, dataset: Dataset) -> None:
        """Train, fine-tune, load weights and/or index the database; may use ctx.cache_dir."""

    @abstractmethod
    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Predict k distinct sub-streets per query, timing its stages on `clock` (encode/search/geocode)."""

    @abstractmethod
    def footprint(self) -> Footprint:
        """Bytes needed at inference."""

    def provenance(self) -> dict[str, Any]:
        """Where the weights came from: {'source': 'none' | 'from-scratch' | 'file', 'path', 'sha256'}."""
        return {"source": "none"}

    @classmethod
    def input_files(cls, options: Any) -> dict[str, Path]:
        """Local files named by the options whose content changes what is learnt (hashed into the cache key):
        here `weights`; methods with more (a pretrained trunk) extend it. A missing file is one clear error."""
        weights = getattr(options, "weights", "")
        if not weights:
            return {}
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BenchmarkError(f"weights file {path} does not exist; pass --weights PATH to a local checkpoint "
                                 "(nothing is downloaded)")
        return {"weights": path}


def make_options(cls: type[Method], preset: str, overrides: dict[str, str]) -> Any:
    """Build a method's options: dataclass defaults, then the preset, then `key=value` overrides."""
    return apply_overrides(cls.Options(**cls.PRESETS.get(preset, {})), overrides, cls.name)


def config_hash(method: str, options: Any) -> str:
    """sha256 of the method name and its full options (a run's identity, in its result)."""
    return json_sha256({"method": method, "options": dataclasses.asdict(options)})


def training_options(cls: type[Method], options: Any) -> dict[str, Any]:
    """The options that can change what a method learns: all but its pipeline-only ones and `weights`."""
    return {k: v for k, v in dataclasses.asdict(options).items()
            if k not in cls.PIPELINE_OPTIONS and k != "weights"}


def cache_key(cls: type[Method], options: Any, seed: int, data_hash: str,
              file_hashes: dict[str, str] | None = None) -> str:
    """The one key of a trained state: method, training options, seed, data hash and the hashes of the input
    files (`Method.input_files`; `weights_sha256` is always there, others only when given)."""
    hashes = dict(file_hashes or {})
    extra = {f"{name}_sha256": sha for name, sha in sorted(hashes.items()) if name != "weights"}
    return json_sha256({"method": cls.name, "options": training_options(cls, options), "seed": seed,
                        "data_hash": data_hash, "weights_sha256": hashes.get("weights"), **extra})
