"""The report's figures, drawn only from result files (result.json, predictions.jsonl, the training loss log)
and the dataset's street map (`<protocol.root>/streets.geojson`).

Figures: accuracy against cost (with the Pareto front), SSA@k and SA@k for k = 1..K, SSA@1 against the query's
distance to the nearest junction, maps of the queries each family's best run gets right and wrong, Recall@N and
training loss curves. Each is written as PNG (150 dpi) and SVG, byte-identical when rebuilt from the same
results (fixed SVG hash salt, no dates or software versions in the metadata). Figures are drawn on
`matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so importing this module leaves the
caller's backend and open figures alone. Every family has one colour, and every method variant one colour and
marker, in all figures; the figure background is white, so they read on light and dark pages alike.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox
from scipy.spatial import cKDTree

from benchmark.errors import BenchmarkError
from benchmark.metrics import POSITIVE_RADIUS_M, sa_hits, ssa_hits
from benchmark.report import MB, by_method, run_label
from benchmark.results import FAMILIES, LoadedRun
from protocols.vpr_names import has_utm_name, parse_vpr_name

log = logging.getLogger("benchmark")

# Colour-blind safe (seaborn "colorblind"); mid-tones that read on white and dark pages.
FAMILY_COLOURS: dict[str, str] = {"reference": "#949494", "ial": "#0173B2", "retrieval": "#DE8F05",
                                  "classification": "#029E73"}
FAMILY_NAMES: dict[str, str] = {"reference": "reference", "ial": "IAL", "retrieval": "retrieval + geocoding",
                                "classification": "classification"}
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.")
SHARE_CMAP = "RdYlGn"  # red: every query at the place wrong, green: every one right
STREETS_FILE = "streets.geojson"
JUNCTION_BINS_M: tuple[float, ...] = (0.0, 10.0, 20.0, 40.0, math.inf)
JUNCTION_TOLERANCE_M = 1.0
MAX_K = 10
COST_FLOOR = 1e-3  # MB or ms: a zero cost is drawn here on the log axes (and the axis label says so)
LATENCY_STAGES: tuple[str, ...] = ("encode", "search", "geocode")
DPI = 150
METADATA: dict[str, dict[str, None]] = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}

F = TypeVar("F", bound=Callable[..., Any])


# ---------------------------------------------------------------------------------------------------------------
# Drawing and saving.


def _theme() -> dict[str, Any]:
    """rcParams of every figure: seaborn's white grid, paper sizes, a white background, a fixed SVG salt."""
    return {**sns.axes_style("whitegrid"), **sns.plotting_context("paper"), "figure.facecolor": "white",
            "savefig.facecolor": "white", "axes.facecolor": "white", "svg.hashsalt": "ialbench",
            "legend.fontsize": 7, "legend.title_fontsize": 7}


def _themed(draw: F) -> F:
    """Run a figure function under the theme (rcParams are read both when drawing and when saving)."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(_theme()):
            return draw(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _figure(ncols: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    """A figure with an Agg canvas (no pyplot) and a row of `ncols` axes."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def save_figure(fig: Figure, out_dir: Path, stem: str, name: str) -> list[Path]:
    """Write `<stem>-<name>.png` and `.svg` atomically (deterministic bytes) and release the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, metadata in METADATA.items():
        path = out_dir / f"{stem}-{name}.{ext}"
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=ext, dpi=DPI, metadata=metadata)
        tmp.replace(path)
        paths.append(path)
    fig.clear()
    return paths


def _spread_labels(fig: Figure, labels: Sequence[Annotation], pad_px: float = 1.0,
                   marker_pt: float = 3.5) -> None:
    """Turn labels near an axes' right edge to the left of their point, then move labels down until none
    overlaps another label or a labelled point; a moved label shows its leader line."""
    fig.draw_without_rendering()  # the layout first, so that positions are final
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    radius = marker_pt * px_per_pt
    points = [label.axes.transData.transform(label.xy) for label in labels]
    placed = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in points]
    for label in labels:
        ax = label.axes
        anchor = ax.transAxes.inverted().transform(ax.transData.transform(label.xy))
        if anchor[0] > 0.7:
            label.set_horizontalalignment("right")
            label.xyann = (-abs(label.xyann[0]), label.xyann[1])

    def box(label: Annotation) -> Bbox:
        label.update_positions(renderer)
        return Text.get_window_extent(label, renderer)

    for label in sorted(labels, key=lambda a: (-box(a).y1, box(a).x0)):
        for _ in range(200):
            hit = next((b for b in placed if box(label).overlaps(b)), None)
            if hit is None:
                break
            dx, dy = label.xyann
            label.xyann = (dx, dy - (box(label).y1 - hit.y0 + pad_px) / px_per_pt)
            if label.arrow_patch is not None:
                label.arrow_patch.set_visible(True)
        placed.append(box(label))


def _label_points(ax: Axes, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str]) -> list[Annotation]:
    """A small label beside each point (leader line hidden until the label is moved)."""
    labels = []
    for x, y, text in zip(xs, ys, texts):
        label = ax.annotate(text, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=6.5,
                            va="bottom", ha="left", annotation_clip=False,
                            arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.5, "shrinkA": 0,
                                        "shrinkB": 2})
        label.arrow_patch.set_visible(False)
        labels.append(label)
    return labels


# ---------------------------------------------------------------------------------------------------------------
# Runs and their per-query predictions.


def runs_by_method(runs: Sequence[LoadedRun]) -> dict[str, list[LoadedRun]]:
    """`report.by_method` for loaded runs: each method variant's runs, lowest seed first, in report order."""
    loaded = {id(run.result): run for run in runs}
    return {label: [loaded[id(r)] for r in members] for label, members in by_method([r.result for r in runs]).items()}


def main_runs(runs: Sequence[LoadedRun]) -> list[LoadedRun]:
    """Each method variant's lowest-seed run, in the report's order (references, IAL, retrieval)."""
    return [members[0] for members in runs_by_method(runs).values()]


def _family(run: LoadedRun) -> str:
    return run.result.method.family


@dataclass(frozen=True)
class Style:
    """How one method variant is drawn: its family's colour, and a marker and line style of its own."""

    colour: str
    marker: str
    linestyle: str

    def line(self) -> dict[str, Any]:
        """Keyword arguments of `Axes.plot` / `Axes.errorbar`."""
        return {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle, "markersize": 4,
                "linewidth": 1.2}


def styles(runs: Sequence[LoadedRun]) -> dict[str, Style]:
    """A style per run label: the family colour, then markers and line styles in turn within the family."""
    out: dict[str, Style] = {}
    seen: dict[str, int] = {}
    for run in main_runs(runs):
        family = _family(run)
        i = seen.get(family, 0)
        seen[family] = i + 1
        out[run_label(run)] = Style(FAMILY_COLOURS.get(family, "#000000"), MARKERS[i % len(MARKERS)],
                                    LINESTYLES[i % len(LINESTYLES)])
    return out


@dataclass(frozen=True)
class Queries:
    """A run's per-query predictions: true address, ranked predictions and the query's true UTM position
    (from its '@east@north@...' image name; NaN where the name does not carry it)."""

    truth: list[str]
    topk: list[list[str]]
    true_utm: np.ndarray  # (n, 2) east, north


def true_position(image: Any) -> tuple[float, float]:
    """The query's true UTM (east, north) from its image name, or NaNs when the name does not carry it.

    (The row's own "utm" is the method's predicted position, not the truth.)
    """
    if isinstance(image, str) and has_utm_name(image):
        try:
            name = parse_vpr_name(image)
        except ValueError:
            return math.nan, math.nan
        return name.utm_east, name.utm_north
    return math.nan, math.nan


def read_queries(run: LoadedRun) -> Queries | None:
    """The run's predictions.jsonl rows that have an address and a top-k list; None (logged) when unreadable."""
    try:
        rows = [row for row in run.predictions()
                if isinstance(row.get("address"), str) and isinstance(row.get("topk"), list)]
    except BenchmarkError as e:
        log.warning("plots: %s (run left out of the per-query figures)", e)
        return None
    if not rows:
        return None
    return Queries(truth=[row["address"] for row in rows], topk=[list(row["topk"]) for row in rows],
                   true_utm=np.array([true_position(row.get("image")) for row in rows], np.float64).reshape(-1, 2))


def _legend_below(fig: Figure, handles: Sequence[Any], ncols: int = 4) -> None:
    if handles:
        fig.legend(handles=list(handles), loc="outside lower center", ncols=min(ncols, len(handles)),
                   frameon=False)


def _method_handles(labels: Sequence[str], style: dict[str, Style]) -> list[Line2D]:
    return [Line2D([], [], label=label, **style[label].line()) for label in labels]


def _family_handles(families: Sequence[str]) -> list[Line2D]:
    return [Line2D([], [], color=FAMILY_COLOURS.get(f, "#000000"), marker="o", linestyle="none",
                   label=FAMILY_NAMES.get(f, f)) for f in FAMILIES if f in families]


# ---------------------------------------------------------------------------------------------------------------
# 1. Accuracy against cost.


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (as accurate or more for no more cost), by rising cost.

    Of identical points only the first is kept.
    """
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -accuracy[i], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def storage_mb(run: LoadedRun) -> float:
    """Storage needed at inference (model + database + map), MB."""
    return run.result.cost.storage_bytes.total / MB


def query_latency_ms(run: LoadedRun) -> float:
    """Single-query latency: the sum of the encode, search and geocode stage medians, ms."""
    latency = run.result.cost.latency_ms
    return float(sum(latency[stage].median for stage in LATENCY_STAGES if stage in latency))


def _ci_error(runs: Sequence[LoadedRun], key: str, values: Sequence[float]) -> np.ndarray:
    """(2, n) lower/upper error-bar lengths from each run's ci95 (0 where it has none)."""
    err = np.zeros((2, len(runs)))
    for i, (run, value) in enumerate(zip(runs, values)):
        ci = run.result.ci95.get(key)
        if ci is not None:
            err[:, i] = max(0.0, value - ci[0]), max(0.0, ci[1] - value)
    return err


def _cost_panel(ax: Axes, runs: Sequence[LoadedRun], cost: Sequence[float], axis: str,
                unit: str) -> list[Annotation]:
    """SSA@1 (with its 95 % interval) against one cost on a log axis, with the Pareto front of the compared
    methods (references, e.g. the GPS oracle, are bounds, not contenders) and point labels."""
    accuracy = [float(run.result.metrics["ssa@1"]) for run in runs]
    clipped = any(c < COST_FLOOR for c in cost)
    x = [max(c, COST_FLOOR) for c in cost]
    err = _ci_error(runs, "ssa@1", accuracy)
    for i, run in enumerate(runs):
        ax.errorbar([x[i]], [accuracy[i]], yerr=err[:, i:i + 1], fmt="o", markersize=5, capsize=2,
                    elinewidth=0.8, color=FAMILY_COLOURS.get(_family(run), "#000000"), zorder=3)
    compared = [i for i, run in enumerate(runs) if _family(run) != "reference"]
    front = [compared[i] for i in pareto_front([x[i] for i in compared], [accuracy[i] for i in compared])]
    ax.step([x[i] for i in front], [accuracy[i] for i in front], where="post", color="0.2", linewidth=1,
            linestyle="--", zorder=2)
    ax.scatter([x[i] for i in front], [accuracy[i] for i in front], s=110, facecolors="none", edgecolors="0.2",
               linewidths=1, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel(f"{axis} ({unit}, log{f'; 0 drawn at {COST_FLOOR:g}' if clipped else ''})")
    ax.set_ylabel("SSA@1 (%)")
    return _label_points(ax, x, accuracy, [run_label(run) for run in runs])


@_themed
def accuracy_vs_cost(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """SSA@1 against storage and against single-query latency, with 95 % intervals and the Pareto front."""
    runs = [run for run in main_runs(runs) if run.result.metrics.get("ssa@1") is not None]
    if not runs:
        return []
    fig, (storage_ax, latency_ax) = _figure(2, 5.5, 4.6)
    labels = _cost_panel(storage_ax, runs, [storage_mb(run) for run in runs], "Storage at inference", "MB")
    labels += _cost_panel(latency_ax, runs, [query_latency_ms(run) for run in runs],
                          "Single-query latency: encode + search + geocode", "ms")
    front = Line2D([], [], color="0.2", linestyle="--", marker="o", markerfacecolor="none", markersize=8,
                   label="Pareto front (more accurate, cheaper; references left out)")
    _legend_below(fig, [*_family_handles({_family(run) for run in runs}), front], ncols=5)
    fig.suptitle("Accuracy against cost (error bars: 95 % bootstrap interval)")
    _spread_labels(fig, labels)
    return save_figure(fig, out_dir, stem, "accuracy_vs_cost")


# ---------------------------------------------------------------------------------------------------------------
# 2. Accuracy at k.


def accuracy_at_ks(queries: Queries, max_k: int = MAX_K) -> pd.DataFrame:
    """SSA@k and SA@k (%) for k = 1..K, K the longest top-k list of the run (at most `max_k`)."""
    depth = min(max_k, max(len(t) for t in queries.topk))
    return pd.DataFrame([{"k": k, "ssa": ssa_hits(queries.topk, queries.truth, k).mean() * 100.0,
                          "sa": sa_hits(queries.topk, queries.truth, k).mean() * 100.0}
                         for k in range(1, depth + 1)])


@_themed
def accuracy_at_k(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """SSA@k and SA@k for k = 1..K (K: the predictions' top-k length, at most 10), one line per method."""
    style = styles(runs)
    curves = {}
    for run in main_runs(runs):
        queries = read_queries(run)
        if queries is not None:
            curves[run_label(run)] = accuracy_at_ks(queries)
    if not curves:
        return []
    fig, axes = _figure(2, 4.6, 4.2)
    for ax, column, name in zip(axes, ("ssa", "sa"), ("SSA@k: sub-street", "SA@k: street")):
        for label, table in curves.items():
            ax.plot(table["k"], table[column], **style[label].line())
        ax.set_xticks(range(1, max(int(t["k"].max()) for t in curves.values()) + 1))
        ax.set_xlabel("k (predictions considered)")
        ax.set_ylabel(f"{name.split(':')[0]} (%)")
        ax.set_title(name)
    _legend_below(fig, _method_handles(list(curves), style))
    return save_figure(fig, out_dir, stem, "accuracy_at_k")


# ---------------------------------------------------------------------------------------------------------------
# 3. Accuracy against the distance to the nearest junction.


def dataset_root(run: LoadedRun) -> Path:
    """The run's dataset folder: as recorded, else the folder of the same name in this machine's cache (a
    generated dataset's folder name carries its version and options, so the name is the same dataset)."""
    recorded = Path(run.result.protocol.root)
    if recorded.is_dir():
        return recorded
    from benchmark.protocol import cache_root

    cached = cache_root() / "data" / recorded.name
    return cached if cached.is_dir() else recorded


def load_streets(root: Path) -> list[list[np.ndarray]] | None:
    """The UTM parts ((n, 2) arrays) of every sub-street in `<root>/streets.geojson`; None if there is no map."""
    path = Path(root) / STREETS_FILE
    if not path.is_file():
        return None
    try:
        features = json.loads(path.read_text(encoding="utf-8")).get("features", [])
    except (json.JSONDecodeError, AttributeError, OSError) as e:
        log.warning("plots: %s unreadable (%s); figures that need the street map are left out", path, e)
        return None
    streets = []
    for feature in features:
        parts = ((feature.get("properties") or {}).get("utm_coordinates") if isinstance(feature, dict) else None)
        if isinstance(parts, list):
            arrays = [np.asarray(part, np.float64).reshape(-1, 2) for part in parts
                      if isinstance(part, list) and part]
            streets.append([a for a in arrays if len(a)])
    return streets


def junctions(streets: Sequence[Sequence[np.ndarray]], tolerance: float = JUNCTION_TOLERANCE_M) -> np.ndarray:
    """Junctions (n, 2): end points of sub-street parts that another sub-street shares within `tolerance` m;
    every end point when no two sub-streets share one."""
    ends, owner = [], []
    for i, parts in enumerate(streets):
        for part in parts:
            ends += [part[0], part[-1]]
            owner += [i, i]
    if not ends:
        return np.empty((0, 2))
    points, owner_ids = np.asarray(ends, np.float64), np.asarray(owner)
    pairs = cKDTree(points).query_pairs(tolerance, output_type="ndarray")
    shared = pairs[owner_ids[pairs[:, 0]] != owner_ids[pairs[:, 1]]] if len(pairs) else pairs
    return points[np.unique(shared)] if len(shared) else points


def junction_distances(points: np.ndarray, junction_points: np.ndarray) -> np.ndarray:
    """Each point's distance (m) to the nearest junction; NaN where the point (or every junction) is unknown."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    out = np.full(len(points), np.nan)
    known = np.isfinite(points).all(axis=1)
    if known.any() and len(junction_points):
        out[known] = cKDTree(junction_points).query(points[known])[0]
    return out


def distance_bins(distances: np.ndarray, edges: Sequence[float] = JUNCTION_BINS_M) -> np.ndarray:
    """Each distance's bin i (edges[i] <= d < edges[i + 1]); -1 for NaN or outside the edges."""
    d = np.asarray(distances, np.float64)
    index = np.searchsorted(np.asarray(edges, np.float64), d, side="right") - 1
    index[~np.isfinite(d) | (index < 0) | (index >= len(edges) - 1)] = -1
    return index


def bin_names(edges: Sequence[float] = JUNCTION_BINS_M) -> list[str]:
    """Names of the distance bins, e.g. '0–10 m' and '≥40 m'."""
    return [f"≥{lo:g} m" if math.isinf(hi) else f"{lo:g}–{hi:g} m" for lo, hi in zip(edges[:-1], edges[1:])]


def junction_table(runs: Sequence[LoadedRun], edges: Sequence[float] = JUNCTION_BINS_M) -> pd.DataFrame:
    """SSA@1 (%) of each method per bin of the query's distance to the nearest junction (method, bin, n, ssa@1)."""
    columns = ["method", "bin", "n", "ssa@1"]
    maps: dict[str, np.ndarray | None] = {}
    rows = []
    for run in main_runs(runs):
        root = dataset_root(run)
        if root not in maps:
            streets = load_streets(Path(root))
            maps[root] = None if streets is None else junctions(streets)
        queries = read_queries(run) if maps[root] is not None and len(maps[root]) else None
        if queries is None:
            continue
        bins = distance_bins(junction_distances(queries.true_utm, maps[root]), edges)
        hits = ssa_hits(queries.topk, queries.truth, 1)
        for i, name in enumerate(bin_names(edges)):
            inside = bins == i
            rows.append({"method": run_label(run), "bin": name, "n": int(inside.sum()),
                         "ssa@1": float(hits[inside].mean() * 100.0) if inside.any() else math.nan})
    return pd.DataFrame(rows, columns=columns)


def _count_text(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"n={low}" if low == high else f"n={low}–{high}"


@_themed
def accuracy_vs_junction_distance(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots",
                                  edges: Sequence[float] = JUNCTION_BINS_M) -> tuple[list[Path], pd.DataFrame]:
    """SSA@1 per bin of the query's distance to the nearest junction (from streets.geojson), one line per
    method; returns the figure's paths and its numbers (method, bin, n, ssa@1)."""
    table = junction_table(runs, edges)
    if table["n"].sum() == 0:
        return [], table
    style = styles(runs)
    names = bin_names(edges)
    fig, (ax,) = _figure(1, 6.0, 4.4)
    for label, rows in table.groupby("method", sort=False):
        ax.plot(range(len(names)), rows["ssa@1"].to_numpy(), **style[label].line())
    counts = table.groupby("bin", sort=False)["n"]
    ax.set_xticks(range(len(names)), [f"{name}\n({_count_text(counts.get_group(name))})" for name in names])
    ax.set_xlabel("query's distance to the nearest junction")
    ax.set_ylabel("SSA@1 (%)")
    ax.set_title("Sub-street accuracy near and far from junctions")
    _legend_below(fig, _method_handles(list(dict.fromkeys(table["method"])), style), ncols=3)
    return save_figure(fig, out_dir, stem, "accuracy_vs_junction_distance"), table


# ---------------------------------------------------------------------------------------------------------------
# 4. Maps of right and wrong queries.


def best_per_family(runs: Sequence[LoadedRun], families: Sequence[str] = ("ial", "retrieval", "classification")) -> list[LoadedRun]:
    """The run with the highest SSA@1 of each family (seeds included; the first in report order on ties)."""
    ordered = [run for members in runs_by_method(runs).values() for run in members]
    best = []
    for family in families:
        members = [run for run in ordered if _family(run) == family and run.result.metrics.get("ssa@1") is not None]
        if members:
            best.append(max(members, key=lambda run: run.result.metrics["ssa@1"]))
    return best


def _draw_streets(ax: Axes, streets: Sequence[Sequence[np.ndarray]]) -> None:
    palette = sns.color_palette("muted", 8)
    segments = [part / 1000.0 for parts in streets for part in parts if len(part) > 1]
    colours = [palette[i % len(palette)] for i, parts in enumerate(streets) for part in parts if len(part) > 1]
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=1.2, alpha=0.45, zorder=1))


def location_shares(true_utm: np.ndarray, right: np.ndarray, precision_m: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries grouped by true position (rounded to `precision_m`): positions [m, 2], query counts [m] and the
    share of them that are right [m], in position order (no share is drawn on top of another by design)."""
    keys = np.round(true_utm / precision_m).astype(np.int64)
    unique, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    shares = np.bincount(inverse, weights=right.astype(np.float64), minlength=len(unique)) / counts
    positions = np.zeros((len(unique), 2))
    np.add.at(positions, inverse, true_utm)
    positions /= counts[:, None]
    order = np.lexsort((positions[:, 1], positions[:, 0]))
    return positions[order], counts[order], shares[order]


def _map_panel(ax: Axes, run: LoadedRun, queries: Queries, streets: Sequence[Sequence[np.ndarray]] | None) -> Any:
    if streets:
        _draw_streets(ax, streets)
    known = np.isfinite(queries.true_utm).all(axis=1)
    right = ssa_hits(queries.topk, queries.truth, 1)[known]
    positions, counts, shares = location_shares(queries.true_utm[known], right)
    points = ax.scatter(positions[:, 0] / 1000.0, positions[:, 1] / 1000.0, s=2.0 + 1.5 * counts, c=shares,
                        cmap=SHARE_CMAP, vmin=0.0, vmax=1.0, linewidths=0, zorder=2)
    ax.set_aspect("equal", adjustable="datalim")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("UTM east (km)")
    ax.set_ylabel("UTM north (km)")
    ax.set_title(f"{FAMILY_NAMES.get(_family(run), _family(run))}: {run_label(run)}, seed {run.result.seed}\n"
                 f"SSA@1 {run.result.metrics['ssa@1']:.1f} % ({int(right.sum())} right, "
                 f"{int((~right).sum())} wrong, {len(positions)} places)", fontsize=8)
    ax.grid(False)
    return points


@_themed
def query_map(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """The sub-street map with every query marked right or wrong (SSA@1), for the best run of each family."""
    readable = {id(run): queries for run in runs if (queries := read_queries(run)) is not None
                and np.isfinite(queries.true_utm).all(axis=1).any()}
    panels = [(run, readable[id(run)]) for run in best_per_family([r for r in runs if id(r) in readable])]
    if not panels:
        return []
    fig, axes = _figure(len(panels), 5.2, 5.4)
    points = [_map_panel(ax, run, queries, load_streets(dataset_root(run)))
              for ax, (run, queries) in zip(axes, panels)]
    fig.colorbar(points[-1], ax=axes, location="bottom", shrink=0.5, aspect=40,
                 label="share of the queries at a place that SSA@1 gets right (dot size: how many queries)")
    fig.suptitle("Where each family's best run gets the sub-street right, over the sub-streets")
    return save_figure(fig, out_dir, stem, "query_map")


GEOCELL_METHODS = frozenset({"pigeon"})
MAX_GEOCELL_PANELS = 3


def draw_geocells(ax: Any, cells: Any, scale: float = 1.0) -> None:
    """Fill every geocell's area in its own colour (white borders) and mark the centroids (x); UTM / scale."""
    colours = matplotlib.colormaps["tab20"].colors
    for i, area in enumerate(cells.areas):
        for polygon in getattr(area, "geoms", [area]):
            x, y = (np.asarray(v) / scale for v in polygon.exterior.xy)
            ax.fill(x, y, color=colours[i % len(colours)], alpha=0.35, linewidth=0, zorder=0)
            ax.plot(x, y, color="white", linewidth=0.6, zorder=1)
    ax.scatter(cells.centroids[:, 0] / scale, cells.centroids[:, 1] / scale, s=14, marker="x", color="black",
               linewidths=0.8, zorder=3)


def run_geocells(run: LoadedRun) -> Any:
    """A geocell run's cells, rebuilt from its dataset's training split with its recorded options (None when
    the dataset is not on this machine)."""
    from benchmark.address import parse_address
    from benchmark.protocol import resolve_protocol
    from methods.classification.geocells import build_geocells

    root = dataset_root(run)
    if not root.is_dir():
        return None
    try:
        dataset, _ = resolve_protocol(run.result.protocol.name).read(root)
    except BenchmarkError as e:
        log.warning("plots: %s (the geocell map is left out)", e)
        return None
    if dataset is None:
        return None
    o = run.result.method.options
    hoods = [parse_address(a).neighbourhood for a in dataset.splits["train"].address]
    return build_geocells(dataset.utm("train"), hoods, int(o.get("cells_min", 10)), int(o.get("cells_max", 25)),
                          float(o.get("margin_m", 50.0)))


@_themed
def geocell_map(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """The geocells of each granularity the geocell runs used, with the best such run's queries coloured by
    the share it gets right (SSA@1) at each place."""
    best: dict[tuple[Any, ...], LoadedRun] = {}
    queries_of = {}
    for run in main_runs(runs):
        o = run.result.method.options
        if run.result.method.name not in GEOCELL_METHODS or run.result.metrics.get("ssa@1") is None:
            continue
        if (queries_of.setdefault(id(run), read_queries(run))) is not None:
            key = (o.get("cells_min"), o.get("cells_max"), o.get("margin_m"))
            if key not in best or run.result.metrics["ssa@1"] > best[key].result.metrics["ssa@1"]:
                best[key] = run
    panels = []
    for run in list(best.values())[:MAX_GEOCELL_PANELS]:
        queries = queries_of[id(run)]
        cells = run_geocells(run)
        if cells is not None:
            panels.append((run, queries, cells))
    if not panels:
        return []
    fig, axes = _figure(len(panels), 5.2, 5.4)
    points = []
    for ax, (run, queries, cells) in zip(axes, panels):
        draw_geocells(ax, cells, 1000.0)
        known = np.isfinite(queries.true_utm).all(axis=1)
        right = ssa_hits(queries.topk, queries.truth, 1)[known]
        positions, counts, shares = location_shares(queries.true_utm[known], right)
        points.append(ax.scatter(positions[:, 0] / 1000.0, positions[:, 1] / 1000.0, s=3.0 + 1.5 * counts,
                                 c=shares, cmap=SHARE_CMAP, vmin=0.0, vmax=1.0, linewidths=0, zorder=2))
        o = run.result.method.options
        ax.set_aspect("equal", adjustable="datalim")
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.set_xlabel("UTM east (km)")
        ax.set_ylabel("UTM north (km)")
        ax.set_title(f"{run_label(run)}: {len(cells)} cells of {o.get('cells_min')}-{o.get('cells_max')} training "
                     f"locations\nSSA@1 {run.result.metrics['ssa@1']:.1f} %, seed {run.result.seed} (x: centroid)",
                     fontsize=8)
        ax.grid(False)
    fig.colorbar(points[-1], ax=axes, location="bottom", shrink=0.5, aspect=40,
                 label="share of the queries at a place that SSA@1 gets right")
    fig.suptitle("Geocells (from the training split), queries by share right")
    return save_figure(fig, out_dir, stem, "geocells")


# ---------------------------------------------------------------------------------------------------------------
# 5. Recall@N.

RECALL_NS: tuple[int, ...] = (1, 5, 10)


@_themed
def recall_curves(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """Recall@1/5/10 (positives within 25 m) with 95 % intervals, for the runs that retrieve images."""
    style = styles(runs)
    chosen = [run for run in main_runs(runs)
              if all(run.result.metrics.get(f"recall@{n}") is not None for n in RECALL_NS)]
    if not chosen:
        return []
    fig, (ax,) = _figure(1, 5.0, 4.2)
    for run in chosen:
        keys = [f"recall@{n}" for n in RECALL_NS]
        values = [float(run.result.metrics[key]) for key in keys]
        err = np.hstack([_ci_error([run], key, [value]) for key, value in zip(keys, values)])
        ax.errorbar(RECALL_NS, values, yerr=err, capsize=2, elinewidth=0.8, **style[run_label(run)].line())
    ax.set_xticks(RECALL_NS)
    ax.set_xlabel("N (database images retrieved)")
    ax.set_ylabel(f"Recall@N (%, a positive within {POSITIVE_RADIUS_M:g} m)")
    ax.set_title("Image retrieval: Recall@N (error bars: 95 % bootstrap interval)")
    _legend_below(fig, _method_handles([run_label(run) for run in chosen], style), ncols=3)
    return save_figure(fig, out_dir, stem, "recall_curves")


# ---------------------------------------------------------------------------------------------------------------
# 6. Training curves.


def loss_log_path(run: LoadedRun) -> Path | None:
    """The run's training loss log (relative paths taken from the run folder), or None if it has none on disk."""
    training = run.result.training
    if training is None or not training.loss_log:
        return None
    path = Path(training.loss_log)
    path = path if path.is_absolute() else run.folder / path
    return path if path.is_file() else None


def read_loss_log(path: Path) -> pd.DataFrame | None:
    """(step, total) per logged step of a JSONL loss log; lines without a numeric total are skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            total = row.get("total") if isinstance(row, dict) else None
            if isinstance(total, (int, float)) and not isinstance(total, bool) and math.isfinite(total):
                step = row.get("step")
                rows.append({"step": step if isinstance(step, (int, float)) else number, "total": float(total)})
    return pd.DataFrame(rows) if rows else None


def smooth(values: pd.Series, fraction: float = 0.05) -> pd.Series:
    """Trailing rolling mean over `fraction` of the steps (at least one)."""
    return values.rolling(max(1, round(len(values) * fraction)), min_periods=1).mean()


@_themed
def training_curves(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """The total training loss per optimiser step (raw, faint, and a rolling mean) of every trained method, one
    panel per family: their losses are on different scales (contrastive, metric, soft-target cross-entropy)."""
    style = styles(runs)
    logs: dict[str, dict[str, pd.DataFrame]] = {}
    for run in main_runs(runs):
        path = loss_log_path(run)
        table = None if path is None else read_loss_log(path)
        if table is not None:
            logs.setdefault(_family(run), {})[run_label(run)] = table
    if not logs:
        return []
    families = [f for f in FAMILIES if f in logs] + sorted(set(logs) - set(FAMILIES))
    fig, axes = _figure(len(families), 4.6, 4.0)
    for ax, family in zip(axes, families):
        for label, table in logs[family].items():
            line = style[label].line()
            ax.plot(table["step"], table["total"], color=line["color"], linewidth=0.5, alpha=0.25)
            ax.plot(table["step"], smooth(table["total"]), **{**line, "marker": None})
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("total training loss")
        ax.set_title(FAMILY_NAMES.get(family, family))
    fig.suptitle("Training loss (faint: per step; line: rolling mean over 5 % of the steps)")
    labels = [label for family in families for label in logs[family]]
    handles = [Line2D([], [], label=label, **{**style[label].line(), "marker": None}) for label in labels]
    _legend_below(fig, handles, ncols=4)
    return save_figure(fig, out_dir, stem, "training_curves")


# ---------------------------------------------------------------------------------------------------------------
# The backbone study (the paper's Fig. 5).


@_themed
def backbones(runs: Sequence[LoadedRun], out_dir: Path, stem: str = "plots") -> list[Path]:
    """SSA@1 (with its interval) of each image tower of an IAL method against its weights and its encode time."""
    from benchmark.report import backbone_groups, lowest_seed

    lowest = lowest_seed(runs)
    loaded = {id(run.result): run for run in lowest.values()}
    study = backbone_groups({label: [run.result] for label, run in lowest.items()})
    if not study:
        return []
    fig, axes = _figure(2, 5.0, 4.2)
    for name in dict.fromkeys(n for n, _ in study):
        members = [(model, loaded[id(results[0])]) for (n, model), results in study.items() if n == name]
        accuracy = [float(run.result.metrics["ssa@1"]) for _, run in members]
        err = _ci_error([run for _, run in members], "ssa@1", accuracy)
        costs = ([run.result.cost.storage_bytes.model / 2**20 for _, run in members],
                 [run.result.cost.latency_ms["encode"].median for _, run in members])
        for ax, cost in zip(axes, costs):
            ax.errorbar(cost, accuracy, yerr=err, marker="o", ms=5, capsize=3, label=name)
            for x, y, (model, _) in zip(cost, accuracy, members):
                ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes[0].set_xlabel("image tower weights (MB)")
    axes[1].set_xlabel("single-query encode (ms)")
    for ax in axes:
        ax.set_ylabel("SSA@1 (%)")
    axes[0].legend(loc="lower right")
    fig.suptitle("Backbones: accuracy against tower size and encode time (error bars: 95 % interval)")
    return save_figure(fig, out_dir, stem, "backbones")


# ---------------------------------------------------------------------------------------------------------------
# All of them.


def _junction_figure(runs: Sequence[LoadedRun], out_dir: Path, stem: str) -> list[Path]:
    return accuracy_vs_junction_distance(runs, out_dir, stem)[0]


FIGURES: dict[str, Callable[[Sequence[LoadedRun], Path, str], list[Path]]] = {
    "accuracy_vs_cost": accuracy_vs_cost,
    "accuracy_at_k": accuracy_at_k,
    "accuracy_vs_junction_distance": _junction_figure,
    "query_map": query_map,
    "geocells": geocell_map,
    "recall_curves": recall_curves,
    "training_curves": training_curves,
    "backbones": backbones,
}


def write_plots(runs: Sequence[LoadedRun], out_dir: Path, stem: str) -> dict[str, list[Path]]:
    """Every figure of one protocol's runs as `<out_dir>/<stem>-<figure>.png/.svg` (an empty list: nothing to draw)."""
    return {name: draw(runs, Path(out_dir), stem) for name, draw in FIGURES.items()}
