"""DDP: two CPU processes (gloo) train AddressCLIP's step and end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmark.distributed import processes
from methods.addressclip.adapters import TrainOptions
from methods.addressclip.data import ImageTransform, TrainTexts
from methods.addressclip.losses import LossWeights
from methods.addressclip.model import build_clip
from methods.addressclip.objective import ContrastiveStep
from methods.addressclip.text import Tokenizer
from methods.training.loop import TensorRows, epoch_batches, fit, total_steps


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_texts(n: int) -> TrainTexts:
    """n examples over 4 addresses with captions and coordinates."""
    addresses = [f"Street {i % 4}, Keskusta (Cross {i % 4}, Keskusta)" for i in range(n)]
    tokenizer = Tokenizer(77)
    utm = torch.stack([torch.arange(n, dtype=torch.float64) * 10, torch.zeros(n, dtype=torch.float64)], dim=1)
    return TrainTexts(tokenizer(addresses), tokenizer([f"a view {a}" for a in addresses]), utm,
                      torch.arange(n) % 4)


def worker(rank: int, port: int, out: str) -> None:
    """One torchrun-like process: environment as torchrun sets it, then the ordinary training loop."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    procs = processes(torch.device("cpu"))
    assert procs.distributed and procs.rank == rank
    model = build_clip("ial-tiny", False, seed=0)
    images = torch.randint(0, 256, (16, 3, 48, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    step = ContrastiveStep(model, synthetic_texts(16), ImageTransform((48, 64)), LossWeights(), "similarity")
    options = TrainOptions(epochs=1, batch=4, lr=1e-3, lr_min=1e-6, steps=2)
    cpu = torch.device("cpu")
    batches, per_epoch = epoch_batches(TensorRows(images), options, seed=0, device=cpu)
    log = fit(step, batches, total_steps(options, per_epoch), options, cpu, desc="ddp", progress=False)
    torch.save({"state": model.state_dict(), "trace": log.total}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_processes_keep_identical_weights(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    initial = build_clip("ial-tiny", False, seed=0).state_dict()
    assert len(first["trace"]) == len(second["trace"]) == 2
    assert first["trace"] != second["trace"]  # each process saw its own shard of the data
    for key, value in first["state"].items():
        torch.testing.assert_close(value, second["state"][key], rtol=0, atol=0)
    assert not torch.equal(first["state"]["visual.conv1.weight"], initial["visual.conv1.weight"])
