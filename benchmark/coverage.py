"""Coverage: SSA@1 of methods trained and indexed on a share of the locations (`<protocol>:coverage=F`), the
AddressCLIP paper's claim that 12.5 % of the locations keep about 75 % of the performance, as a table and a
curve. The share's 100 % point is the base protocol's own run of the same method variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.results import PREDICTIONS_FILE, LoadedRun
from benchmark.tables import Cell, Table

KEY = "coverage"
N_BOOT = 1000


def split_coverage(groups: dict[tuple[str, str], list[LoadedRun]]
                   ) -> tuple[dict[tuple[str, str], list[LoadedRun]], dict[tuple[str, str], dict[float, list[LoadedRun]]]]:
    """(the groups without a coverage option, {(base protocol label, preset): {share: runs}}); a base group
    with coverage variants also gives their share 1."""
    rest, curves = {}, {}
    for (label, preset), runs in groups.items():
        given = runs[0].result.protocol.overrides
        if KEY not in given:
            rest[(label, preset)] = runs
            continue
        others = {k: v for k, v in given.items() if k != KEY}
        base = runs[0].result.protocol.name + (":" + ",".join(f"{k}={v}" for k, v in sorted(others.items()))
                                               if others else "")
        curves.setdefault((base, preset), {})[float(given[KEY])] = runs
    for key, shares in curves.items():
        if key in rest:
            shares[1.0] = rest[key]
    return rest, {k: dict(sorted(v.items())) for k, v in curves.items()}


def _top1_hits(run: LoadedRun) -> tuple[list[str], np.ndarray] | None:
    """The query images and whether each one's first prediction is its sub-street (None without predictions)."""
    if not (run.folder / PREDICTIONS_FILE).is_file():  # a showcase keeps result.json only: no interval then
        return None
    rows = list(run.predictions())
    return [r["image"] for r in rows], np.array([bool(r["topk"]) and r["topk"][0] == r["address"] for r in rows])


def kept_share(part: LoadedRun, whole: LoadedRun, n_boot: int = N_BOOT, seed: int = 0
               ) -> tuple[float, tuple[float, float] | None]:
    """SSA@1 at a share over SSA@1 on everything, with a paired bootstrap interval over the same queries
    (None when either run has no predictions or they scored different queries)."""
    ratio = part.result.metrics["ssa@1"] / whole.result.metrics["ssa@1"]
    a, b = _top1_hits(part), _top1_hits(whole)
    if a is None or b is None or a[0] != b[0]:
        return ratio, None
    idx = np.random.default_rng(seed).integers(0, len(a[1]), size=(n_boot, len(a[1])))
    num, den = a[1][idx].mean(axis=1), b[1][idx].mean(axis=1)
    draws = num[den > 0] / den[den > 0]
    return ratio, (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))


def _thinned(per_share: dict[float, dict[str, LoadedRun]]) -> list[str]:
    """The method variants run at some share below 100 % (the base protocol's other runs stay out)."""
    return list(dict.fromkeys(label for share, runs in per_share.items() if share < 1 for label in runs))


def coverage_table(base: str, shares: dict[float, list[LoadedRun]]) -> Table:
    """SSA@1 [95 % CI] of every method variant at every share, and the share of its full SSA@1 kept at the
    smallest share (paired bootstrap interval over queries)."""
    from benchmark.report import lowest_seed  # the report imports this module

    per_share = {share: lowest_seed(runs) for share, runs in shares.items()}
    labels = _thinned(per_share)
    smallest = min(shares)
    rows = []
    for label in labels:
        cells = []
        for share in shares:
            run = per_share[share].get(label)
            cells.append(Cell(None) if run is None else
                          Cell(run.result.metrics["ssa@1"], ci=run.result.ci95.get("ssa@1"), digits=2))
        part, whole = per_share[smallest].get(label), per_share.get(1.0, {}).get(label)
        if part is None or whole is None or smallest == 1.0 or not whole.result.metrics["ssa@1"]:
            cells.append(Cell(None))
        else:
            ratio, ci = kept_share(part, whole)
            cells.append(Cell(100 * ratio, ci=None if ci is None else (100 * ci[0], 100 * ci[1]), digits=1))
        rows.append((label, cells))
    columns = [f"{share * 100:g} %" for share in shares] + [f"Kept at {smallest * 100:g} % (%)"]
    notes = ["Training and database locations thinned alike (one seeded draw, nested: a smaller share keeps a "
             "subset of a larger one's); the queries and the candidate set stay whole. SSA-1 in percent with its "
             "95 % bootstrap interval; 'Kept' is SSA-1 at the smallest share over SSA-1 at 100 %, in percent, its interval "
             "a paired bootstrap over queries (none where a run's predictions are not kept). The paper's claim: "
             "about 75 % kept at 12.5 %."]
    return Table("coverage", f"Coverage on {base}: SSA-1 against the share of training and database locations",
                 columns, rows, better={}, notes=notes)


def plot_coverage(base: str, shares: dict[float, list[LoadedRun]], out_dir: Path, stem: str) -> list[Path]:
    """SSA@1 (with its interval) against the share of locations, one line per method variant (log2 x axis)."""
    from benchmark.plots import _figure, _themed, save_figure
    from benchmark.report import lowest_seed

    @_themed
    def draw() -> list[Path]:
        per_share = {share: lowest_seed(runs) for share, runs in shares.items()}
        labels = _thinned(per_share)
        fig, (ax,) = _figure(width=5.6, height=4.2)
        for label in labels:
            xs, ys, lo, hi = [], [], [], []
            for share, runs in per_share.items():
                if label in runs:
                    result = runs[label].result
                    ci = result.ci95.get("ssa@1") or (result.metrics["ssa@1"],) * 2
                    xs.append(share * 100)
                    ys.append(result.metrics["ssa@1"])
                    lo.append(result.metrics["ssa@1"] - ci[0])
                    hi.append(ci[1] - result.metrics["ssa@1"])
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=4, capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks([s * 100 for s in shares], [f"{s * 100:g} %" for s in shares])
        ax.set_xlabel("share of training and database locations")
        ax.set_ylabel("SSA@1 (%)")
        ax.set_title(f"Coverage on {base}")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
        return save_figure(fig, out_dir, stem, "coverage")

    return draw()
