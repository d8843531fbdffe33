"""What every trainable method shares: seeded loaders over a split, a cached-checkpoint store, a loss bar."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from benchmark.errors import BenchmarkError
from benchmark.images import ImageFiles


class IndexedImages(ImageFiles):
    """Images of a split through a transform, yielded with their row index into the split's table."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return super().__getitem__(i), i


def seeded_loader(dataset: TorchDataset, batch_size: int, seed: int, shuffle: bool = True,
                  drop_last: bool = True, workers: int = 0, sampler: Any = None) -> DataLoader:
    """A DataLoader whose order depends only on the seed (and whose workers are seeded from it)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, drop_last=drop_last,
                      num_workers=workers, generator=generator, sampler=sampler,
                      worker_init_fn=_seed_worker if workers else None, persistent_workers=False)


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def file_sha256(path: Path) -> str:
    """sha256 of a file (weights provenance in results)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CheckpointStore:
    """A trained state cached in one folder (keyed by the method's full config + the data hash)."""

    def __init__(self, folder: Path, name: str = "model.pt"):
        self.path = Path(folder) / name

    def exists(self) -> bool:
        """True if a finished checkpoint is there."""
        return self.path.is_file()

    def save(self, state: dict[str, Any]) -> Path:
        """Write atomically (temporary file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        return self.path

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Read the cached state."""
        return torch.load(self.path, map_location=map_location, weights_only=True)


def load_weights_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load a user-supplied weights file, with one clear error if it is missing or unreadable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"weights file {path} does not exist; pass --weights PATH to a local checkpoint "
                             "(nothing is downloaded)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise BenchmarkError(f"weights file {path} cannot be read by torch.load ({type(e).__name__}: {e})") from None


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly; on mismatch raise one error listing missing and unexpected keys (and shape clashes)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append("shape mismatch: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                     for k in shapes]))
        raise BenchmarkError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def loss_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """A progress bar for training steps; call .set_postfix(loss=...) as it goes."""
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=False)


def cycle(loader: DataLoader) -> Iterator[Any]:
    """Endless iteration over a loader (re-shuffling each pass with its own generator)."""
    while True:
        yield from loader
