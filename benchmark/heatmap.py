"""Address heat maps (the AddressCLIP paper's Fig. 6): the cosine similarity of every database image's embedding
to an address text's embedding, drawn at the images' places over the city's street map.

The text can be a whole sub-street, a street key or a neighbourhood (any text the method's text tower takes).
The sub-streets the text names are drawn bold, so a reader sees whether the hot area lies on the right street.
Methods come from the registry by name (family "ial" only); nothing here imports a concrete method.
"""

from __future__ import annotations

import hashlib
import logging
import re
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from benchmark.address import Address, AddressParseError, normalize, parse_address
from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.geocoder import StreetMap
from benchmark.images import map_images
from benchmark.method import Method
from benchmark.plots import _figure, _themed, location_shares, save_figure
from benchmark.protocol import PRESETS, resolve_protocol
from benchmark.registry import METHODS
from benchmark.runner import RunSpec, make_method, plan_method, resolve_device

log = logging.getLogger("benchmark")

HEAT_CMAP = "viridis"  # perceptually uniform, colour-blind safe
STREET_GREY = "#c4c4c4"
MATCH_COLOUR = "#f2a7a7"  # opaque (overlapping segment caps would darken a translucent band)
BEST_EDGE = "#111111"
MAX_SLUG = 60


@dataclass
class HeatMapSpec:
    """Everything a `heatmap` invocation decides."""

    addresses: list[str]
    protocol: str
    method: tuple[str, dict[str, str]] = ("addressclip", {})
    preset: str = "default"
    data_root: Path | None = None
    device: str = "auto"
    seed: int = 0
    out: Path = Path("reports/heatmaps")
    batch_size: int = 32
    progress: bool = True


def check_texts(texts: Sequence[str]) -> list[str]:
    """The address texts, normalised (NFC, whitespace collapsed); none given or an empty one is one clear error."""
    clean = [normalize(t) for t in texts]
    if not clean or not all(clean):
        raise BenchmarkError('--address is empty; give the text to map, e.g. --address "Aleksanterinkatu, Keskusta"')
    return clean


def slug(text: str) -> str:
    """A file-name-safe form of a text: ASCII lower case words joined by '-' (a hash where nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    if not words:
        return f"address-{digest}"
    return words if len(words) <= MAX_SLUG else f"{words[:MAX_SLUG].rstrip('-')}-{digest}"


def file_names(texts: Sequence[str]) -> list[str]:
    """One distinct slug per text (a short hash added where two texts share a slug)."""
    slugs = [slug(t) for t in texts]
    return [s if slugs.count(s) == 1 else f"{s}-{hashlib.sha256(t.encode()).hexdigest()[:8]}"
            for s, t in zip(slugs, texts)]


def ial_methods() -> list[str]:
    """The registered methods of family 'ial' (imports every method module: for error messages only)."""
    return [name for name in METHODS.names() if getattr(METHODS.get(name), "family", None) == "ial"]


def _needs_ial(message: str) -> BenchmarkError:
    return BenchmarkError(f"{message}; the heat map needs an IAL method (family 'ial'): "
                          f"--method {' | '.join(ial_methods())}")


def ial_method_class(name: str, given: dict[str, str], preset: str) -> tuple[type[Method], Any]:
    """The method class and options for `--method name:key=value,...`; one clear error unless it is an IAL method."""
    try:
        cls, options, _ = plan_method(name, given, preset)
    except BenchmarkError as e:
        if not METHODS.entries().get(name):
            raise _needs_ial(str(e)) from None
        raise
    if cls.family != "ial":
        raise _needs_ial(f"method {name!r} is a {cls.family} method")
    check_fixed_texts(cls)
    return cls, options


def database_features(method: Method, dataset: Dataset, batch_size: int, progress: bool) -> torch.Tensor:
    """Normalised embeddings [N, D] (CPU, float32) of every database image, as the method's `predict` makes them."""
    with torch.inference_mode():
        return map_images(dataset.paths("database"), method.preprocess, batch_size,
                          lambda images: method.embed_images(images).cpu(),  # type: ignore[attr-defined]
                          f"{method.name}: encoding database images", progress)


def check_fixed_texts(method: Method | type[Method]) -> None:
    """One clear error for a method whose text embeddings depend on the image (CoCoOp): no one map per text."""
    if method.image_conditioned_texts():  # type: ignore[union-attr]
        raise BenchmarkError(f"method {method.name!r} conditions every text on the image, so a text has no one "
                             "embedding to map; use another IAL method (e.g. --method addressclip)")


def similarities(method: Method, image_features: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
    """Cosine similarity [T, N] of each text's embedding to every image embedding (both the method's own)."""
    check_fixed_texts(method)
    text_features = method.encode_texts(list(texts)).cpu()  # type: ignore[attr-defined]
    return (text_features @ image_features.float().T).numpy()


def _parsed(address: str) -> Address | None:
    try:
        return parse_address(address)
    except AddressParseError:
        return None


READINGS: tuple[tuple[str, Callable[[str, Address | None, str], bool]], ...] = (
    ("the sub-street itself", lambda a, p, t: a == t),
    ("the {n} sub-streets of this street", lambda a, p, t: p is not None and p.street_key == t),
    ("the {n} sub-streets of streets so named", lambda a, p, t: p is not None and p.main_street == t),
    ("the {n} sub-streets in this neighbourhood", lambda a, p, t: p is not None and p.neighbourhood == t),
    ("the {n} sub-streets whose address contains the text", lambda a, p, t: t.casefold() in a.casefold()),
)


def matching_streets(text: str, addresses: Sequence[str]) -> tuple[list[str], str]:
    """The sub-streets a text names, in its most specific reading (the sub-street itself, then every sub-street of
    that street key, main street or neighbourhood, then those whose address contains it) and that reading in
    words; ([], '') when none matches."""
    t = normalize(text)
    parsed = [(normalize(a), _parsed(normalize(a))) for a in addresses]
    for words, matches in READINGS:
        hits = sorted({a for a, p in parsed if matches(a, p, t)})
        if hits:
            return hits, words.format(n=len(hits)).replace("the 1 sub-streets", "the one sub-street")
    return [], ""


def method_label(name: str, given: dict[str, str], preset: str, seed: int) -> str:
    """'addressclip:steps=2 (smoke preset, seed 0)': the method as the command line named it."""
    options = ",".join(f"{k}={v}" for k, v in given.items())
    return f"{name}{':' + options if options else ''} ({preset} preset, seed {seed})"


@_themed
def draw_heat_map(text: str, label: str, utm: np.ndarray, similarity: np.ndarray, streets: StreetMap | None,
                  out_dir: Path, method: str, name: str) -> list[Path]:
    """Draw one text's heat map (places coloured by mean similarity of their views, matching streets bold) as
    `<method>-<name>.png` and `.svg` in out_dir; returns the two paths."""
    fig, (ax,) = _figure(1, 5.6, 5.8)
    handles = []
    if streets is not None:
        segments = np.stack([streets.segment_start, streets.segment_end], axis=1) / 1000.0
        ax.add_collection(LineCollection(segments, colors=STREET_GREY, linewidths=0.9, zorder=1))
        matched, reading = matching_streets(text, streets.names)
        if matched:
            ids = [streets.names.index(a) for a in matched]
            hit = np.isin(streets.segment_address, ids)
            ax.add_collection(LineCollection(segments[hit], colors=MATCH_COLOUR, linewidths=5.0,
                                             capstyle="round", zorder=2))
            handles.append(Line2D([], [], color=MATCH_COLOUR, linewidth=5.0, label=f"named by the text: {reading}"))
        else:
            handles.append(Line2D([], [], color=STREET_GREY, linewidth=0.9,
                                  label="no sub-street on the map matches the text"))
    positions, counts, mean = location_shares(utm, similarity)
    order = np.argsort(mean, kind="stable")  # the hottest places drawn last, on top
    xy = positions[order] / 1000.0
    points = ax.scatter(xy[:, 0], xy[:, 1], c=mean[order], cmap=HEAT_CMAP, s=16, linewidths=0.3,
                        edgecolors="white", zorder=3)
    ax.scatter(xy[-1:, 0], xy[-1:, 1], marker="*", s=150, facecolors="none", edgecolors=BEST_EDGE,
               linewidths=1.0, zorder=4)
    handles += [Line2D([], [], marker="o", linestyle="none", markersize=5, markerfacecolor=points.cmap(0.6),
                       markeredgecolor="white", label="a database place: mean over its views"),
                Line2D([], [], marker="*", linestyle="none", markersize=10, markerfacecolor="none",
                       markeredgecolor=BEST_EDGE, label="the most similar place")]
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("UTM east (km)")
    ax.set_ylabel("UTM north (km)")
    ax.grid(False)
    ax.legend(handles=handles, loc="best", framealpha=0.85)
    fig.colorbar(points, ax=ax, location="bottom", shrink=0.7, aspect=35, label="cosine similarity")
    ax.set_title(f"{textwrap.fill(text, 70)}\n{label}, {len(utm)} database images at {len(positions)} places",
                 fontsize=8)
    return save_figure(fig, out_dir, method, name)


def heat_maps(spec: HeatMapSpec) -> list[Path]:
    """Prepare (train or load) the method, encode the database images and each text, and draw one heat map per
    text; returns the files written (PNG and SVG per text). Every input is checked before anything is built."""
    texts = check_texts(spec.addresses)
    if spec.preset not in PRESETS:
        raise BenchmarkError(f"--preset {spec.preset!r}: choose one of {', '.join(PRESETS)}")
    if spec.batch_size < 1:
        raise BenchmarkError("--batch-size must be at least 1")
    name, given = spec.method
    cls, options = ial_method_class(name, given, spec.preset)
    protocol = resolve_protocol(spec.protocol)
    device = resolve_device(spec.device)
    dataset = protocol.open(spec.data_root, spec.preset, spec.progress)
    if len(dataset.splits["database"]) == 0:
        raise BenchmarkError(f"{dataset.name}: the database split is empty; there are no images to map")
    run_spec = RunSpec(protocol=spec.protocol, methods=[spec.method], preset=spec.preset, data_root=spec.data_root,
                       device=spec.device, seed=spec.seed, batch_size=spec.batch_size, progress=spec.progress)
    method, _ = make_method(cls, options, dataset, run_spec, device)
    method.prepare(dataset.for_methods())
    scores = similarities(method, database_features(method, dataset, spec.batch_size, spec.progress), texts)
    streets = None
    if dataset.street_map is not None:
        streets = StreetMap.from_geojson(dataset.street_map)
    else:
        log.info("%s: no street map (streets.geojson) in %s; the heat maps show the places only",
                 dataset.name, dataset.root)
    label = method_label(name, given, spec.preset, spec.seed)
    utm = dataset.utm("database")
    written = []
    for text, file, row in zip(texts, file_names(texts), scores):
        written += draw_heat_map(text, label, utm, row, streets, spec.out, cls.name, file)
    return written
