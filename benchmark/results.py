"""Result files: one typed, versioned result.json + predictions.jsonl per (protocol, method) run, written atomically.

`RunResult` (and the dataclasses it nests) is the one description of `result.json`: `to_json()` gives its
exact JSON layout and `RunResult.from_json(data, source)` reads it back, upgrading older files through
`MIGRATIONS` and validating every key (one-line `BenchmarkError` naming the file and the key).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np

from benchmark.errors import BenchmarkError

SCHEMA_VERSION = "1.3"
RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.jsonl"

Source = Literal["none", "from-scratch", "file", "cache"]
Family = Literal["ial", "retrieval", "classification", "reference"]
SOURCES: tuple[str, ...] = ("none", "from-scratch", "file", "cache")
FAMILIES: tuple[str, ...] = ("ial", "retrieval", "classification", "reference")
STAGES: tuple[str, ...] = ("encode", "search", "geocode", "total")
REQUIRED_METRICS: tuple[str, ...] = ("ssa@1", "ssa@5", "sa@1", "sa@5", "recall@1", "recall@5", "recall@10",
                                     "median_error_m")

READ_FIX = "re-run the method or remove the file"
WRITE_FIX = "the run produced a malformed result (a bug in the runner or the method); nothing was written"


def now_utc() -> datetime:
    """The current time in UTC (one place, so a run's id and 'created' agree)."""
    return datetime.now(timezone.utc)


def make_run_id(created: datetime, config_hash: str) -> str:
    """A sortable run id: UTC timestamp + the first 8 hex digits of the config hash."""
    return f"{created.strftime('%Y%m%dT%H%M%S%fZ')}-{config_hash[:8]}"


def git_revision() -> str | None:
    """The source tree's git commit (with '-dirty' if it has changes), or None outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def environment(device: str, batch_size: int) -> dict[str, Any]:
    """Everything about the machine and libraries that can change a number."""
    import faiss
    import numpy
    import torch

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "batch_size": batch_size,
        "libraries": {"torch": torch.__version__, "numpy": numpy.__version__, "faiss": faiss.__version__},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


# ---------------------------------------------------------------------------------------------------------------
# Validation: typed reads from parsed JSON, every failure one line naming the file and the dotted key.


def _shown(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


class _Check:
    """Reads typed values out of one parsed result; raises one-line BenchmarkErrors."""

    def __init__(self, source: str, fix: str):
        self.source = source
        self.fix = fix

    def fail(self, path: str, problem: str) -> NoReturn:
        raise BenchmarkError(f"{self.source}: {path} {problem}; {self.fix}")

    def value(self, obj: Mapping[str, Any], base: str, key: str, optional: bool = False) -> tuple[Any, str]:
        path = _join(base, key)
        if key not in obj:
            if optional:
                return None, path
            self.fail(path, "is missing")
        return obj[key], path

    def obj(self, obj: Mapping[str, Any], base: str, key: str, null: bool = False,
            optional: bool = False) -> dict[str, Any] | None:
        value, path = self.value(obj, base, key, optional)
        return self.as_obj(value, path, null or optional)

    def string_map(self, obj: Mapping[str, Any], base: str, key: str) -> dict[str, str]:
        mapping = self.obj(obj, base, key)
        for name, value in mapping.items():
            if not isinstance(value, str):
                self.fail(_join(_join(base, key), name), f"must be a string, got {_shown(value)}")
        return dict(mapping)

    def as_obj(self, value: Any, path: str, null: bool = False) -> dict[str, Any] | None:
        if value is None and null:
            return None
        if not isinstance(value, dict):
            self.fail(path, f"must be an object{' or null' if null else ''}, got {_shown(value)}")
        return value

    def string(self, obj: Mapping[str, Any], base: str, key: str, null: bool = False,
               choices: tuple[str, ...] | None = None, optional: bool = False) -> str | None:
        value, path = self.value(obj, base, key, optional)
        if value is None and (null or optional):
            return None
        if not isinstance(value, str):
            self.fail(path, f"must be a string{' or null' if null or optional else ''}, got {_shown(value)}")
        if choices is not None and value not in choices:
            self.fail(path, f"must be one of {', '.join(choices)}, got {_shown(value)}")
        return value

    def integer(self, obj: Mapping[str, Any], base: str, key: str, null: bool = False) -> int | None:
        value, path = self.value(obj, base, key)
        return self.as_integer(value, path, null)

    def as_integer(self, value: Any, path: str, null: bool = False) -> int | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self.fail(path, f"must be an integer{' or null' if null else ''}, got {_shown(value)}")
        return int(value)

    def number(self, obj: Mapping[str, Any], base: str, key: str, null: bool = False) -> float | None:
        value, path = self.value(obj, base, key)
        return self.as_number(value, path, null)

    def as_number(self, value: Any, path: str, null: bool = False) -> float | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.fail(path, f"must be a number{' or null' if null else ''}, got {_shown(value)}")
        if not math.isfinite(value):
            self.fail(path, f"must be a finite number{' or null' if null else ''}, got {_shown(value)}")
        return float(value)

    def boolean(self, obj: Mapping[str, Any], base: str, key: str) -> bool:
        value, path = self.value(obj, base, key)
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_shown(value)}")
        return value


# ---------------------------------------------------------------------------------------------------------------
# The typed result.


@dataclass(frozen=True, kw_only=True)
class ProtocolInfo:
    """The protocol and data a run was scored on (`result.protocol`)."""

    name: str
    version: str
    data_hash: str
    n_queries: int
    n_queries_dropped: int
    n_candidates: int
    preset: str
    root: str
    options: dict[str, Any] | None = None  # generator options of generated protocols (key left out when None)
    overrides: dict[str, str] = field(default_factory=dict)  # `--protocol name:key=value` given on the command line

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        out = {"name": self.name, "version": self.version, "data_hash": self.data_hash,
               "n_queries": self.n_queries, "n_queries_dropped": self.n_queries_dropped,
               "n_candidates": self.n_candidates, "preset": self.preset, "root": self.root,
               "overrides": dict(self.overrides)}
        if self.options is not None:
            out["options"] = copy.deepcopy(self.options)
        return out

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> ProtocolInfo:
        return cls(name=c.string(data, base, "name"), version=c.string(data, base, "version"),
                   data_hash=c.string(data, base, "data_hash"), n_queries=c.integer(data, base, "n_queries"),
                   n_queries_dropped=c.integer(data, base, "n_queries_dropped"),
                   n_candidates=c.integer(data, base, "n_candidates"), preset=c.string(data, base, "preset"),
                   root=c.string(data, base, "root"), options=c.obj(data, base, "options", optional=True),
                   overrides=c.string_map(data, base, "overrides"))


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a method's weights came from (`result.method.weights`; `path`/`sha256` left out when None)."""

    source: Source
    path: str | None = None
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        out: dict[str, Any] = {"source": self.source}
        if self.path is not None:
            out["path"] = self.path
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> Provenance:
        return cls(source=c.string(data, base, "source", choices=SOURCES),  # type: ignore[arg-type]
                   path=c.string(data, base, "path", optional=True),
                   sha256=c.string(data, base, "sha256", optional=True))


@dataclass(frozen=True, kw_only=True)
class MethodInfo:
    """The method, its options and the provenance of its weights (`result.method`)."""

    name: str
    family: Family
    options: dict[str, Any]
    overrides: dict[str, str]
    config_hash: str
    weights: Provenance
    cache_key: str | None = None  # the trained state's cache key (methods that train); new in 1.1

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        return {"name": self.name, "family": self.family, "options": copy.deepcopy(self.options),
                "overrides": dict(self.overrides), "config_hash": self.config_hash,
                "weights": self.weights.to_json(), "cache_key": self.cache_key}

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> MethodInfo:
        return cls(name=c.string(data, base, "name"),
                   family=c.string(data, base, "family", choices=FAMILIES),  # type: ignore[arg-type]
                   options=c.obj(data, base, "options"), overrides=c.string_map(data, base, "overrides"),
                   config_hash=c.string(data, base, "config_hash"),
                   weights=Provenance._read(c, c.obj(data, base, "weights"), _join(base, "weights")),
                   cache_key=c.string(data, base, "cache_key", null=True))


@dataclass(frozen=True, kw_only=True)
class QueryGroup:
    """The metrics of one named subset of the queries (`result.query_groups`, e.g. one city of a joint protocol)."""

    n_queries: int
    metrics: dict[str, float | None]
    ci95: dict[str, tuple[float, float] | None]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ci95", {k: None if v is None else tuple(v) for k, v in self.ci95.items()})

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        return {"n_queries": self.n_queries, "metrics": dict(self.metrics),
                "ci95": {k: None if v is None else list(v) for k, v in self.ci95.items()}}


@dataclass(frozen=True, kw_only=True)
class TrainingInfo:
    """What training produced the evaluated state (`result.training`; null for methods that do not train)."""

    seed: int
    cache_key: str
    cached: bool  # True when the trained state came from the cache rather than being trained in this run
    steps: int | None = None
    images_seen: int | None = None
    wall_seconds: float | None = None
    loss_log: str | None = None  # path of the per-step loss log file
    backbone: str | None = None
    input_size: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        return {"seed": self.seed, "cache_key": self.cache_key, "cached": self.cached, "steps": self.steps,
                "images_seen": self.images_seen, "wall_seconds": self.wall_seconds, "loss_log": self.loss_log,
                "backbone": self.backbone,
                "input_size": None if self.input_size is None else list(self.input_size)}

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> TrainingInfo:
        seed, cache_key, cached = c.integer(data, base, "seed"), c.string(data, base, "cache_key"), \
            c.boolean(data, base, "cached")
        steps, images_seen = c.integer(data, base, "steps", null=True), c.integer(data, base, "images_seen", null=True)
        wall_seconds = c.number(data, base, "wall_seconds", null=True)
        loss_log, backbone = c.string(data, base, "loss_log", null=True), c.string(data, base, "backbone", null=True)
        size, path = c.value(data, base, "input_size")
        if size is not None:
            if not isinstance(size, list):
                c.fail(path, f"must be a list of integers or null, got {_shown(size)}")
            size = [c.as_integer(v, f"{path}[{i}]") for i, v in enumerate(size)]
        return cls(seed=seed, cache_key=cache_key, cached=cached, steps=steps, images_seen=images_seen,
                   wall_seconds=wall_seconds, loss_log=loss_log, backbone=backbone, input_size=size)


@dataclass(frozen=True)
class StageLatency:
    """Single-query latency of one stage in milliseconds: median and 90th percentile."""

    median: float
    p90: float

    def to_json(self) -> dict[str, float]:
        """The JSON object, keys as in result.json."""
        return {"median": self.median, "p90": self.p90}

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> StageLatency:
        return cls(median=c.number(data, base, "median"), p90=c.number(data, base, "p90"))


@dataclass(frozen=True)
class Storage:
    """Bytes needed at inference: model weights, database/index, map/gazetteer, and their total."""

    model: int
    database: int
    map: int
    total: int

    @classmethod
    def of(cls, model: int, database: int, map: int) -> Storage:
        """A Storage whose total is the sum of its parts."""
        return cls(model=model, database=database, map=map, total=model + database + map)

    def to_json(self) -> dict[str, int]:
        """The JSON object, keys as in result.json."""
        return {"model": self.model, "database": self.database, "map": self.map, "total": self.total}

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> Storage:
        return cls(**{k: c.integer(data, base, k) for k in ("model", "database", "map", "total")})


@dataclass(frozen=True)
class Timing:
    """What a latency comparison needs: the median single-query total latency (ms) of each timing round, and
    the calibration workload's time (ms) before each round and after the last, on the same machine."""

    rounds_ms: tuple[float, ...]
    calibration_ms: tuple[float, ...]  # len(rounds_ms) + 1 values

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounds_ms", tuple(float(v) for v in self.rounds_ms))
        object.__setattr__(self, "calibration_ms", tuple(float(v) for v in self.calibration_ms))

    def normalised(self) -> list[float]:
        """Each round's latency in units of the calibration around it (the mean of the one before and after)."""
        c = self.calibration_ms
        return [r / ((c[i] + c[i + 1]) / 2) for i, r in enumerate(self.rounds_ms)]

    def drift(self) -> float:
        """How much the machine's speed moved within the run: the median calibration of the run's second half
        against its first half, |second − first| / first (halves, not single values: one is noisy)."""
        c = np.array(self.calibration_ms)
        half = len(c) // 2
        first, second = float(np.median(c[:max(1, half)])), float(np.median(c[half:]))
        return abs(second - first) / first

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        return {"rounds_ms": list(self.rounds_ms), "calibration_ms": list(self.calibration_ms)}

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> Timing:
        def series(key: str, zero: bool) -> tuple[float, ...]:
            values, path = c.value(data, base, key)
            if not isinstance(values, list) or not values:
                c.fail(path, f"must be a non-empty list of milliseconds, got {_shown(values)}")
            out = tuple(c.as_number(v, f"{path}[{i}]") for i, v in enumerate(values))
            if any(v < 0 or (v == 0 and not zero) for v in out):
                c.fail(path, f"must hold {'non-negative' if zero else 'positive'} milliseconds, got {_shown(values)}")
            return out

        # a method with nothing to time (a lookup) has 0 ms rounds; the calibration workload never takes 0 ms
        rounds, calibration = series("rounds_ms", zero=True), series("calibration_ms", zero=False)
        if len(calibration) != len(rounds) + 1:
            c.fail(_join(base, "calibration_ms"), f"must have one value per round plus one ({len(rounds) + 1}), "
                                                  f"got {len(calibration)}")
        return cls(rounds_ms=rounds, calibration_ms=calibration)


@dataclass(frozen=True, kw_only=True)
class Cost:
    """What a run cost (`result.cost`): storage, per-stage latency, throughput, peak memory, prepare time, and
    the bytes of the resident search structure (`search_bytes`, the paper's Table 5 "Memory"; see Footprint)."""

    storage_bytes: Storage
    latency_ms: dict[str, StageLatency]  # encode, search, geocode, total
    throughput_qps: float | None
    peak_rss_bytes: int
    peak_cuda_bytes: int | None = None
    prepare_seconds: float | None = None
    timing: Timing | None = None  # timing rounds and calibration (schema 1.2; null in older runs)
    search_bytes: int | None = None  # the resident search structure (schema 1.3; null in older runs)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys as in result.json."""
        return {"storage_bytes": self.storage_bytes.to_json(),
                "latency_ms": {stage: lat.to_json() for stage, lat in self.latency_ms.items()},
                "throughput_qps": self.throughput_qps, "peak_rss_bytes": self.peak_rss_bytes,
                "peak_cuda_bytes": self.peak_cuda_bytes, "prepare_seconds": self.prepare_seconds,
                "timing": None if self.timing is None else self.timing.to_json(),
                "search_bytes": self.search_bytes}

    @classmethod
    def _read(cls, c: _Check, data: Mapping[str, Any], base: str) -> Cost:
        storage = Storage._read(c, c.obj(data, base, "storage_bytes"), _join(base, "storage_bytes"))
        lat_base = _join(base, "latency_ms")
        latency = c.obj(data, base, "latency_ms")
        for stage in STAGES:
            c.value(latency, lat_base, stage)
        return cls(storage_bytes=storage,
                   latency_ms={stage: StageLatency._read(c, c.as_obj(v, _join(lat_base, stage)), _join(lat_base, stage))
                               for stage, v in latency.items()},
                   throughput_qps=c.number(data, base, "throughput_qps", null=True),
                   peak_rss_bytes=c.integer(data, base, "peak_rss_bytes"),
                   peak_cuda_bytes=c.integer(data, base, "peak_cuda_bytes", null=True),
                   prepare_seconds=c.number(data, base, "prepare_seconds", null=True),
                   timing=None if (timing := c.obj(data, base, "timing", null=True)) is None
                   else Timing._read(c, timing, _join(base, "timing")),
                   search_bytes=c.integer(data, base, "search_bytes", null=True))


def latency_from_summary(summary: Mapping[str, Mapping[str, float]]) -> dict[str, StageLatency]:
    """`benchmark.measure.latency_summary`'s {stage: {median, p90}} as typed StageLatency values."""
    return {stage: StageLatency(median=float(v["median"]), p90=float(v["p90"])) for stage, v in summary.items()}


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """One (protocol, method) run: everything in result.json, typed. `to_json`/`from_json` give its file layout.

    `ci95` pairs are stored as (low, high) tuples (lists are accepted and converted).
    """

    schema_version: str = SCHEMA_VERSION
    protocol: ProtocolInfo
    method: MethodInfo
    metrics: dict[str, float | None]
    ci95: dict[str, tuple[float, float] | None]
    cost: Cost
    env: dict[str, Any]
    git_rev: str | None
    seed: int
    k: int
    created: str  # ISO 8601, UTC
    training: TrainingInfo | None
    query_groups: dict[str, QueryGroup] | None = None  # per named query subset (schema 1.3; null: none)

    def __post_init__(self) -> None:
        ci = {key: None if pair is None else tuple(pair) for key, pair in self.ci95.items()}
        object.__setattr__(self, "ci95", ci)  # summarize() gives lists; stored as tuples so equality holds

    def to_json(self) -> dict[str, Any]:
        """The result.json document (key names and order as in schema 1.0, plus 1.1's cache_key and training)."""
        return {
            "schema_version": self.schema_version,
            "protocol": self.protocol.to_json(),
            "method": self.method.to_json(),
            "metrics": dict(self.metrics),
            "ci95": {key: None if pair is None else list(pair) for key, pair in self.ci95.items()},
            "cost": self.cost.to_json(),
            "env": copy.deepcopy(self.env),
            "git_rev": self.git_rev,
            "seed": self.seed,
            "k": self.k,
            "created": self.created,
            "training": None if self.training is None else self.training.to_json(),
            "query_groups": None if self.query_groups is None else {k: g.to_json()
                                                                   for k, g in self.query_groups.items()},
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> RunResult:
        """Read a parsed result.json (any readable schema version, migrated), validating every key.

        Raises a one-line BenchmarkError naming `source` (the file) and the bad key.
        """
        return cls._parse(data, source, READ_FIX)

    @classmethod
    def _parse(cls, data: Any, source: str, fix: str) -> RunResult:
        c = _Check(source, fix)
        data = migrate(data, source)  # then keys are checked in document order: the first bad one is named
        protocol = ProtocolInfo._read(c, c.obj(data, "", "protocol"), "protocol")
        method = MethodInfo._read(c, c.obj(data, "", "method"), "method")
        metrics, ci95 = _scores(c, data, "")
        cost = Cost._read(c, c.obj(data, "", "cost"), "cost")
        env = c.obj(data, "", "env")
        git_rev = c.string(data, "", "git_rev", null=True)
        seed, k = c.integer(data, "", "seed"), c.integer(data, "", "k")
        created = c.string(data, "", "created")
        try:
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            c.fail("created", f"must be an ISO 8601 time, got {_shown(created)}")
        if when.utcoffset() is None or when.utcoffset().total_seconds() != 0:
            c.fail("created", f"must be a UTC time with its offset (+00:00), got {_shown(created)}")
        training = c.obj(data, "", "training", null=True)
        groups = c.obj(data, "", "query_groups", null=True, optional=True)  # absent: no groups
        query_groups = None if groups is None else {
            name: QueryGroup(n_queries=c.integer(c.as_obj(g, f"query_groups.{name}"), f"query_groups.{name}",
                                                 "n_queries"),
                             **dict(zip(("metrics", "ci95"), _scores(c, g, f"query_groups.{name}"))))
            for name, g in groups.items()}
        return cls(schema_version=data["schema_version"], protocol=protocol, method=method, metrics=metrics,
                   ci95=ci95, cost=cost, env=env, git_rev=git_rev, seed=seed, k=k, created=created,
                   training=None if training is None else TrainingInfo._read(c, training, "training"),
                   query_groups=query_groups)


def _scores(c: _Check, data: Mapping[str, Any], base: str
            ) -> tuple[dict[str, float | None], dict[str, tuple[float, float] | None]]:
    """`metrics` (every required key, numbers or null) and `ci95` ([low, high] with low <= high, or null) under
    `base`."""
    metrics: dict[str, float | None] = {}
    for key, value in c.obj(data, base, "metrics").items():
        metrics[key] = c.as_number(value, f"{_join(base, 'metrics')}.{key}", null=True)
    for key in REQUIRED_METRICS:
        c.value(metrics, _join(base, "metrics"), key)
    ci95: dict[str, tuple[float, float] | None] = {}
    for key, pair in c.obj(data, base, "ci95").items():
        path = f"{_join(base, 'ci95')}.{key}"
        if pair is None:
            ci95[key] = None
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            c.fail(path, f"must be [low, high] or null, got {_shown(pair)}")
        low, high = c.as_number(pair[0], f"{path}[0]"), c.as_number(pair[1], f"{path}[1]")
        if low > high:
            c.fail(path, f"must have low <= high, got [{low}, {high}]")
        ci95[key] = (low, high)
    return metrics, ci95


# ---------------------------------------------------------------------------------------------------------------
# Schema versions.


def migrate_1_0_to_1_1(data: dict[str, Any]) -> dict[str, Any]:
    """1.0 -> 1.1: add `method.cache_key` and `training` (both null); `method.overrides` and
    `protocol.overrides` {} where absent.

    A 1.0 file does not record how a model was trained (cache key, steps, time), so `training` is null even
    when `method.weights.source` is 'from-scratch'. 1.0 files written before `method.overrides` existed get
    it empty. Keys already there are kept, so this also completes a dict that lacks only the 1.1 additions.
    Returns a new dict (the input is left alone).
    """
    out = dict(data)
    if isinstance(out.get("protocol"), dict):
        out["protocol"] = {**out["protocol"], "overrides": out["protocol"].get("overrides", {})}
    method = out.get("method")
    if isinstance(method, dict):
        method = dict(method)
        method.setdefault("overrides", {})
        method.setdefault("cache_key", None)
        out["method"] = method
    out.setdefault("training", None)
    out["schema_version"] = "1.1"
    return out


def migrate_1_1_to_1_2(data: dict[str, Any]) -> dict[str, Any]:
    """1.1 -> 1.2: add `cost.timing` (null: older runs kept no timing rounds or calibration, so a latency
    comparison against them says 'not measured'). Returns a new dict."""
    out = dict(data)
    if isinstance(out.get("cost"), dict):
        out["cost"] = {**out["cost"], "timing": out["cost"].get("timing")}
    out["schema_version"] = "1.2"
    return out


def migrate_1_2_to_1_3(data: dict[str, Any]) -> dict[str, Any]:
    """1.2 -> 1.3: add `cost.search_bytes` (null: older runs recorded only the storage parts, whose `database`
    also holds coordinates and cell tables, so the search structure alone is not recoverable) and
    `query_groups` (null: no protocol had query groups before). Returns a new dict."""
    out = dict(data)
    out.setdefault("query_groups", None)
    if isinstance(out.get("cost"), dict):
        out["cost"] = {**out["cost"], "search_bytes": out["cost"].get("search_bytes")}
    out["schema_version"] = "1.3"
    return out


# Applied in order on read: MIGRATIONS[v] takes a version-v document to the next version.
MIGRATIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"1.0": migrate_1_0_to_1_1,
                                                                     "1.1": migrate_1_1_to_1_2,
                                                                     "1.2": migrate_1_2_to_1_3}


def schema_major(version: str) -> int | None:
    """The major number of a 'MAJOR.MINOR' schema version, or None if it is not one."""
    major, dot, minor = version.partition(".")
    return int(major) if dot and major.isdigit() and minor.isdigit() else None


def migrate(data: Any, source: str) -> dict[str, Any]:
    """A parsed result brought up to this schema through MIGRATIONS (a copy); unreadable versions raise."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise BenchmarkError(f"{source}: not an ialbench result (no schema_version)")
    version = data["schema_version"]
    major = schema_major(version) if isinstance(version, str) else None
    if major is None:
        raise BenchmarkError(f"{source}: schema_version must be a string like {SCHEMA_VERSION!r}, "
                             f"got {_shown(version)}; {READ_FIX}")
    if major != schema_major(SCHEMA_VERSION):
        raise BenchmarkError(f"{source}: schema_version {version} is not readable by this version "
                             f"(reads {schema_major(SCHEMA_VERSION)}.x); re-run the method with this version")
    data = copy.deepcopy(data)
    while data["schema_version"] in MIGRATIONS:
        data = MIGRATIONS[data["schema_version"]](data)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Files.


@dataclass(frozen=True)
class LoadedRun:
    """A run read back from disk: its typed result and the result.json it came from."""

    result: RunResult
    path: Path

    @property
    def folder(self) -> Path:
        """The run's folder (<out>/<protocol>/<method>/<run-id>)."""
        return self.path.parent

    @property
    def run_id(self) -> str:
        """The run id (the folder name)."""
        return self.path.parent.name

    def predictions(self) -> Iterator[dict[str, Any]]:
        """The per-query rows of predictions.jsonl, read lazily one line at a time."""
        path = self.folder / PREDICTIONS_FILE
        if not path.is_file():
            raise BenchmarkError(f"{path}: missing; {READ_FIX}")
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BenchmarkError(f"{path}: malformed JSON at line {number} ({e.msg}); {READ_FIX}") from None
                if not isinstance(row, dict):
                    raise BenchmarkError(f"{path}: line {number} is not a JSON object; {READ_FIX}")
                yield row


def read_run(path: Path) -> LoadedRun:
    """Read and validate one result.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{path}: malformed JSON at line {e.lineno} ({e.msg}); remove or re-run it") from None
    return LoadedRun(RunResult.from_json(data, str(path)), path)


def write_run(out: Path, result: RunResult, predictions: list[dict[str, Any]], run_id: str) -> Path:
    """Write result.json and predictions.jsonl into <out>/<protocol>/<method>/<run_id>/ atomically.

    Files go to a hidden temporary folder that is renamed into place; an existing run is never replaced.
    The result is validated first (what is written always reads back).
    """
    final = Path(out) / result.protocol.name / result.method.name / run_id
    document = result.to_json()
    RunResult._parse(document, str(final / RESULT_FILE), WRITE_FIX)
    if final.exists():
        raise BenchmarkError(f"result folder {final} already exists; results are never overwritten: "
                             "pass another --out or remove that folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{run_id}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        with open(tmp / PREDICTIONS_FILE, "w", encoding="utf-8") as f:
            for row in predictions:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(tmp / RESULT_FILE, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_results(results_dir: Path) -> list[LoadedRun]:
    """Every result.json under a folder (hidden folders skipped), validated and migrated, sorted by path."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchmarkError(f"results folder {results_dir} does not exist; pass --results DIR "
                             "(where `python -m benchmark run --out DIR` wrote)")
    return [read_run(path) for path in sorted(results_dir.rglob(RESULT_FILE))
            if not any(part.startswith(".") for part in path.relative_to(results_dir).parts)]
