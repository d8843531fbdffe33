"""The one fit loop every trained method uses: optimiser and LR schedule from FitOptions, gradient
accumulation, optional bf16 autocast, a progress bar with the loss terms, a per-step loss log, and DDP
under torchrun (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from benchmark.distributed import processes
from benchmark.errors import BenchmarkError
from methods.training.options import FitOptions


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


def cosine_factor(step: int, total: int, lr: float, lr_min: float, warmup: int) -> float:
    """LR multiplier at `step`: linear warm-up, then cosine from lr down to lr_min at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return (lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))) / lr


def lr_factor(step: int, total: int, o: FitOptions) -> float:
    """The LR multiplier of the configured schedule (constant or cosine, after a linear warm-up)."""
    if o.schedule == "cosine":
        return cosine_factor(step, total, o.lr, o.lr_min, o.warmup_steps)
    return (step + 1) / o.warmup_steps if step < o.warmup_steps else 1.0


def make_optimizer(params: Iterable[nn.Parameter], o: FitOptions) -> torch.optim.Optimizer:
    """SGD (momentum 0.9), Adam or AdamW over the parameters that require grad."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise BenchmarkError("nothing to train: no parameter requires grad")
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay)
    if o.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if o.optimizer == "adam" else torch.optim.AdamW
        # The fused kernel reads each parameter once per step instead of once per elementwise op: ~10x faster
        # on a CPU for CLIP's 49,408-row token embedding, which dominated the step otherwise.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return cls(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay,
                   fused=fused)
    raise BenchmarkError(f"optimizer={o.optimizer!r}: use sgd, adam or adamw")


def check_fit_options(o: FitOptions) -> None:
    """One clear error for an impossible schedule (before any data is read)."""
    if o.schedule not in ("constant", "cosine"):
        raise BenchmarkError(f"schedule={o.schedule!r}: use constant or cosine")
    if o.accumulate < 1 or o.batch < 1:
        raise BenchmarkError("accumulate and batch must be at least 1")
    if o.steps <= 0 and o.epochs <= 0:
        raise BenchmarkError("set steps or epochs above 0 (or train nothing by not choosing a trained method)")


def total_steps(o: FitOptions, per_epoch: int | None = None) -> int:
    """Optimiser steps of a run: epochs × steps per epoch (capped by `steps` when > 0), else `steps`."""
    if o.epochs > 0 and per_epoch is not None:
        total = o.epochs * max(1, per_epoch // o.accumulate)
        return min(total, o.steps) if o.steps > 0 else total
    return o.steps


class TrainStep(nn.Module):
    """What `fit` trains: forward(*batch) -> loss terms as a dict with 'total'.

    `unused_parameters`: some parameters get no gradient in a step (DDP must then look for them).
    """

    unused_parameters: bool = False

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimisers a recipe owns for auxiliary parameters (e.g. CosPlace's classifiers); `fit` steps them
        too, and its own optimiser skips their parameters."""
        return []

    def after_step(self) -> None:
        """Hook run after every optimiser step (e.g. clamping CLIP's logit scale)."""


@dataclass
class TrainLog:
    """What a fit did: steps, images through the model, wall time, and the loss terms of every step."""

    steps: int = 0
    images_seen: int = 0
    wall_seconds: float = 0.0
    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def total(self) -> list[float]:
        """The total loss of every step."""
        return [r["total"] for r in self.rows]


def epoch_batches(source: TorchDataset, o: FitOptions, seed: int, device: torch.device, workers: int = 0,
                  desc: str = "training") -> tuple[Iterator[Any], int]:
    """Seeded shuffled batches of a dataset, epoch after epoch (sharded by rank under torchrun); and the
    number of batches per epoch."""
    procs = processes(device)
    sampler = None
    if procs.distributed:
        sampler = DistributedSampler(source, num_replicas=procs.world_size, rank=procs.rank, shuffle=True,
                                     seed=seed, drop_last=True)
    loader = seeded_loader(source, o.batch, seed, shuffle=True, drop_last=True, workers=workers, sampler=sampler)
    if len(loader) == 0:
        raise BenchmarkError(f"{desc}: {len(source)} training examples per process are fewer than one batch of "
                             f"{o.batch}; lower batch")

    def forever() -> Iterator[Any]:
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    return forever(), len(loader)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _leading(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 1


def fit(step: TrainStep, batches: Iterator[Any], total: int, o: FitOptions, device: torch.device,
        desc: str, progress: bool) -> TrainLog:
    """Train `step` for `total` optimiser steps on `batches` (each a tuple of forward arguments).

    Every optimiser step sums the gradients of `o.accumulate` batches (each loss divided by it); the LR
    follows `o.schedule`; the forward runs under bf16 autocast when `o.bf16`. Under torchrun the step is
    wrapped in DistributedDataParallel (batches are expected to be sharded by the caller).
    """
    check_fit_options(o)
    if total <= 0:
        raise BenchmarkError(f"{desc}: nothing to do ({total} steps)")
    procs = processes(device)
    step.to(device).train()
    extra = step.extra_optimizers()
    owned = {id(p) for opt in extra for group in opt.param_groups for p in group["params"]}
    optimizer = make_optimizer((p for p in step.parameters() if id(p) not in owned), o)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, o))
    model: nn.Module = step
    if procs.distributed:
        model = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=step.unused_parameters)
    optimizers = [optimizer, *extra]
    log = TrainLog()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not (progress and procs.main), leave=False)
    start = time.perf_counter()
    while log.steps < total:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        terms: dict[str, float] = {}
        for _ in range(o.accumulate):
            batch = next(batches)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=o.bf16):
                losses = model(*_to(batch, device))
            (losses["total"].float() / o.accumulate).backward()
            for name, value in losses.items():
                terms[name] = terms.get(name, 0.0) + float(value.detach()) / o.accumulate
            log.images_seen += _leading(batch) * procs.world_size
        lr = optimizer.param_groups[0]["lr"]
        for opt in optimizers:
            opt.step()
        scheduler.step()
        step.after_step()
        log.steps += 1
        log.rows.append({"step": log.steps, "lr": lr, **terms})
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in terms.items()})
    bar.close()
    log.wall_seconds = time.perf_counter() - start
    step.eval()
    return log


class TensorRows(TorchDataset):
    """Rows of one in-memory tensor (decoded images or frozen features), each yielded with its row index."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.rows[i], i
