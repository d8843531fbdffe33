"""The shared training core: deterministic loaders, the fit loop (schedule, accumulation, bf16, loss log),
the checkpoint store, weight-file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from methods.training.checkpoints import check_state_dict, load_weights_file
from methods.training.loop import TrainStep, cosine_factor, fit, lr_factor, seeded_loader, total_steps
from methods.training.options import FitOptions
from methods.training.store import CheckpointStore, train_or_load


class Regression(TrainStep):
    """Least squares of a linear model: a loss with a known gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1, bias=False)
        nn.init.zeros_(self.linear.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        mse = ((self.linear(x).squeeze(1) - y) ** 2).mean()
        return {"mse": mse, "total": mse}


def batches(n: int, seed: int = 0):
    """Endless batches of n rows of y = x · (1, 2, 3)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(n, 3, generator=g)
        yield x, x @ torch.tensor([1.0, 2.0, 3.0])


def test_seeded_loader_order_depends_only_on_seed():
    data = list(range(20))
    first = [b.tolist() for b in seeded_loader(data, 4, seed=7)]
    again = [b.tolist() for b in seeded_loader(data, 4, seed=7)]
    other = [b.tolist() for b in seeded_loader(data, 4, seed=8)]
    assert first == again != other and sorted(sum(first, [])) == data


def test_fit_learns_logs_every_step_and_counts_images():
    options = FitOptions(steps=150, lr=0.02, optimizer="sgd", augment=0)
    step = Regression()
    log = fit(step, batches(8), total_steps(options), options, torch.device("cpu"), "test", progress=False)
    assert log.steps == 150 and len(log.rows) == 150 and log.images_seen == 1200 and log.wall_seconds > 0
    assert log.rows[-1]["mse"] == log.rows[-1]["total"] < 0.01 * log.rows[0]["total"]
    torch.testing.assert_close(step.linear.weight.detach(), torch.tensor([[1.0, 2.0, 3.0]]), atol=0.05, rtol=0)
    assert not step.training  # left in eval mode


def test_accumulating_two_half_batches_equals_one_full_batch():
    full, halves = Regression(), Regression()
    sgd = FitOptions(steps=3, lr=0.05, optimizer="sgd", augment=0)

    def split(source):
        for x, y in source:
            yield x[:4], y[:4]
            yield x[4:], y[4:]

    fit(full, batches(8), 3, sgd, torch.device("cpu"), "full", False)
    log = fit(halves, split(batches(8)), 3, FitOptions(**{**sgd.__dict__, "accumulate": 2}),
              torch.device("cpu"), "halves", False)
    torch.testing.assert_close(full.linear.weight, halves.linear.weight)
    assert log.steps == 3 and log.images_seen == 24


def test_schedules_warm_up_then_hold_or_decay():
    constant = FitOptions(lr=1.0, warmup_steps=4)
    assert [lr_factor(s, 10, constant) for s in (0, 3, 4, 9)] == [0.25, 1.0, 1.0, 1.0]
    cosine = FitOptions(lr=1.0, lr_min=0.0, schedule="cosine", warmup_steps=0)
    assert lr_factor(0, 11, cosine) == 1.0 and abs(lr_factor(10, 11, cosine)) < 1e-12
    assert lr_factor(5, 11, cosine) == pytest.approx(0.5) == cosine_factor(5, 11, 1.0, 0.0, 0)
    assert total_steps(FitOptions(steps=0, epochs=3), per_epoch=7) == 21
    assert total_steps(FitOptions(steps=10, epochs=3), per_epoch=7) == 10
    assert total_steps(FitOptions(steps=5, epochs=3, accumulate=2), per_epoch=7) == 5
    with pytest.raises(BenchmarkError, match="schedule"):
        fit(Regression(), batches(2), 1, FitOptions(schedule="step"), torch.device("cpu"), "x", False)


def test_bf16_autocast_runs_and_keeps_float32_weights():
    step = Regression()
    options = FitOptions(steps=3, lr=0.01, bf16=True)
    log = fit(step, batches(8), 3, options, torch.device("cpu"), "bf16", False)
    assert log.steps == 3 and step.linear.weight.dtype == torch.float32


def test_checkpoint_store_keeps_weights_summary_and_loss_log(tmp_path):
    options = FitOptions(steps=5, lr=0.1, optimizer="sgd")
    step = Regression()
    calls = []

    def train():
        calls.append(1)
        return fit(step, batches(4), 5, options, torch.device("cpu"), "store", False)

    first = train_or_load(tmp_path / "m", step.load_state_dict, train, step.state_dict,
                          lambda: {"backbone": "linear", "input_size": [3]})
    assert not first.cached and first.steps == 5 and first.images_seen == 20 and first.backbone == "linear"
    rows = [json.loads(line) for line in Path(first.loss_log).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and {"lr", "mse", "total"} <= set(rows[0])

    other = Regression()
    second = train_or_load(tmp_path / "m", other.load_state_dict, train, other.state_dict, dict)
    assert second.cached and second.steps == 5 and len(calls) == 1
    assert torch.equal(other.linear.weight, step.linear.weight)
    assert CheckpointStore(tmp_path / "m").loss_log() == rows
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["loss_log.jsonl", "model.pt", "training.json"]


def test_state_dict_mismatch_lists_keys_and_shapes():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(BenchmarkError) as err:
        check_state_dict(model, {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}, "ckpt.pt")
    text = str(err.value)
    assert "ckpt.pt" in text and "missing keys: bias" in text and "unexpected keys: extra" in text
    assert "weight (2, 4) vs (2, 3)" in text
    check_state_dict(model, {"weight": torch.ones(2, 3), "bias": torch.ones(2)}, "ok")
    assert model.weight.sum().item() == 6


def test_weights_file_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_weights_file(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(BenchmarkError, match="cannot be read"):
        load_weights_file(tmp_path / "bad.pt")


def _ddp_worker(rank: int, port: int, out: str) -> None:
    """One torchrun-like process: the environment torchrun sets, then `fit` on this rank's half of each batch."""
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    step = Regression()
    shard = ((x[rank * 4:(rank + 1) * 4], y[rank * 4:(rank + 1) * 4]) for x, y in batches(8))
    log = fit(step, shard, 5, FitOptions(steps=5, lr=0.05, optimizer="sgd"), torch.device("cpu"), "ddp", False)
    torch.save({"weight": step.linear.weight.detach(), "images": log.images_seen}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_fit_under_two_gloo_processes_equals_one_process_on_the_whole_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    whole = Regression()
    fit(whole, batches(8), 5, FitOptions(steps=5, lr=0.05, optimizer="sgd"), torch.device("cpu"), "one", False)
    assert torch.equal(first["weight"], second["weight"]) and first["images"] == 40  # 5 steps × 4 × 2 ranks
    torch.testing.assert_close(first["weight"], whole.linear.weight.detach())
