"""The training loop the CLIP methods share: Adam, cosine LR, seeded order, loss bar, DDP under torchrun."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data.distributed import DistributedSampler

from benchmark.errors import BenchmarkError
from benchmark.training import loss_bar, seeded_loader


@dataclass(frozen=True)
class Schedule:
    """Optimisation settings: batch per process, epochs (capped by max_steps if > 0), Adam and cosine LR."""

    epochs: int
    batch_size: int
    lr: float
    lr_min: float
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_steps: int = 0
    workers: int = 0


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a (possibly single-process) training job."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """True under torchrun (or any launcher setting WORLD_SIZE > 1)."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """The process that saves checkpoints and shows progress."""
        return self.rank == 0


def processes(device: torch.device) -> Processes:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on CUDA), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size())


def process_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK; otherwise the device as given."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def cosine_factor(step: int, total: int, lr: float, lr_min: float, warmup: int) -> float:
    """LR multiplier at `step`: linear warm-up, then cosine from lr down to lr_min at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return (lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))) / lr


class TrainStep(nn.Module):
    """What the loop trains: forward(uint8 images, row indices) -> loss terms with 'total'."""

    def after_step(self) -> None:
        """Hook run after every optimiser step (e.g. clamping CLIP's logit scale)."""


def train(step: TrainStep, source: TorchDataset, schedule: Schedule, device: torch.device, seed: int,
          desc: str, progress: bool) -> list[float]:
    """Train `step`'s parameters that require grad; returns this process's loss after every step."""
    procs = processes(device)
    step.to(device).train()
    params = [p for p in step.parameters() if p.requires_grad]
    if not params:
        raise BenchmarkError(f"{desc}: nothing to train")
    sampler = None
    model: nn.Module = step
    if procs.distributed:
        sampler = DistributedSampler(source, num_replicas=procs.world_size, rank=procs.rank, shuffle=True,
                                     seed=seed, drop_last=True)
        model = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    loader = seeded_loader(source, schedule.batch_size, seed, shuffle=True, drop_last=True,
                           workers=schedule.workers, sampler=sampler)
    if len(loader) == 0:
        raise BenchmarkError(f"{desc}: {len(source)} training images per process are fewer than one batch of "
                             f"{schedule.batch_size}; lower batch_size")
    total = schedule.epochs * len(loader)
    if schedule.max_steps > 0:
        total = min(total, schedule.max_steps)
    optimizer = torch.optim.Adam(params, lr=schedule.lr, betas=(schedule.beta1, schedule.beta2), eps=schedule.eps,
                                 weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_factor(
        s, total, schedule.lr, schedule.lr_min, schedule.warmup_steps))
    trace: list[float] = []
    bar = loss_bar(total, desc, progress and procs.main)
    epoch = 0
    while len(trace) < total:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for images, index in loader:
            losses = model(images.to(device), index.to(device))
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            scheduler.step()
            step.after_step()
            trace.append(float(losses["total"].detach()))
            bar.update(1)
            bar.set_postfix({k: f"{float(v.detach()):.3f}" for k, v in losses.items()})
            if len(trace) == total:
                break
        epoch += 1
    bar.close()
    step.eval()
    return trace


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
