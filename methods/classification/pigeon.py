"""PIGEON (Haas et al., CVPR 2024) at city scale: classify the photo into a semantic geocell (trained with
haversine label smoothing), refine to the training location whose mean embedding is nearest within the top-K
cells, then reverse-geocode the coordinates to k distinct sub-streets with the shared geocoders.

At query time it needs the classifier, the cell table and one mean embedding per training location (no image
database), so it sits between IAL (a candidate matrix) and retrieval (an index of every database image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.address import parse_address
from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.images import map_images
from benchmark.measure import StageClock
from benchmark.method import Footprint, Prediction, QueryBatch
from methods.classification.base import ClassifierMethod, ClassifierOptions
from methods.classification.geocells import Geocells, build_geocells
from methods.classification.smoothing import smoothed_cross_entropy, smoothed_targets, utm_to_latlon
from methods.retrieval import geocode_ranked, make_geocoder
from methods.training.trunks import KOTKA_START
from protocols.vpr_names import parse_vpr_name

SMOKE = {"steps": 4, "batch": 4, "image_h": 48, "image_w": 64, "cells_min": 2, "cells_max": 4}
# From the Kotka trunk like every ResNet-18 method of the CPU default; 600 steps of 32 images.
DEFAULT = {**KOTKA_START, "steps": 600, "batch": 32, "lr": 3e-4}
# PIGEON's published encoder: OpenAI CLIP ViT-L/14 at 336 px (init= its weights file), tokens mean-pooled, every
# block but the last frozen, AdamW at 2e-5 without a schedule (PIGEON: batch 256 x 4 GPUs, best epoch kept on a
# validation split the IAL protocols do not have, so a fixed 30 epochs). Meant for GPUs.
PAPER = {"backbone": "clip:ViT-L-14-336-quickgelu", "image_h": 336, "image_w": 336, "frozen": 23,
         "pretrained": True, "augment": 0.0, "steps": 0, "epochs": 30, "batch": 256, "lr": 2e-5,
         "optimizer": "adamw", "schedule": "constant"}
REFINE = ("clusters", "none")


@dataclass(frozen=True)
class PigeonOptions(ClassifierOptions):
    """Geocell granularity, label smoothing, refinement and geocoding."""

    cells_min: int = 10  # training locations per geocell, at least (smaller cells merge into a neighbour)
    cells_max: int = 25  # and at most (larger ones are split by OPTICS, then halved)
    margin_m: float = 50.0  # the cells' area: the training locations' convex hull grown by this much
    # Haversine smoothing temperature in metres (PIGEON: 75 km over the planet). Swept on helsinki v2 (seed 0,
    # cells 10-25, SSA@1): tau 25 m 30.37, 50 m 38.71 [36.6, 41.0], 100 m 30.81, 200 m 24.29.
    tau: float = 50.0
    utm_zone: str = "auto"  # auto (from the SF-XL image names, e.g. '@35@V@') | e.g. 17N, 35N, 56S
    top_cells: int = 5  # cells whose location clusters refinement searches
    refine: str = "clusters"  # clusters (nearest location mean embedding) | none (the top cell's centroid)
    geocoder: str = "gazetteer"  # gazetteer | streetmap | streetnames, as for retrieval
    map: str = ""  # geocoder=streetnames on a dataset without a map: a local OpenStreetMap .osm.pbf


def parse_zone(text: str) -> tuple[int, bool]:
    """'35N' / '56S' / '17' -> (zone, south)."""
    text = text.strip().upper()
    south = text.endswith("S")
    digits = text.rstrip("NS")
    if not digits.isdigit() or not 1 <= int(digits) <= 60:
        raise BenchmarkError(f"pigeon: utm_zone={text!r}; give the UTM zone of the dataset, e.g. utm_zone=17N")
    return int(digits), south


def dataset_zone(dataset: Dataset, option: str) -> tuple[int, bool]:
    """The UTM zone of the dataset: the option, or the zone field of its SF-XL image names."""
    if option != "auto":
        return parse_zone(option)
    zones = set()
    for image in dataset.splits["train"].image:
        try:
            zone = parse_vpr_name(str(image)).utm_zone
        except ValueError:
            zone = None
        if zone is None:
            raise BenchmarkError(f"pigeon: image name {image!r} carries no UTM zone; pass utm_zone= (e.g. "
                                 "pigeon:utm_zone=17N for Pittsburgh)")
        zones.add(zone)
    if len(zones) != 1:
        raise BenchmarkError(f"pigeon: the training images name several UTM zones {sorted(zones)}; pass utm_zone=")
    return zones.pop()


class Pigeon(ClassifierMethod):
    """Geocell classification -> location-cluster refinement -> reverse geocoding."""

    name = "pigeon"
    Options: ClassVar[type] = PigeonOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "default": DEFAULT, "paper": PAPER}
    PIPELINE_OPTIONS = frozenset({"top_cells", "refine", "geocoder", "map"})

    def targets(self, dataset: Dataset) -> tuple[int, torch.Tensor]:
        """Geocells of the training split and each training image's haversine-smoothed target row."""
        o = self.options
        if o.refine not in REFINE:
            raise BenchmarkError(f"pigeon: refine={o.refine!r}; use {' or '.join(REFINE)}")
        if o.top_cells < 1:
            raise BenchmarkError("pigeon: top_cells must be at least 1")
        zone, south = dataset_zone(dataset, o.utm_zone)
        table = dataset.splits["train"]
        utm = dataset.utm("train")
        hoods = [parse_address(a).neighbourhood for a in table.address]
        self.cells: Geocells = build_geocells(utm, hoods, o.cells_min, o.cells_max, o.margin_m)
        positions = utm_to_latlon(utm, zone, south)
        centroids = utm_to_latlon(self.cells.centroids, zone, south)
        rows = smoothed_targets(centroids, positions, self.cells.image_cell, o.tau)
        return len(self.cells), torch.from_numpy(rows)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """PIGEON's smoothed cross-entropy."""
        return smoothed_cross_entropy(logits, targets)

    def index(self, dataset: Dataset) -> None:
        """The geocoder, and the mean embedding of every training location (the location clusters)."""
        self.geocoder = make_geocoder(dataset, self.options.geocoder, self.options.map)
        self.location_means = None
        if self.options.refine == "none":
            return
        with torch.inference_mode():
            embedded = map_images(dataset.paths("train"), self.preprocess, self.ctx.batch_size,
                                  lambda images: self.model.embed(images.to(self.ctx.device)).float().cpu(),
                                  f"{self.name}: embedding training locations", self.ctx.progress, shard=True)
        loc = torch.from_numpy(self.cells.image_location)
        sums = torch.zeros(len(self.cells.locations), embedded.shape[1]).index_add_(0, loc, embedded)
        self.location_means = F.normalize(sums, dim=-1).to(self.ctx.device)
        self.location_cell = torch.from_numpy(self.cells.location_cell).to(self.ctx.device)

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Top cells by probability; refined to the nearest location cluster in them (or their centroids)."""
        top = min(self.options.top_cells, len(self.cells))
        with torch.inference_mode():
            with clock.stage("encode"):
                features = self.model.features(batch.images.to(self.ctx.device))
                probs = self.model.head(features).float().softmax(dim=-1)
                embedded = F.normalize(features.float(), dim=-1)
            with clock.stage("search"):
                cell_p, cells = probs.topk(top, dim=-1)
                ranked = [self._rank(e, c, p) for e, c, p in zip(embedded, cells, cell_p)]
        with clock.stage("geocode"):
            out = []
            for coords, scores in ranked:
                topk, s = geocode_ranked(self.geocoder, coords, scores, k)
                out.append(Prediction(topk, s, (float(coords[0, 0]), float(coords[0, 1]))))
            return out

    def _rank(self, embedded: torch.Tensor, cells: torch.Tensor, probs: torch.Tensor
              ) -> tuple[np.ndarray, list[float]]:
        """Ranked coordinates with scores: locations of the top cells by similarity, or the cells' centroids."""
        if self.location_means is None:
            return self.cells.centroids[cells.cpu().numpy()], probs.cpu().tolist()
        candidates = torch.isin(self.location_cell, cells).nonzero().flatten()
        similarity = self.location_means[candidates] @ embedded
        order = similarity.argsort(descending=True, stable=True)
        chosen = candidates[order].cpu().numpy()
        return self.cells.locations[chosen], similarity[order].cpu().tolist()

    def footprint(self) -> Footprint:
        """Classifier weights; the cell table (centroids, location coordinates and cells) and the location
        means; the geocoder's map."""
        cells = searched = self.cells.centroids.nbytes
        if self.location_means is not None:
            means = self.location_means.numel() * self.location_means.element_size()
            cells += self.cells.locations.nbytes + self.cells.location_cell.nbytes + means
            searched += means
        base = super().footprint()
        return Footprint(model=base.model, database=cells, map=self.geocoder.nbytes, search=base.search + searched)
