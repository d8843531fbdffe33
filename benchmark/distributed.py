"""Where this process stands under torchrun: rank, world size, its device; a barrier; the split of a list of
items into contiguous shards of whole batches and the gathers that put their results back in order. One process
without a process group: every helper is then the identity."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


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
        if device.type == "cuda" and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # object collectives on NCCL use this device
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size())


def process_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK; otherwise the device as given."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def secondary() -> bool:
    """True in a torchrun worker other than rank 0: it helps train but does not evaluate or write."""
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _group() -> tuple[int, int] | None:
    """(rank, world size) inside a process group of more than one process, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def shard_of(total: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Process `rank`'s contiguous share [lo, hi) of `total` items among `world_size`, cut at whole batches of
    `batch_size` (so every batch is the one a single process would form) and balanced to within one batch."""
    batches = -(-total // batch_size)
    first, last = (batches * r // world_size for r in (rank, rank + 1))
    return min(total, first * batch_size), min(total, last * batch_size)


def shard_bounds(total: int, batch_size: int) -> tuple[int, int]:
    """This process's share of `total` items (`shard_of`) under torchrun; all of them outside a process group."""
    group = _group()
    return (0, total) if group is None else shard_of(total, batch_size, *group)


@functools.cache
def _cpu_group() -> Any:
    """A gloo group for CPU tensors (the default group when it is gloo already; NCCL moves only CUDA tensors)."""
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def gather_rows(local: T | None) -> T | None:
    """Every process's rows (a torch tensor or numpy array, or None for an empty share) concatenated in rank
    order, on every process; `local` itself outside a process group."""
    if _group() is None:
        return local
    group = _cpu_group()
    is_numpy = isinstance(local, np.ndarray)
    tensor = None if local is None else (torch.from_numpy(np.ascontiguousarray(local)) if is_numpy else local.cpu())
    meta = None if tensor is None else (len(tensor), tuple(tensor.shape[1:]), tensor.dtype, is_numpy)
    metas: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(metas, meta, group=group)
    present = [m for m in metas if m is not None]
    if not present:
        return None
    width = max(m[0] for m in present)
    _, tail, dtype, as_numpy = present[0]
    padded = torch.zeros(width, *tail, dtype=dtype)
    if tensor is not None:
        padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in metas]
    dist.all_gather(parts, padded, group=group)
    rows = torch.cat([part[:m[0]] for part, m in zip(parts, metas) if m is not None])
    return rows.numpy() if as_numpy else rows


def gather_to_main(local: list[T]) -> list[T] | None:
    """Every process's list concatenated in rank order on rank 0 (None elsewhere); `local` outside a group."""
    if _group() is None:
        return local
    parts: list[Any] = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(local, parts, dst=0, group=_cpu_group())
    return None if parts is None else [item for part in parts for item in part]


def gather_to_all(local: list[T]) -> list[T]:
    """Every process's list concatenated in rank order, on every process; `local` outside a group."""
    if _group() is None:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local, group=_cpu_group())
    return [item for part in parts for item in part]


def rank_and_size() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    return _group() or (0, 1)
