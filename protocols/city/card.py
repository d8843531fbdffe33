"""The dataset card: counts, area, per-split table, a map of the sub-street partition and a contact sheet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.spatial import ConvexHull  # noqa: E402

from benchmark.address import AddressBook  # noqa: E402
from benchmark.dataset import SPLITS, Dataset, count_locations  # noqa: E402

PNG_META = {"Software": None}


def split_table(dataset: Dataset) -> pd.DataFrame:
    """Images, locations, sub-streets and streets per split."""
    rows = []
    for split in SPLITS:
        t = dataset.splits[split]
        book = AddressBook(t.address)
        rows.append({"split": split, "images": len(t), "locations": count_locations(t),
                     "sub-streets": len(book), "streets": len(book.streets)})
    return pd.DataFrame(rows)


def area_km2(dataset: Dataset) -> float:
    """Area of the convex hull of every capture location, in km²."""
    points = np.concatenate([dataset.utm(s) for s in SPLITS])
    return float(ConvexHull(points).volume / 1e6)


def plot_partition(geojson: Path, out: Path, title: str) -> None:
    """Sub-streets coloured one by one (like AddressCLIP's Fig. 4), from the street-map GeoJSON."""
    features = json.loads(geojson.read_text(encoding="utf-8"))["features"]
    colours = plt.get_cmap("tab20").colors
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    for i, feature in enumerate(features):
        geometry = feature["geometry"]
        parts = geometry["coordinates"] if geometry["type"] == "MultiLineString" else [geometry["coordinates"]]
        for part in parts:
            xy = np.asarray(part)
            ax.plot(xy[:, 0], xy[:, 1], color=colours[i % len(colours)], linewidth=2.2, solid_capstyle="round")
    ax.set_aspect(1.0 / np.cos(np.deg2rad(np.mean(ax.get_ylim()))))
    ax.set_title(title)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(out, metadata=PNG_META)
    plt.close(fig)


def plot_geocells(dataset: Dataset, out: Path, title: str, min_locations: int = 10, max_locations: int = 25) -> int:
    """pigeon's semantic geocells at its default granularity over the training locations; returns the count."""
    from benchmark.address import parse_address
    from benchmark.plots import draw_geocells
    from methods.classification.geocells import build_geocells

    table = dataset.splits["train"]
    cells = build_geocells(dataset.utm("train"), [parse_address(a).neighbourhood for a in table.address],
                           min_locations, max_locations)
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    draw_geocells(ax, cells)
    ax.scatter(cells.locations[:, 0], cells.locations[:, 1], s=1.5, color="black", linewidths=0, zorder=2)
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_title(f"{title}: {len(cells)} geocells ({min_locations}-{max_locations} training locations each; "
                 "x = centroid)", fontsize=9)
    ax.set_xlabel("UTM east (m)")
    ax.set_ylabel("UTM north (m)")
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(out, metadata=PNG_META)
    plt.close(fig)
    return len(cells)


def contact_sheet(dataset: Dataset, out: Path, pairs: int = 8, seed: int = 0) -> None:
    """Query views (right) beside the nearest database view with the same heading (left)."""
    queries, database = dataset.splits["queries"], dataset.splits["database"]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(queries), size=min(pairs, len(queries)), replace=False))
    db_utm, q_utm = dataset.utm("database"), dataset.utm("queries")
    fig, axes = plt.subplots(len(chosen), 2, figsize=(6.4, 2.4 * len(chosen)), dpi=100, squeeze=False)
    db_heading = database.heading.to_numpy(np.float64)  # None (no heading known) becomes NaN
    q_heading = queries.heading.to_numpy(np.float64)
    for row, qi in enumerate(chosen):
        # the closest database view in place and direction (queries are jittered, so no exact match)
        dist = np.hypot(*(db_utm - q_utm[qi]).T)
        turn = np.abs((db_heading - q_heading[qi] + 180.0) % 360.0 - 180.0)
        turn = np.nan_to_num(turn, nan=0.0)  # photos without a heading: by place alone
        di = int(np.argmin(dist + 0.5 * turn))
        dist = float(dist[di])
        for col, (table, index, label) in enumerate(((database, di, f"database ({dist:.0f} m away)"),
                                                      (queries, qi, "query"))):
            ax = axes[row, col]
            ax.imshow(Image.open(dataset.images_root / table.image.iloc[index]).convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            if col:
                ax.set_title(label, fontsize=7, loc="right")
            else:
                ax.set_title(f"{label}\n{queries.address.iloc[qi][:70]}", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(out, metadata=PNG_META)
    plt.close(fig)


def write_card(dataset: Dataset, geojson: Path, out_dir: Path, title: str, source: str,
               notes: Sequence[str] = ()) -> Path:
    """Write CARD.md with partition_map.png and contact_sheet.png into out_dir (and `notes`, Markdown lines,
    at the end); return the card's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_partition(geojson, out_dir / "partition_map.png", f"{title}: sub-streets")
    contact_sheet(dataset, out_dir / "contact_sheet.png")
    n_cells = plot_geocells(dataset, out_dir / "geocells.png", title)
    counts = dataset.counts()
    lines = [
        f"# Dataset card: {title}",
        "",
        source,
        "",
        f"- protocol `{dataset.name}` version {dataset.version}, data hash `{dataset.data_hash}`",
        f"- {counts['images']} images at {counts['locations']} capture locations, covering "
        f"{area_km2(dataset):.2f} km² (convex hull of the locations)",
        f"- {counts['sub_streets']} sub-streets on {counts['streets']} streets in {counts['neighbourhoods']} "
        f"neighbourhoods; {counts['sub_streets_candidates']} candidate sub-streets (train ∪ database)",
        f"- {len(dataset.dropped_queries)} queries dropped because their address is not a candidate",
        "",
        "## Splits (location-disjoint)",
        "",
        split_table(dataset).to_markdown(index=False, disable_numparse=True),
        "",
        "## Sub-street partition",
        "",
        "![partition](partition_map.png)",
        "",
        f"## Geocells ({n_cells}, as `pigeon` builds them from the training split: cells_min=10, cells_max=25)",
        "",
        "![geocells](geocells.png)",
        "",
        "## Database vs. query views",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
        *notes,
    ]
    card = out_dir / "CARD.md"
    card.write_text("\n".join(lines), encoding="utf-8")
    return card
