"""Where this process stands under torchrun: rank, world size, its device; a barrier. One process without."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def secondary() -> bool:
    """True in a torchrun worker other than rank 0: it helps train but does not evaluate or write."""
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0
