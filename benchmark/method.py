"""The method contract: prepare on a dataset, predict k distinct sub-streets per query, state a footprint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from benchmark.dataset import Dataset
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
    """A batch of queries: preprocessed images (None for methods that need none) and their metadata.

    `true_utm` is there for reference methods (oracle-gps) only; no other method may read it.
    """

    images: torch.Tensor | None
    paths: list[str]
    true_utm: np.ndarray


@dataclass(frozen=True)
class Footprint:
    """Bytes needed at inference: model weights, database/index, map/gazetteer."""

    model: int = 0
    database: int = 0
    map: int = 0

    @property
    def total(self) -> int:
        """All bytes together."""
        return self.model + self.database + self.map


@dataclass
class RunContext:
    """What a method gets from the runner: device, seed, preset, a cache folder and UI settings."""

    device: torch.device
    seed: int
    preset: str
    cache_dir: Path
    progress: bool = True
    batch_size: int = 32


@dataclass(frozen=True)
class NoOptions:
    """For methods without options."""


class Method(ABC):
    """Base of every method. Subclasses set `name`, `family`, an `Options` dataclass and its `PRESETS`."""

    name: ClassVar[str]
    family: ClassVar[Family]
    Options: ClassVar[type] = NoOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    needs_images: ClassVar[bool] = True

    def __init__(self, options: Any, ctx: RunContext):
        self.options = options
        self.ctx = ctx

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

    def weights(self) -> dict[str, Any]:
        """Where the weights came from: {'source': 'none' | 'from-scratch' | 'file', 'path', 'sha256'}."""
        return {"source": "none"}


def make_options(cls: type[Method], preset: str, overrides: dict[str, str]) -> Any:
    """Build a method's options: dataclass defaults, then the preset, then `key=value` overrides."""
    return apply_overrides(cls.Options(**cls.PRESETS.get(preset, {})), overrides, cls.name)


def config_hash(method: str, options: Any) -> str:
    """sha256 of the method name and its full options (what a cached model is keyed by)."""
    blob = json.dumps({"method": method, "options": dataclasses.asdict(options)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
