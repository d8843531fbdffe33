"""Sharded encoding and evaluation under torchrun: two gloo processes, each with its own whole batches of the
database, the training split and the queries, give exactly the predictions one process gives (trained models
come from the cache the one-process run filled)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmark.cli import main
from benchmark.protocol import cache_root

# a reference, the training-free retrieval methods (database and whitening sharded), a trained VPR method whose
# database descriptors each process streams to its own file, a CLIP method whose frozen training-split features
# are sharded, and pigeon (training locations embedded)
METHODS = "prior,tiny-images,densevlad,gem:store=float32,coop,pigeon"
NAMES = sorted(m.split(":")[0] for m in METHODS.split(","))
ARGS = ["run", "-q", "--protocol", "tiny", "--preset", "smoke", "--device", "cpu", "--batch-size", "8",
        "--latency-queries", "2", "--methods", METHODS]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out: str) -> None:
    """One process as `torchrun --nproc_per_node 2` starts it: the environment it sets, then the CLI."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    code = main([*ARGS, "--out", out])
    Path(out, f"exit-{rank}").write_text(str(code))
    dist.destroy_process_group()


def predictions(folder: Path) -> dict[str, list[dict]]:
    """Each method's per-query predictions (one run per method in `folder`)."""
    out = {}
    for path in sorted(folder.glob("*/*/*/predictions.jsonl")):
        name = path.parent.parent.name
        assert name not in out, f"two runs of {name} in {folder}: only rank 0 may write"
        out[name] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_two_processes_predict_exactly_what_one_does(tmp_path, tiny_dataset, one_thread):
    assert main([*ARGS, "--out", str(tmp_path / "one")]) == 0
    mp.spawn(worker, args=(free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    assert [(tmp_path / "two" / f"exit-{r}").read_text() for r in (0, 1)] == ["0", "0"]
    one, two = predictions(tmp_path / "one"), predictions(tmp_path / "two")
    assert sorted(one) == sorted(two) == NAMES
    assert len(tiny_dataset.paths("queries")) > 2 * 8  # each process had whole batches of its own
    for name in one:
        assert two[name] == one[name], f"{name}: the 2-process predictions differ from the 1-process ones"
    assert not any((cache_root() / "descriptors").glob("*.npy"))  # each process's streamed file, gone once indexed


def test_shards_are_contiguous_whole_batches_that_cover_every_item():
    from benchmark.distributed import shard_bounds, shard_of

    assert shard_bounds(10, 3) == (0, 10)  # no process group: everything
    for total, batch, world in [(100, 8, 2), (17, 8, 3), (5, 8, 4), (64, 32, 2), (0, 4, 2)]:
        shards = [shard_of(total, batch, rank, world) for rank in range(world)]
        assert shards[0][0] == 0 and shards[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))  # contiguous, in rank order
        assert all(lo % batch == 0 for lo, _ in shards)  # every share starts on a batch boundary
        sizes = [-(-(hi - lo) // batch) for lo, hi in shards]
        assert max(sizes) - min(sizes) <= 1  # balanced to one batch
