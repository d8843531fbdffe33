"""The one pipeline every method runs through: prepare, predict (batched, then single-stream), score, save."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.address import normalize
from benchmark.dataset import Dataset
from benchmark.distributed import (
    barrier,
    gather_rows,
    gather_to_main,
    process_device,
    processes,
    secondary,
    shard_bounds,
)
from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from benchmark.images import iterate_images, load_rgb
from benchmark.measure import ROUNDS, Calibration, PeakMemory, StageClock, latency_summary
from benchmark.method import Method, Prediction, QueryBatch, RunContext, cache_key, config_hash, make_options
from benchmark.metrics import positives_within, summarize
from benchmark.protocol import PRESETS, Protocol, cache_root, resolve_protocol
from benchmark.registry import METHODS
from benchmark.results import (
    Cost,
    MethodInfo,
    ProtocolInfo,
    Provenance,
    QueryGroup,
    RunResult,
    Storage,
    Timing,
    TrainingInfo,
    environment,
    git_revision,
    latency_from_summary,
    make_run_id,
    now_utc,
    write_run,
)

log = logging.getLogger("benchmark")


@dataclass
class RunSpec:
    """Everything a `run` invocation decides."""

    protocol: str
    methods: list[tuple[str, dict[str, str]]]
    preset: str = "default"
    data_root: Path | None = None
    device: str = "auto"
    seed: int = 0
    out: Path = Path("results")
    k: int = 10  # predictions kept per query: SSA@k / SA@k are reported to k = 10
    batch_size: int = 32
    latency_queries: int = 100
    warmup: int = 5
    n_boot: int = 1000
    weights: Path | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def parse_methods(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse 'a,b:x=1,y=2,c' into [(a, {}), (b, {x: 1, y: 2}), (c, {})]; 'all' means every registered method
    and a set name (methods.SETS, e.g. 'headline') its methods."""
    out: list[tuple[str, dict[str, str]]] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        name, colon, option = token.partition(":")
        if "=" in name and not colon:
            if not out:
                raise BenchmarkError(f"--methods {text!r}: option {token!r} comes before any method name")
            key, _, value = token.partition("=")
            out[-1][1][key.strip()] = value.strip()
            continue
        out.append((name.strip(), {}))
        if option:
            key, eq, value = option.partition("=")
            if not eq:
                raise BenchmarkError(f"--methods {text!r}: expected name:key=value, got {token!r}")
            out[-1][1][key.strip()] = value.strip()
    groups = {"all": METHODS.names(), **METHODS.sets()}
    if any(name in groups for name, _ in out):
        given = {name: opts for name, opts in out if name not in groups}
        wanted = [m for name, _ in out for m in groups.get(name, [name])]
        out = [(name, given.get(name, {})) for name in dict.fromkeys(wanted)]
    if not out:
        raise BenchmarkError("--methods is empty; name at least one method (or 'all')")
    return out


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise BenchmarkError(f"--device {name!r}: use auto, cpu or cuda[:N]")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def run(spec: RunSpec) -> list[Path]:
    """Run every requested method on one protocol; returns the result folders written."""
    if spec.preset not in PRESETS:
        raise BenchmarkError(f"--preset {spec.preset!r}: choose one of {', '.join(PRESETS)}")
    protocol = resolve_protocol(spec.protocol)
    device = resolve_device(spec.device)
    # Every name and option is checked before any data is read or any file written.
    if spec.weights is not None and len(spec.methods) != 1:
        raise BenchmarkError("--weights applies to one method; name exactly one with --methods")
    planned = [plan_method(name, given, spec.preset, spec.weights) for name, given in spec.methods]
    # under torchrun rank 0 builds the dataset (if it must) before the others open it, and alone shows progress
    if not processes(process_device(device)).main:
        spec = dataclasses.replace(spec, progress=False)
        barrier()
    dataset = protocol.open(spec.data_root, spec.preset, spec.progress)
    if not secondary():
        barrier()
    if dataset.dropped_queries and not secondary():
        log.warning("%d queries dropped: their address is not in the candidate set", len(dataset.dropped_queries))
    folders = [run_method(protocol, dataset, cls, options, spec, device, overrides)
               for cls, options, overrides in planned]
    return [f for f in folders if f is not None]


def plan_method(name: str, given: dict[str, str], preset: str,
                weights: Path | None = None) -> tuple[type[Method], Any, dict[str, str]]:
    """A method's class, its options (preset, then `given` overrides, then --weights) and those overrides; every
    name and option checked, nothing read or built."""
    overrides = dict(given)
    cls: type[Method] = METHODS.get(name)
    if weights is not None:
        if "weights" not in {f.name for f in dataclasses.fields(cls.Options)}:
            raise BenchmarkError(f"method {name!r} loads no weights; drop --weights")
        overrides = {**overrides, "weights": str(weights)}
    return cls, make_options(cls, preset, overrides), overrides


def make_method(cls: type[Method], options: Any, dataset: Dataset, spec: RunSpec,
                device: torch.device) -> tuple[Method, str | None]:
    """A seeded, unprepared method as the runner builds it, with its RunContext (cache folder named by the
    training cache key), and that key (None for methods that do not train)."""
    seed_everything(spec.seed)
    key = training_cache_key(cls, options, spec.seed, dataset.data_hash)
    ctx = RunContext(device=process_device(device), seed=spec.seed, preset=spec.preset, progress=spec.progress,
                     batch_size=spec.batch_size,
                     cache_dir=None if key is None else cache_root() / "models" / f"{cls.name}-{key[:24]}")
    return cls(options, ctx), key


def _query_batches(method: Method, dataset: Dataset, batch_size: int, lo: int, hi: int):
    paths = dataset.paths("queries")[lo:hi]
    if method.needs_images:
        yield from iterate_images(paths, method.preprocess, batch_size)
    else:
        for _ in range(0, len(paths), batch_size):
            yield None


def batched_predictions(method: Method, dataset: Dataset, spec: RunSpec, clock: StageClock,
                        truth: Callable[[int, int], np.ndarray | None]) -> tuple[list[Prediction], float] | None:
    """Every query's prediction, batch by batch, and the seconds the slowest process spent in the method's
    stages. Under torchrun each process predicts its own whole batches and rank 0 gathers them in order (the
    others get None)."""
    rel_paths = list(dataset.splits["queries"].image)
    lo, hi = shard_bounds(len(rel_paths), spec.batch_size)
    predictions: list[Prediction] = []
    bar = tqdm(total=hi - lo, desc=f"{method.name}: predicting", unit="q", disable=not spec.progress, leave=False)
    for images in _query_batches(method, dataset, spec.batch_size, lo, hi):
        first = lo + len(predictions)
        last = min(hi, first + spec.batch_size)
        predictions += method.predict(QueryBatch(images, rel_paths[first:last], truth(first, last)), spec.k, clock)
        bar.update(last - first)
    bar.close()
    seconds = gather_rows(torch.tensor([sum(clock.take().values())], dtype=torch.float64))
    gathered = gather_to_main(predictions)
    return None if gathered is None else (gathered, float(seconds.max()))


def _check_prediction(method: str, p: Prediction, k: int) -> None:
    names = [normalize(a) for a in p.topk]
    if len(set(names)) != len(names) or len(names) > k or len(p.scores) != len(names):
        raise RuntimeError(f"method {method} broke the contract: top-k must be ≤{k} distinct sub-streets "
                           f"with one score each, got {p.topk} / {p.scores}")


def training_cache_key(cls: type[Method], options: Any, seed: int, data_hash: str) -> str | None:
    """The cache key of a trained method's state (None for methods that do not train)."""
    if not cls.trains:
        return None
    hashes = {name: file_sha256(path) for name, path in cls.input_files(options).items()}
    return cache_key(cls, options, seed, data_hash, hashes)


def single_stream(method: Method, query: Callable[[int], QueryBatch], timed: int, warmup: int, k: int,
                  clock: StageClock) -> list[dict[str, float]]:
    """Single-stream latency: `warmup` + `timed` queries one by one (query(i), loaded outside the clock);
    the per-stage seconds of each timed one."""
    samples = []
    for i in range(warmup + timed):
        batch = query(i)
        method.predict(batch, k, clock)
        seconds = clock.take()
        if i >= warmup:
            samples.append(seconds)
    return samples


def run_method(protocol: Protocol, dataset: Dataset, cls: type[Method], options: Any, spec: RunSpec,
               device: torch.device, overrides: dict[str, str] | None = None) -> Path | None:
    """Prepare one method, predict every query (batched, then single-stream for latency), score and save.

    Under torchrun every process prepares (trains) together; only rank 0 evaluates and writes (None elsewhere).
    """
    method, key = make_method(cls, options, dataset, spec, device)
    chash = config_hash(cls.name, options)
    start = time.perf_counter()
    method.prepare(dataset.for_methods())
    prepare_seconds = time.perf_counter() - start

    queries = dataset.splits["queries"]
    rel_paths = list(queries.image)
    true_utm = dataset.utm("queries")
    n = len(queries)
    if n == 0:
        raise BenchmarkError(f"{dataset.name}: no queries left to evaluate")

    def truth(lo: int, hi: int) -> np.ndarray | None:
        return true_utm[lo:hi] if cls.sees_true_coordinates else None

    clock = StageClock(device)
    with PeakMemory(device) as memory, torch.inference_mode():
        batched = batched_predictions(method, dataset, spec, clock, truth)
        if batched is None or secondary():  # under torchrun rank 0 alone times, scores and writes
            return None
        predictions, batch_seconds = batched

        abs_paths = dataset.paths("queries")

        def query(q: int) -> QueryBatch:
            image = method.preprocess(load_rgb(abs_paths[q])).unsqueeze(0) if method.needs_images else None
            return QueryBatch(image, rel_paths[q:q + 1], truth(q, q + 1))

        calibration = Calibration(device)
        samples, rounds_ms, calibration_ms = [], [], [calibration.measure()]
        timed = min(spec.latency_queries, n)
        start = 0
        for r, count in enumerate(np.array_split(np.arange(timed), min(ROUNDS, timed))):
            warmup = spec.warmup if r == 0 else 0  # queries go on where the last round stopped
            part = single_stream(method, lambda i, at=start: query((at + i) % n), len(count), warmup, spec.k, clock)
            start += warmup + len(count)
            samples += part
            rounds_ms.append(float(np.median([sum(s.values()) for s in part]) * 1e3))
            calibration_ms.append(calibration.measure())
    if len(predictions) != n:
        raise RuntimeError(f"method {cls.name} returned {len(predictions)} predictions for {n} queries")
    for p in predictions:
        _check_prediction(cls.name, p, spec.k)

    retrieved = positives = None
    if all(p.retrieved is not None for p in predictions):
        width = min(len(p.retrieved) for p in predictions)
        retrieved = np.array([p.retrieved[:width] for p in predictions], np.int64)
        positives = positives_within(dataset.utm("database"), true_utm)
    predicted_utm = None
    if all(p.utm is not None for p in predictions):
        predicted_utm = np.array([p.utm for p in predictions], np.float64)
    def scored(idx: np.ndarray) -> tuple[dict[str, float | None], dict[str, list[float] | None]]:
        """The metrics of the queries `idx` (all of them, or one of the protocol's query groups)."""
        return summarize([predictions[i].topk for i in idx], [truth_address[i] for i in idx],
                         retrieved=None if retrieved is None else retrieved[idx],
                         positives=None if positives is None else [positives[i] for i in idx],
                         predicted_utm=None if predicted_utm is None else predicted_utm[idx],
                         true_utm=true_utm[idx], n_boot=spec.n_boot, seed=spec.seed)

    truth_address = list(queries.address)
    metrics, ci = scored(np.arange(n))
    groups = {name: QueryGroup(n_queries=int(mask.sum()), metrics=m, ci95=c)
              for name, mask in protocol.query_groups(dataset).items()
              for m, c in [scored(np.flatnonzero(mask))]} or None

    footprint = method.footprint()
    created = now_utc()
    training = None
    if method.training is not None:
        training = TrainingInfo(seed=spec.seed, cache_key=key, **dataclasses.asdict(method.training))
    result = RunResult(
        protocol=ProtocolInfo(name=protocol.name, version=protocol.version, data_hash=dataset.data_hash,
                              n_queries=n, n_queries_dropped=len(dataset.dropped_queries),
                              n_candidates=len(dataset.address_book), preset=spec.preset, root=str(dataset.root),
                              options=protocol.record(spec.preset).get("options"),
                              overrides=protocol.given()),
        method=MethodInfo(name=cls.name, family=cls.family, options=dataclasses.asdict(options),
                          overrides=dict(overrides or {}), config_hash=chash,
                          weights=Provenance(**method.provenance()), cache_key=key),
        metrics=metrics,
        ci95=ci,
        cost=Cost(storage_bytes=Storage.of(footprint.model, footprint.database, footprint.map),
                  latency_ms=latency_from_summary(latency_summary(samples)),
                  throughput_qps=n / batch_seconds if batch_seconds > 0 else None,
                  peak_rss_bytes=memory.peak_rss, peak_cuda_bytes=memory.peak_cuda,
                  prepare_seconds=prepare_seconds,
                  timing=Timing(rounds_ms=rounds_ms, calibration_ms=calibration_ms),
                  search_bytes=footprint.search),
        env=environment(str(device), spec.batch_size),
        git_rev=git_revision(),
        seed=spec.seed,
        k=spec.k,
        created=created.isoformat(),
        training=training,
        query_groups=groups,
    )
    rows = []
    for (image, address), p in zip(zip(rel_paths, queries.address), predictions):
        row = {"image": image, "address": address, "topk": p.topk, "scores": [float(s) for s in p.scores],
               "utm": None if p.utm is None else [float(p.utm[0]), float(p.utm[1])]}
        if p.retrieved is not None:
            row["retrieved"] = [int(i) for i in p.retrieved[:10]]
        rows.append(row)
    folder = write_run(spec.out, result, rows, make_run_id(created, chash))
    log.info("%s: SSA@1 %.2f  SA@1 %.2f  -> %s", cls.name, metrics["ssa@1"], metrics["sa@1"], folder)
    return folder
