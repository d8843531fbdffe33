"""Paper-style Markdown tables from result files: accuracy (Table 2), cost (Table 5), localization."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.results import LoadedRun, RunResult, TrainingInfo, load_results

MB = 1024 * 1024


def run_label(run: RunResult | LoadedRun) -> str:
    """A row label: the method name plus the options given on the command line, e.g. `gem (geocoder=streetmap)`."""
    method = (run.result if isinstance(run, LoadedRun) else run).method
    given = method.overrides
    changed = [f"{k}={v}" for k, v in sorted(given.items()) if k != "weights"]
    if given.get("weights"):
        changed.append(f"weights={Path(given['weights']).name}")
    return f"{method.name} ({', '.join(changed)})" if changed else method.name


def protocol_label(run: RunResult) -> str:
    """The protocol with the options given on the command line, e.g. `helsinki:queries=shifted`."""
    given = run.protocol.overrides
    return run.protocol.name + (":" + ",".join(f"{k}={v}" for k, v in sorted(given.items())) if given else "")


def current_runs(runs: Sequence[LoadedRun]) -> dict[tuple[str, str], list[LoadedRun]]:
    """Per (protocol variant, preset): the newest run of each method variant and seed on the newest data version.

    Runs on an older data hash of the same protocol variant and preset are stale (the data changed) and
    left out.
    """
    groups: dict[tuple[str, str], list[LoadedRun]] = {}
    for run in runs:
        groups.setdefault((protocol_label(run.result), run.result.protocol.preset), []).append(run)
    out = {}
    for key, members in groups.items():
        data_hash = max(members, key=lambda r: r.result.created).result.protocol.data_hash
        latest: dict[str, LoadedRun] = {}
        fresh = (r for r in members if r.result.protocol.data_hash == data_hash)
        for run in sorted(fresh, key=lambda r: r.result.created):
            label = f"{run_label(run)}\0{run.result.seed}"
            latest.pop(label, None)
            latest[label] = run
        out[key] = list(latest.values())
    return out


def _with_ci(run: RunResult, key: str) -> str:
    value = run.metrics.get(key)
    if value is None:
        return "–"
    ci = run.ci95.get(key)
    return f"{value:.2f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{value:.2f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def accuracy_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Table 2: SSA-1, SSA-5, SA-1, SA-5 per method (percent, with 95 % bootstrap intervals)."""
    rows = [{"Method": run_label(r), "SSA-1": _with_ci(r, "ssa@1"), "SSA-5": _with_ci(r, "ssa@5"),
             "SA-1": _with_ci(r, "sa@1"), "SA-5": _with_ci(r, "sa@5")} for r in runs]
    return pd.DataFrame(rows, columns=["Method", "SSA-1", "SSA-5", "SA-1", "SA-5"])


def cost_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Table 5: storage, inference (encode) and retrieval (search + geocode) latency, peak memory."""
    rows = []
    for r in runs:
        cost = r.cost
        lat = cost.latency_ms
        memory = cost.peak_rss_bytes if cost.peak_cuda_bytes is None else cost.peak_cuda_bytes
        row = {
            "Method": run_label(r),
            "Storage (MB)": _num(cost.storage_bytes.total / MB, 3),
            "Inference (ms)": _num(lat["encode"].median, 3),
            "Retrieval (ms)": _num(lat["search"].median + lat["geocode"].median, 3),
            "Memory (MB)": _num(memory / MB, 1),
            "Throughput (q/s)": _num(cost.throughput_qps, 1),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def training_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """The training budget of every trained method: backbone and its start, input size, optimiser steps,
    images through the model and wall time (of the run that trained it, when it came from the cache)."""
    rows = []
    for r in runs:
        t: TrainingInfo | None = r.training
        if t is None:
            continue
        seconds = _num(t.wall_seconds, 0) + (" (cached)" if t.cached else "")
        rows.append({"Method": run_label(r), "Backbone": t.backbone or "–",
                     "Input": "×".join(map(str, t.input_size)) if t.input_size else "–",
                     "Steps": "–" if t.steps is None else f"{t.steps:,}",
                     "Images seen": "–" if t.images_seen is None else f"{t.images_seen:,}",
                     "Training (s)": seconds, "Seed": str(t.seed)})
    return pd.DataFrame(rows)


def localization_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """Recall@1/5/10 (25 m) and localization error, for methods that predict coordinates."""
    rows = []
    for r in runs:
        m = r.metrics
        if m.get("median_error_m") is None and m.get("recall@1") is None:
            continue
        rows.append({"Method": run_label(r), "R@1": _with_ci(r, "recall@1"), "R@5": _with_ci(r, "recall@5"),
                     "R@10": _with_ci(r, "recall@10"), "Median error (m)": _num(m.get("median_error_m"), 1),
                     "≤25 m": _num(m.get("within_25m"), 1), "≤100 m": _num(m.get("within_100m"), 1)})
    return pd.DataFrame(rows)


def by_method(runs: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    """The runs of each method variant, lowest seed first; variants in registry order (references, IAL,
    retrieval), then by label."""
    from benchmark.registry import METHODS

    order = {name: i for i, name in enumerate(METHODS.names())}
    out: dict[str, list[RunResult]] = {}
    for run in runs:
        out.setdefault(run_label(run), []).append(run)
    ranked = sorted(out, key=lambda label: (order.get(out[label][0].method.name, len(order)), label))
    return {label: sorted(out[label], key=lambda r: r.seed) for label in ranked}


def _mean_sd(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def seed_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """SSA-1 and SA-1 of every seed of the methods run with more than one, with mean ± sd across seeds
    (the seed spread, beside the bootstrap interval's query spread)."""
    rows = []
    for label, members in by_method(runs).items():
        if len(members) < 2:
            continue
        ssa = [r.metrics["ssa@1"] for r in members]
        sa = [r.metrics["sa@1"] for r in members]
        rows.append({"Method": label, "Seeds": ", ".join(str(r.seed) for r in members),
                     "SSA-1 per seed": " / ".join(f"{v:.2f}" for v in ssa), "SSA-1 mean ± sd": _mean_sd(ssa),
                     "SA-1 mean ± sd": _mean_sd(sa),
                     "Widest 95 % interval (SSA-1)": f"±{max((r.ci95['ssa@1'][1] - r.ci95['ssa@1'][0]) / 2 for r in members if r.ci95.get('ssa@1')):.2f}"})
    return pd.DataFrame(rows)


def render_protocol(protocol: str, all_runs: Sequence[RunResult]) -> str:
    """The Markdown report of one protocol and preset (main tables: each method's lowest seed)."""
    runs = [members[0] for members in by_method(all_runs).values()]
    first = runs[0].protocol
    parts = [
        f"## {protocol}{' (robustness variant)' if first.overrides else ''} (v{first.version}, preset "
        f"{first.preset}, {first.n_queries} queries, "
        f"{first.n_candidates} candidate sub-streets, data {first.data_hash[:12]})",
        "",
        "### Accuracy (Table 2 style; percent, 95 % bootstrap interval)",
        "",
        accuracy_table(runs).to_markdown(index=False, disable_numparse=True),
        "",
        "### Cost (Table 5 style; latency = median single-query ms)",
        "",
        cost_table(runs).to_markdown(index=False, disable_numparse=True),
    ]
    loc = localization_table(runs)
    if len(loc):
        parts += ["", "### Localization (Recall@N at 25 m)", "", loc.to_markdown(index=False, disable_numparse=True)]
    budget = training_table(runs)
    if len(budget):
        parts += ["", "### Training budget (backbone, input, optimiser steps, images through the model, seconds)", "",
                  budget.to_markdown(index=False, disable_numparse=True)]
    seeds = seed_table(all_runs)
    if len(seeds):
        parts += ["", "### Seed spread (percent; the tables above show each method's lowest seed)", "",
                  seeds.to_markdown(index=False, disable_numparse=True)]
    return "\n".join(parts) + "\n"


def write_report(results_dir: Path, out_dir: Path, protocol: str | None = None) -> tuple[str, list[Path]]:
    """Render each protocol's (and preset's) tables from its newest runs; write one .md each and return the text."""
    groups = current_runs(load_results(results_dir))
    if protocol is not None:
        groups = {k: v for k, v in groups.items() if k[0].split(":")[0] == protocol}
    if not groups:
        raise BenchmarkError(f"no result.json under {results_dir}"
                             + (f" for protocol {protocol}" if protocol else "")
                             + "; run `python -m benchmark run` first or pass --results DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    texts, written = [], []
    for (name, preset), runs in groups.items():
        text = render_protocol(name, [run.result for run in runs])
        stem = name.replace(":", "_").replace(",", "_").replace("=", "-")
        path = out_dir / (f"{stem}.md" if preset == "default" else f"{stem}-{preset}.md")
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        texts.append(text)
        written.append(path)
    return "\n".join(texts), written
