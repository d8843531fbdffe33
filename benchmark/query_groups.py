"""Query groups against their own protocols: each group of a run (e.g. one city of the `joint` protocol) beside
the same method variant run on that group's protocol alone — the AddressCLIP paper's claim that joint training
on two cities costs < 0.8 points."""

from __future__ import annotations

import numpy as np

from benchmark.options import spec_slug
from benchmark.results import PREDICTIONS_FILE, LoadedRun
from benchmark.tables import Cell, Table

N_BOOT = 1000


def top1_hits(run: LoadedRun) -> dict[str, bool] | None:
    """Per query image: whether its first prediction is its sub-street (None when predictions are not kept)."""
    if not (run.folder / PREDICTIONS_FILE).is_file():
        return None
    return {r["image"]: bool(r["topk"]) and r["topk"][0] == r["address"] for r in run.predictions()}


def paired_difference(joint: dict[str, bool], alone: dict[str, bool], prefix: str, n_boot: int = N_BOOT,
                      seed: int = 0) -> tuple[float, float] | None:
    """95 % paired bootstrap interval of SSA@1 (points) jointly minus alone over the queries both scored (a joint
    image is `<prefix>/<image>`); None when they share no query."""
    shared = [image for image in alone if f"{prefix}/{image}" in joint]
    if not shared:
        return None
    a = np.array([joint[f"{prefix}/{image}"] for image in shared], float)
    b = np.array([alone[image] for image in shared], float)
    idx = np.random.default_rng(seed).integers(0, len(shared), size=(n_boot, len(shared)))
    diff = 100 * (a[idx].mean(axis=1) - b[idx].mean(axis=1))
    return float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))


def groups_table(label: str, runs: list[LoadedRun], alone: dict[str, list[LoadedRun]]) -> Table | None:
    """Per method variant of a grouped protocol: each group's SSA-1 jointly and alone (the group's own protocol,
    same preset, same variant) and their difference with a paired bootstrap interval; None without groups."""
    from benchmark.report import lowest_seed

    lowest = lowest_seed([run for run in runs if run.result.query_groups])
    if not lowest:
        return None
    names = list(dict.fromkeys(g for run in lowest.values() for g in run.result.query_groups))
    rows = []
    for method, run in lowest.items():
        cells = []
        joint_hits = None
        for name in names:
            group = run.result.query_groups.get(name)
            mine = lowest_seed(alone.get(name, [])).get(method)
            cells.append(Cell(None) if group is None else
                         Cell(group.metrics["ssa@1"], ci=group.ci95.get("ssa@1"), digits=2))
            cells.append(Cell(None) if mine is None else
                         Cell(mine.result.metrics["ssa@1"], ci=mine.result.ci95.get("ssa@1"), digits=2))
            if group is None or mine is None:
                cells.append(Cell(None))
                continue
            joint_hits = top1_hits(run) if joint_hits is None else joint_hits
            alone_hits = top1_hits(mine)
            ci = None if joint_hits is None or alone_hits is None else \
                paired_difference(joint_hits, alone_hits, spec_slug(name))
            cells.append(Cell(group.metrics["ssa@1"] - mine.result.metrics["ssa@1"], ci=ci, digits=2))
        rows.append((method, cells))
    columns = [f"{name} {part}" for name in names for part in ("jointly", "alone", "Δ")]
    return Table("groups", f"{label}: each group's queries, trained jointly against alone (SSA-1, percent)",
                 columns, rows, better={},
                 notes=["'jointly': the group's queries in this protocol's run (one model, every group's candidates); "
                        "'alone': the same method variant and seed-0 run on the group's own protocol; Δ = jointly "
                        "− alone in points, its interval a paired bootstrap over the same queries (none where a "
                        "run's predictions are not kept). The paper's claim: Δ > −0.8."])
