"""A trained state cached in the runner's cache folder: weights, a training summary and the per-step loss log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.distributed import barrier
from benchmark.method import TrainingSummary
from methods.training.checkpoints import atomic_write
from methods.training.loop import TrainLog

WEIGHTS, SUMMARY, LOSS_LOG = "model.pt", "training.json", "loss_log.jsonl"


class CheckpointStore:
    """One cache folder (the runner's cache key names it): model.pt, training.json and loss_log.jsonl."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / WEIGHTS

    def exists(self) -> bool:
        """True if a finished checkpoint is there (the summary is written last)."""
        return self.path.is_file() and (self.folder / SUMMARY).is_file()

    def save(self, state: dict[str, Any], log: TrainLog, about: dict[str, Any]) -> TrainingSummary:
        """Write weights, loss log and summary atomically; `about` adds backbone and input size."""
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))

        def write_log(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in log.rows:
                    f.write(json.dumps(row) + "\n")

        atomic_write(self.folder / LOSS_LOG, write_log)
        summary = {"steps": log.steps, "images_seen": log.images_seen, "wall_seconds": log.wall_seconds, **about}
        atomic_write(self.folder / SUMMARY,
                     lambda tmp: tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n"))
        return self.summary(cached=False)

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Read the cached state."""
        return torch.load(self.path, map_location=map_location, weights_only=True)

    def summary(self, cached: bool = True) -> TrainingSummary:
        """What the cached training did (read back from training.json)."""
        data = json.loads((self.folder / SUMMARY).read_text())
        size = data.get("input_size")
        return TrainingSummary(steps=int(data["steps"]), images_seen=int(data["images_seen"]),
                               wall_seconds=float(data["wall_seconds"]), cached=cached,
                               loss_log=str(self.folder / LOSS_LOG), backbone=data.get("backbone"),
                               input_size=None if size is None else [int(s) for s in size])

    def loss_log(self) -> list[dict[str, float]]:
        """The per-step loss terms of the cached training."""
        with open(self.folder / LOSS_LOG, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def train_or_load(cache_dir: Path | None, load: Callable[[dict[str, Any]], None], train: Callable[[], TrainLog],
                  state: Callable[[], dict[str, Any]], about: Callable[[], dict[str, Any]],
                  main: bool = True) -> TrainingSummary:
    """Load the state cached under the runner's key, or train, then cache it (main process only).

    `load` takes a saved state; `train` fits and returns its log; `state` gives what to save afterwards and
    `about` the backbone and input size to record.
    """
    if cache_dir is None:
        raise RuntimeError("a trained method was given no cache folder; set `trains = True` on its class")
    store = CheckpointStore(cache_dir)
    if store.exists():
        load(store.load())
        return store.summary(cached=True)
    log = train()
    if main:
        summary = store.save(state(), log, about())
    else:
        summary = TrainingSummary(log.steps, log.images_seen, log.wall_seconds, cached=False, **about())
    barrier()
    return summary
