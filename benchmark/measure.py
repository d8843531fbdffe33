"""Measurement: per-stage clocks that synchronise the device, latency summaries, peak memory."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil
import torch

STAGES = ("encode", "search", "geocode")


class StageClock:
    """Accumulates wall time per stage; synchronises CUDA before reading the clock."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as part of stage `name`."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages are {STAGES}")
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """Return the seconds per stage (every stage present) and reset."""
        out = {s: self.seconds.get(s, 0.0) for s in STAGES}
        self.seconds = defaultdict(float)
        return out


def latency_summary(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median and p90 in milliseconds per stage and for their per-query total."""
    out = {}
    for stage in (*STAGES, "total"):
        values = np.array([sum(s.values()) if stage == "total" else s[stage] for s in samples]) * 1e3
        out[stage] = {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}
    return out


class PeakMemory:
    """Peak process RSS over a block (sampled by a thread every `interval` s) and the CUDA allocator's peak."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_rss = 0
        self.peak_cuda: int | None = None
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self.peak_rss = self._proc.memory_info().rss
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)
        if self.device.type == "cuda":
            self.peak_cuda = int(torch.cuda.max_memory_allocated(self.device))


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers as stored (the model part of a footprint)."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


ROUNDS = 5  # timing rounds per run: a latency comparison tests their calibrated medians


class Calibration:
    """A fixed workload shaped like one query (a small seeded conv net on one 128×176 image, then a 128×128
    matmul) whose time tells how fast this machine is right now; latencies are compared in units of it."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        generator = torch.Generator().manual_seed(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(64, 128, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 64),
            ).to(self.device).eval()
        self.image = torch.rand(1, 3, 128, 176, generator=generator).to(self.device)
        self.matrix = torch.rand(128, 128, generator=generator).to(self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure(self, repeats: int = 7) -> float:
        """Median milliseconds of `repeats` runs of the workload (after one warm-up run)."""
        times = []
        with torch.inference_mode():
            for i in range(repeats + 1):
                self._sync()
                start = time.perf_counter()
                self.net(self.image)
                self.matrix @ self.matrix
                self._sync()
                if i:
                    times.append((time.perf_counter() - start) * 1e3)
        return float(np.median(times))
