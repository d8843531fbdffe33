"""Training recipes on the shared fit loop: tuples with faiss hard-negative mining (NetVLAD triplet, SARE,
GeM), CosFace over CosPlace groups, and MultiSimilarity with its miner over places (MixVPR, SALAD).

Each recipe is a batch generator (which rows train together) and a TrainStep (the loss of one batch); the
loop in methods.training.loop does the rest. Recipes read the methods' own options (methods.vpr.options)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from benchmark.errors import BenchmarkError
from methods.training.augment import Photometric
from methods.training.loop import TrainLog, TrainStep, fit
from methods.vpr.groups import cosplace_groups, eigenplaces_groups, places, positives_and_far
from methods.vpr.losses import BatchLossName, Convention, MarginCosineProduct, batch_loss, multisimilarity
from methods.vpr.options import CosPlaceOptions, EigenPlacesOptions, PlaceOptions, TupleOptions

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def to_uint8(image: Image.Image, height: int, width: int) -> Tensor:
    """Resize (bilinear) to height x width; uint8 [3, H, W]."""
    array = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def normalise(batch: Tensor) -> Tensor:
    """uint8 [B, 3, H, W] -> float, ImageNet mean/std normalised (what every upstream backbone expects)."""
    return (batch.float() / 255.0 - MEAN) / STD


def preprocess(image: Image.Image, height: int, width: int) -> Tensor:
    """One decoded image -> the normalised [3, H, W] float tensor a ResNet trunk takes."""
    return normalise(to_uint8(image, height, width)[None])[0]


@dataclass
class TrainSplit:
    """The training split held in memory: resized uint8 images, UTM coordinates, headings."""

    images: Tensor
    utm: np.ndarray
    heading: np.ndarray
    augment: Photometric | None = None
    cached: bool = False  # `images` holds the trunk's cached frozen-stage output (methods/training/frozen.py)

    def batch(self, idx: np.ndarray | list[int], train: bool = False) -> Tensor:
        """Normalised float images of the given rows (photometrically augmented for training steps), or their
        cached frozen-stage features."""
        images = self.images[torch.as_tensor(np.asarray(idx, np.int64))]
        if self.cached:
            return images
        if train and self.augment is not None:
            images = self.augment(images)
        return normalise(images)


@torch.no_grad()
def encode_rows(model: nn.Module, data: TrainSplit, rows: np.ndarray, batch_size: int, device: torch.device
                ) -> np.ndarray:
    """Descriptors [len(rows), D] in eval mode (for mining)."""
    model.eval()
    out = [model(data.batch(rows[i:i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(rows), batch_size)]
    return torch.cat(out).numpy()


def mine(model: nn.Module, data: TrainSplit, o: TupleOptions, positives: list[np.ndarray],
         rng: np.random.Generator, batch_size: int, device: torch.device) -> list[np.ndarray]:
    """One cache refresh (dvgl 'partial' mining): tuples [query, positive, negative_1..N] of row indices.

    Queries and a random negative pool are encoded; each query gets its nearest positive (in descriptor space,
    within positive_m) and its hardest negatives (faiss L2 search over the pool, only images beyond negative_m).
    """
    usable = np.array([i for i, p in enumerate(positives) if len(p)], np.int64)
    if len(usable) == 0:
        raise BenchmarkError(f"no training image has another within {o.positive_m} m; nothing to mine")
    queries = rng.choice(usable, min(o.cache_queries, len(usable)), replace=False)
    pool = rng.choice(len(data.utm), min(o.cache_negatives, len(data.utm)), replace=False)
    pos = {int(q): rng.choice(positives[q], min(o.max_positives, len(positives[q])), replace=False) for q in queries}
    rows = np.unique(np.concatenate([queries, pool, *pos.values()]))
    where = {int(r): i for i, r in enumerate(rows)}
    desc = encode_rows(model, data, rows, batch_size, device)
    index = faiss.IndexFlatL2(desc.shape[1])
    index.add(np.ascontiguousarray(desc[[where[int(p)] for p in pool]]))
    _, nearest = index.search(np.ascontiguousarray(desc[[where[int(q)] for q in queries]]), len(pool))
    tuples = []
    for q, ranked in zip(queries.tolist(), nearest):
        candidates = pos[q]
        d_pos = ((desc[[where[int(p)] for p in candidates]] - desc[where[q]]) ** 2).sum(1)
        best = int(candidates[int(np.argmin(d_pos))])
        ranked_rows = pool[ranked]
        far = np.linalg.norm(data.utm[ranked_rows] - data.utm[q], axis=1) > o.negative_m
        hard = ranked_rows[far][:o.negatives]
        if len(hard) == o.negatives:
            tuples.append(np.concatenate([[q, best], hard]).astype(np.int64))
    return tuples


def tuple_batches(model: nn.Module, data: TrainSplit, o: TupleOptions, rng: np.random.Generator,
                  device: torch.device) -> Iterator[tuple[Tensor]]:
    """Batches of `o.batch` mined tuples (images flattened tuple after tuple), re-mining after each cache."""
    positives, _ = positives_and_far(data.utm, o.positive_m)
    while True:
        tuples = mine(model, data, o, positives, rng, 64, device)
        if not tuples:
            raise BenchmarkError(f"mining found no query with {o.negatives} negatives beyond {o.negative_m} m; "
                                 "lower negatives or raise cache_negatives")
        model.train()
        for lo in range(0, len(tuples) - o.batch + 1, o.batch):
            yield (data.batch(np.concatenate(tuples[lo:lo + o.batch]), train=True),)


class TupleStep(TrainStep):
    """Triplet or SARE loss over a batch of flattened tuples, in one of the upstream conventions."""

    def __init__(self, model: nn.Module, loss: BatchLossName, convention: Convention, negatives: int,
                 margin: float | None):
        super().__init__()
        self.model, self.loss, self.convention, self.negatives, self.margin = model, loss, convention, negatives, margin

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """The batch loss of the tuples' descriptors."""
        value = batch_loss(self.model(images), self.loss, self.convention, negs_num_per_query=self.negatives,
                           margin=self.margin)
        return {self.loss: value, "total": value}


def train_tuples(model: nn.Module, data: TrainSplit, o: TupleOptions, loss: BatchLossName, convention: Convention,
                 rng: np.random.Generator, device: torch.device, progress: bool, desc: str) -> TrainLog:
    """Triplet / SARE training on mined tuples."""
    step = TupleStep(model, loss, convention, o.negatives, None if o.margin < 0 else o.margin)
    return fit(step, tuple_batches(model, data, o, rng, device), o.steps, o, device, desc, progress)


def cosface_batches(groups: list[dict], o: CosPlaceOptions, data: TrainSplit, rng: np.random.Generator
                    ) -> Iterator[tuple[Tensor, Tensor, int]]:
    """CosPlace batches: `batch` classes of one group (with one image each), one group per epoch of
    `iterations_per_epoch` steps, groups in turn."""
    epoch = 0
    while True:
        k = epoch % len(groups)
        members = list(groups[k].values())
        for _ in range(o.iterations_per_epoch):
            labels = rng.choice(len(members), o.batch, replace=len(members) < o.batch)
            rows = [int(rng.choice(members[c])) for c in labels]
            yield data.batch(rows, train=True), torch.as_tensor(labels), k
        epoch += 1


class CosFaceStep(TrainStep):
    """CosFace (s, margin) over the classes of the batch's group; each group has its own classifier, all
    trained by one Adam at classifier_lr as in CosPlace."""

    unused_parameters = True  # only the current group's classifier gets a gradient

    def __init__(self, model: nn.Module, groups: list[dict], o: CosPlaceOptions):
        super().__init__()
        self.model = model
        self.classifiers = nn.ModuleList(MarginCosineProduct(o.fc_dim, len(g), o.cosface_s, o.cosface_margin)
                                         for g in groups)
        self.classifier_lr = o.classifier_lr

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam over the classifiers (parameters without a gradient in a step are left alone)."""
        if not hasattr(self, "_heads"):
            self._heads = torch.optim.Adam(self.classifiers.parameters(), lr=self.classifier_lr)
        return [self._heads]

    def forward(self, images: Tensor, labels: Tensor, group: int) -> dict[str, Tensor]:
        """Cross-entropy of the margin logits."""
        value = F.cross_entropy(self.classifiers[group](self.model(images), labels), labels)
        return {"cosface": value, "total": value}


def train_cosface(model: nn.Module, data: TrainSplit, o: CosPlaceOptions, rng: np.random.Generator,
                  device: torch.device, progress: bool, desc: str) -> TrainLog:
    """CosPlace: one CosFace classifier per group, one group per epoch (epoch % groups_num)."""
    groups = cosplace_groups(data.utm, data.heading, o.group_m, o.alpha, o.group_n, o.group_l,
                             o.min_images_per_class)[:o.groups_num]
    if not groups:
        raise BenchmarkError(f"no CosPlace class has {o.min_images_per_class} images; lower min_images_per_class")
    step = CosFaceStep(model, groups, o)
    return fit(step, cosface_batches(groups, o, data, rng), o.steps, o, device, desc, progress)


def eigenplaces_batches(groups: list[tuple[dict, dict]], o: EigenPlacesOptions, data: TrainSplit,
                        rng: np.random.Generator) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, int]]:
    """EigenPlaces steps: a lateral and a frontal batch (`batch` classes, one view each) of one group, one group
    per epoch of `iterations_per_epoch` steps, groups in turn."""
    epoch = 0
    while True:
        k = epoch % len(groups)
        sides = [list(side.values()) for side in groups[k]]
        for _ in range(o.iterations_per_epoch):
            out: list[Tensor] = []
            for members in sides:
                labels = rng.choice(len(members), o.batch, replace=len(members) < o.batch)
                out += [data.batch([int(rng.choice(members[c])) for c in labels], train=True),
                        torch.as_tensor(labels)]
            yield (*out, k)
        epoch += 1


class EigenPlacesStep(CosFaceStep):
    """λ_lat · CosFace(lateral classes) + λ_front · CosFace(frontal classes) of one group; the classifiers of
    group g are 2g (lateral) and 2g + 1 (frontal), all trained by one Adam at classifier_lr."""

    def __init__(self, model: nn.Module, groups: list[tuple[dict, dict]], o: EigenPlacesOptions):
        super().__init__(model, [side for pair in groups for side in pair], o)
        self.weights = (o.lambda_lat, o.lambda_front)

    def forward(self, lateral: Tensor, lateral_labels: Tensor, frontal: Tensor, frontal_labels: Tensor,
                group: int) -> dict[str, Tensor]:
        """Both weighted losses and their sum."""
        terms = {}
        for i, (name, images, labels) in enumerate((("lateral", lateral, lateral_labels),
                                                    ("frontal", frontal, frontal_labels))):
            logits = self.classifiers[2 * group + i](self.model(images), labels)
            terms[name] = self.weights[i] * F.cross_entropy(logits, labels)
        return {**terms, "total": terms["lateral"] + terms["frontal"]}


def train_eigenplaces(model: nn.Module, data: TrainSplit, o: EigenPlacesOptions, rng: np.random.Generator,
                      device: torch.device, progress: bool, desc: str) -> TrainLog:
    """EigenPlaces: lateral and frontal CosFace classifiers per group, one group per epoch."""
    groups = eigenplaces_groups(data.utm, data.heading, o.group_m, o.group_n, o.focal_dist,
                                o.min_images_per_class)[:o.groups_num]
    if not groups:
        raise BenchmarkError(f"no EigenPlaces cell has {o.min_images_per_class} capture locations; lower "
                             "min_images_per_class or raise group_m")
    step = EigenPlacesStep(model, groups, o)
    return fit(step, eigenplaces_batches(groups, o, data, rng), o.steps, o, device, desc, progress)


def place_batches(place_list: list[np.ndarray], o: PlaceOptions, data: TrainSplit, rng: np.random.Generator
                  ) -> Iterator[tuple[Tensor, Tensor]]:
    """GSV-Cities style batches: `batch` places × up to `images_per_place` images, labelled by place."""
    while True:
        chosen = rng.choice(len(place_list), min(o.batch, len(place_list)), replace=False)
        rows, labels = [], []
        for label, place in enumerate(chosen):
            members = place_list[place]
            picked = rng.choice(members, min(o.images_per_place, len(members)), replace=False)
            rows += picked.tolist()
            labels += [label] * len(picked)
        yield data.batch(rows, train=True), torch.as_tensor(labels)


class MultiSimilarityStep(TrainStep):
    """MultiSimilarity loss on the pairs its miner selects (pytorch-metric-learning)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.loss_fn, self.miner = multisimilarity()

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """The loss of a place batch."""
        descriptors = self.model(images)
        value = self.loss_fn(descriptors, labels, self.miner(descriptors, labels))
        return {"multisimilarity": value, "total": value}


def train_multisimilarity(model: nn.Module, data: TrainSplit, o: PlaceOptions, rng: np.random.Generator,
                          device: torch.device, progress: bool, desc: str) -> TrainLog:
    """MixVPR/SALAD: MultiSimilarity over place batches."""
    place_list = places(data.utm, data.heading, o.cell_m, o.heading_deg)
    if len(place_list) < 2:
        raise BenchmarkError("fewer than two places with two images each; raise cell_m")
    return fit(MultiSimilarityStep(model), place_batches(place_list, o, data, rng), o.steps, o, device, desc,
               progress)
