"""The cost-vs-size curve (`python -m benchmark scale`): how a retrieval method's per-query search time and
resident memory grow with its database (flat and IVF-PQ faiss indexes over 10^3…10^6 descriptors of the
retrieval methods' sizes), IVF-PQ's Recall@1 against the flat index's on a real method's descriptors padded
with distractors, and beside them what an IAL method pays per query: one matrix product with its candidate
address embeddings, which grows with the candidates (10^2…10^4), not with any database.

Synthetic descriptors are unit Gaussian rows (timing and memory only). The recall check takes a retrieval
method's real database and query descriptors on a protocol and adds distractors: real database rows, drawn at
random, with Gaussian noise of `jitter` x each dimension's spread, re-normalised, and never positives."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from tqdm.auto import tqdm

from benchmark.errors import BenchmarkError
from methods.retrieval import index_nbytes

log = logging.getLogger("benchmark")

DIMS = {"gem": 512, "densevlad": 1024, "mixvpr": 4096, "salad": 8448, "netvlad": 32768}
IAL_DIMS = {"addressclip (CPU preset)": 128, "addressclip (paper)": 512}


@dataclass(frozen=True)
class ScaleSpec:
    """What one `scale` invocation measures."""

    sizes: list[int] = field(default_factory=lambda: [10**3, 10**4, 10**5, 10**6])
    dims: dict[str, int] = field(default_factory=lambda: dict(DIMS))
    candidates: list[int] = field(default_factory=lambda: [10**2, 10**3, 10**4])
    ial_dims: dict[str, int] = field(default_factory=lambda: dict(IAL_DIMS))
    queries: int = 500  # queries per timed search (synthetic) and at most this many real ones
    max_gb: float = 6.0  # a database larger than this (float32) is skipped, with the reason
    # RetrievalOptions for IVF-PQ: 128-byte codes (1000 lists at 10^6 rows, 16 visited) and, as a third structure,
    # the same codes with the best 50 hits re-ranked exactly (keeps ≥ 0.95 of flat's Recall@1 on densevlad)
    index_options: dict[str, str] = field(default_factory=lambda: {"pq_bytes": "128", "rerank": "50"})
    method: str | None = "densevlad"  # real descriptors for the recall check (None: skip it)
    protocol: str = "helsinki"
    preset: str = "default"
    jitter: float = 1.0
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class Point:
    """One measurement: a search structure of `size` rows of `dim` dimensions."""

    family: str  # retrieval | ial
    structure: str  # flat | ivfpq | candidates
    label: str  # descriptor kind (e.g. "mixvpr", "densevlad (real)") or IAL embedding
    dim: int
    size: int
    ms_per_query: float | None = None
    memory_bytes: int | None = None
    build_seconds: float | None = None
    recall_at_1: float | None = None  # percent, real descriptors only
    skipped: str | None = None


def unit_rows(n: int, dim: int, rng: np.random.Generator, chunk: int = 65536) -> np.ndarray:
    """n L2-normalised Gaussian rows [n, dim] (float32), filled chunk by chunk."""
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - lo), dim), dtype=np.float32)
        out[lo:lo + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def distractors(real: np.ndarray, n: int, jitter: float, rng: np.random.Generator, chunk: int = 65536
                ) -> np.ndarray:
    """n rows [n, D] near the real rows' distribution: random real rows plus Gaussian noise of `jitter` x each
    dimension's spread, L2-normalised."""
    spread = real.std(axis=0).astype(np.float32) * jitter
    out = np.empty((n, real.shape[1]), np.float32)
    for lo in range(0, n, chunk):
        rows = real[rng.integers(0, len(real), min(chunk, n - lo))]
        block = rows + rng.standard_normal(rows.shape, dtype=np.float32) * spread
        out[lo:lo + len(block)] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return out


def ms_per_query(search: Callable[[], Any], count: int, min_seconds: float = 0.3, repeats: int = 3) -> float:
    """Milliseconds per query of a batched `search` of `count` queries: the fastest of up to `repeats` timed
    calls (stopping once `min_seconds` have passed), after one untimed call."""
    search()
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        search()
        seconds = time.perf_counter() - start
        best, spent = min(best, seconds), spent + seconds
        if spent >= min_seconds:
            break
    return best * 1e3 / count


def build(database: np.ndarray, kind: str, overrides: dict[str, str]) -> tuple[faiss.Index, float]:
    """The retrieval pipeline's own index of `kind` over the rows, and the seconds it took to build."""
    from methods.retrieval import build_index

    start = time.perf_counter()
    index = build_index(database, index_options(kind, overrides))
    return index, time.perf_counter() - start


def index_options(kind: str, overrides: dict[str, str]) -> Any:
    """RetrievalOptions of `kind` with the spec's IVF-PQ overrides applied (an unknown key is one clear error)."""
    from benchmark.options import apply_overrides
    from methods.retrieval import RetrievalOptions

    return apply_overrides(RetrievalOptions(index=kind), overrides if kind == "ivfpq" else {}, "--index-options")


def retrieval_points(label: str, database: np.ndarray, queries: np.ndarray, spec: ScaleSpec,
                     real: int = 0, positives: list[np.ndarray] | None = None) -> list[Point]:
    """Flat and IVF-PQ over the first `size` rows for every size in the spec: ms per query and memory; with
    `positives` (real queries, whose first `real` database rows are the real ones) also Recall@1 at 25 m. With
    `rerank`, IVF-PQ is measured twice: its codes alone, and with the exact second pass over their best hits."""
    points = []
    for size in spec.sizes:
        if size > len(database):
            continue
        rows = database[:size]
        for kind in ("flat", "ivfpq"):
            index, seconds = build(rows, kind, spec.index_options)
            if isinstance(index, faiss.IndexRefineFlat):
                codes = faiss.downcast_index(index.base_index)
                points.append(_point(label, kind, codes, seconds, rows, queries, real, positives))
                kind = f"ivfpq+rerank{int(index.k_factor)}"
            points.append(_point(label, kind, index, seconds, rows, queries, real, positives))
            del index
    return points


def _point(label: str, structure: str, index: faiss.Index, seconds: float, rows: np.ndarray, queries: np.ndarray,
           real: int, positives: list[np.ndarray] | None) -> Point:
    took = ms_per_query(lambda: index.search(queries, 1), len(queries))
    recall = None
    if positives is not None:
        _, ids = index.search(queries, 1)
        recall = 100.0 * float(np.mean([i < real and np.isin(i, p).item() for (i,), p in zip(ids, positives)]))
    return Point("retrieval", structure, label, rows.shape[1], len(rows), took, index_nbytes(index), seconds, recall)


def ial_points(spec: ScaleSpec, rng: np.random.Generator) -> list[Point]:
    """An IAL method's per-query scoring: one query embedding against C candidate embeddings (matrix product
    and top-10 in torch, as the IAL base class does), for every C and embedding size."""
    points = []
    for label, dim in spec.ial_dims.items():
        queries = torch.from_numpy(unit_rows(spec.queries, dim, rng))
        for count in spec.candidates:
            candidates = torch.from_numpy(unit_rows(count, dim, rng))
            k = min(10, count)

            def score(q: torch.Tensor = queries, c: torch.Tensor = candidates, k: int = k) -> Any:
                with torch.inference_mode():
                    return torch.topk(q @ c.T, k, dim=1)

            points.append(Point("ial", "candidates", label, dim, count, ms_per_query(score, len(queries)),
                                count * dim * 4))
    return points


def retrieval_class(name: str) -> type:
    """The registered retrieval method of that name (the one whose real descriptors are measured)."""
    from benchmark.registry import METHODS
    from methods.retrieval import RetrievalMethod

    cls = METHODS.get(name)
    if not issubclass(cls, RetrievalMethod):
        raise BenchmarkError(f"scale --method {name!r} is a {cls.family} method; name a retrieval method (its "
                             "database descriptors are what the index holds) or 'none'")
    return cls


def real_descriptors(spec: ScaleSpec) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], str]:
    """A retrieval method's database and query descriptors on the spec's protocol, the queries' positives (25 m),
    and a label; trained methods come from (or go into) the cache like any run."""
    from benchmark.images import map_images
    from benchmark.method import RunContext, make_options
    from benchmark.metrics import positives_within
    from benchmark.protocol import cache_root, resolve_protocol
    from benchmark.runner import seed_everything, training_cache_key

    cls = retrieval_class(spec.method)
    options = make_options(cls, spec.preset, {})
    dataset = resolve_protocol(spec.protocol).open(None, spec.preset, spec.progress)
    key = training_cache_key(cls, options, spec.seed, dataset.data_hash)
    seed_everything(spec.seed)
    ctx = RunContext(torch.device("cpu"), spec.seed, spec.preset, progress=spec.progress,
                     cache_dir=None if key is None else cache_root() / "models" / f"{cls.name}-{key[:24]}")
    method = cls(options, ctx)
    method.prepare(dataset.for_methods())
    database = method.index.reconstruct_n(0, method.index.ntotal)
    paths = dataset.paths("queries")[:spec.queries]
    with torch.inference_mode():
        queries = map_images(paths, method.preprocess, ctx.batch_size, method.encode,
                             f"{cls.name}: encoding queries", spec.progress)
    positives = positives_within(dataset.utm("database"), dataset.utm("queries")[:len(paths)])
    return database, np.ascontiguousarray(queries), positives, f"{cls.name} (real, {dataset.name})"


def measure(spec: ScaleSpec) -> list[Point]:
    """Every point of the curve (skipped ones carry their reason)."""
    rng = np.random.default_rng(spec.seed)
    points: list[Point] = []
    steps = list(spec.dims.items())
    for label, dim in tqdm(steps, desc="scale: synthetic descriptors", disable=not spec.progress, leave=False):
        fits = [s for s in spec.sizes if s * dim * 4 <= spec.max_gb * 2**30]
        points += [Point("retrieval", "flat", label, dim, s, skipped=f"{s * dim * 4 / 2**30:.1f} GB > --max-gb")
                   for s in spec.sizes if s not in fits]
        if fits:
            database = unit_rows(max(fits), dim, rng)
            queries = unit_rows(spec.queries, dim, rng)
            points += retrieval_points(label, database, queries, dataclasses.replace(spec, sizes=fits))
            del database
    if spec.method:
        database, queries, positives, label = real_descriptors(spec)
        dim = database.shape[1]
        fits = [s for s in spec.sizes if s * dim * 4 <= spec.max_gb * 2**30 and s >= len(database)]
        if fits:
            padded = np.concatenate([database, distractors(database, max(fits) - len(database), spec.jitter, rng)])
            points += retrieval_points(label, padded, queries, dataclasses.replace(spec, sizes=fits),
                                       real=len(database), positives=positives)
    points += ial_points(spec, rng)
    return points


def table(points: list[Point]) -> pd.DataFrame:
    """The points as a table, one row each."""
    return pd.DataFrame([dataclasses.asdict(p) for p in points])


def markdown(points: list[Point], spec: ScaleSpec) -> str:
    """The curve as Markdown: search ms per query and MB per size and structure, then the ratios at the
    largest measured size of each real-descriptor set (IVF-PQ's speed-up over flat, its share of flat's R@1)."""
    frame = table(points)
    lines = [f"## Cost against size ({spec.queries} queries per timed search; IVF-PQ options: "
             f"{spec.index_options or 'the pipeline defaults'})", ""]
    shown = frame[frame.skipped.isna()]
    for family, title in (("retrieval", "database rows"), ("ial", "candidate addresses")):
        part = shown[shown.family == family]
        if part.empty:
            continue
        cells = part.assign(cell=[f"{ms:.3g} ms · {mb / 2**20:.3g} MB" + ("" if r is None or pd.isna(r) else f" · R@1 {r:.1f}")
                                  for ms, mb, r in zip(part.ms_per_query, part.memory_bytes, part.recall_at_1)])
        pivot = cells.pivot_table(index=["label", "dim", "structure"], columns="size", values="cell", aggfunc="first")
        pivot.columns = [f"{c:,}" for c in pivot.columns]
        lines += [f"{title} →", "", pivot.reset_index().fillna("–").to_markdown(index=False), ""]
    skipped = frame[frame.skipped.notna()]
    if not skipped.empty:
        lines += ["Skipped: " + "; ".join(f"{r.label} {r.size:,} ({r.skipped})"
                                          for r in skipped.drop_duplicates(["label", "size"]).itertuples()), ""]
    for label in shown[shown.recall_at_1.notna()].label.unique():
        part = shown[shown.label == label]
        largest = part[part["size"] == part["size"].max()]
        flat = largest[largest.structure == "flat"].iloc[0]
        for approx in largest[largest.structure != "flat"].itertuples():
            share = approx.recall_at_1 / flat.recall_at_1 if flat.recall_at_1 else float("nan")
            lines.append(f"At {flat['size']:,} rows of {label}: {approx.structure} answers "
                         f"×{flat.ms_per_query / approx.ms_per_query:.1f} faster than flat and keeps {share:.3f} of "
                         f"its Recall@1 ({approx.recall_at_1:.1f} against {flat.recall_at_1:.1f}), in "
                         f"{approx.memory_bytes / 2**20:.3g} MB against {flat.memory_bytes / 2**20:.3g} MB.")
    return "\n".join(lines).rstrip() + "\n"


def plot(points: list[Point], out_dir: Path, stem: str = "scale") -> list[Path]:
    """Two log-log panels: search ms per query, and resident MB, against rows (retrieval) or candidates (IAL)."""
    from benchmark.plots import _figure, _themed, save_figure

    @_themed
    def draw() -> list[Path]:
        frame = table(points)
        frame = frame[frame.skipped.isna()]
        fig, (time_ax, memory_ax) = _figure(ncols=2, width=5.2, height=4.2)
        labels = list(dict.fromkeys(frame.label))
        colour = dict(zip(labels, sns.color_palette("tab10", len(labels))))  # one colour per descriptor kind
        for (family, structure, label), part in frame.groupby(["family", "structure", "label"], sort=False):
            part = part.sort_values("size")
            style = {"flat": "-", "ivfpq": "--", "candidates": ":"}.get(structure, "-.")
            marker = "s" if family == "ial" else "o"
            name = f"{label} {part.dim.iloc[0]}-d, " + ("candidates (IAL)" if family == "ial" else structure)
            for ax, values in ((time_ax, part.ms_per_query), (memory_ax, part.memory_bytes / 2**20)):
                ax.plot(part["size"], values, style, marker=marker, ms=3, color=colour[label], label=name)
        for ax, ylabel in ((time_ax, "search ms per query (batched)"), (memory_ax, "resident search structure (MB)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("database rows (retrieval) / candidate addresses (IAL)")
            ax.set_ylabel(ylabel)
        handles, labels = time_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
        return save_figure(fig, out_dir, stem, "cost_vs_size")

    return draw()


def write(points: list[Point], spec: ScaleSpec, out_dir: Path) -> list[Path]:
    """scale.json (every point and the spec), scale.md and the figure, each written whole or not at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("scale.json", json.dumps({"spec": dataclasses.asdict(spec),
                                                  "points": [dataclasses.asdict(p) for p in points]}, indent=1)),
                       ("scale.md", markdown(points, spec))):
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    return written + plot(points, out_dir)


def load(path: Path) -> tuple[list[Point], ScaleSpec]:
    """The points and spec of a scale.json that `write` saved; a malformed file is one clear error."""
    try:
        saved = json.loads(Path(path).read_text())
        return [Point(**p) for p in saved["points"]], ScaleSpec(**saved["spec"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchmarkError(f"{path}: not a scale.json that `python -m benchmark scale` wrote ({e}); run it "
                             "again or remove the file") from None


def check(spec: ScaleSpec) -> None:
    """Every name and option of the spec checked before anything is measured."""
    index_options("ivfpq", spec.index_options)
    if spec.method:
        retrieval_class(spec.method)
