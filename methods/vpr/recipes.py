"""Training recipes: tuples with faiss hard-negative mining (NetVLAD triplet, SARE, GeM), CosFace over
CosPlace groups, and MultiSimilarity with its miner over places (MixVPR, SALAD)."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from benchmark.augment import Photometric
from benchmark.errors import BenchmarkError
from benchmark.training import loss_bar
from methods.vpr.groups import cosplace_groups, places, positives_and_far
from methods.vpr.losses import BatchLossName, Convention, MarginCosineProduct, batch_loss, multisimilarity

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def to_uint8(image: Image.Image, height: int, width: int) -> Tensor:
    """Resize (bilinear) to height x width; uint8 [3, H, W]."""
    array = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def normalise(batch: Tensor) -> Tensor:
    """uint8 [B, 3, H, W] -> float, ImageNet mean/std normalised (what every upstream backbone expects)."""
    return (batch.float() / 255.0 - MEAN) / STD


@dataclass
class TrainSplit:
    """The training split held in memory: resized uint8 images, UTM coordinates, headings."""

    images: Tensor
    utm: np.ndarray
    heading: np.ndarray
    augment: Photometric | None = None

    def batch(self, idx: np.ndarray | list[int], train: bool = False) -> Tensor:
        """Normalised float images of the given rows (photometrically augmented for training steps)."""
        images = self.images[torch.as_tensor(np.asarray(idx, np.int64))]
        if train and self.augment is not None:
            images = self.augment(images)
        return normalise(images)


@dataclass(frozen=True)
class Optim:
    """Optimizer settings shared by the recipes."""

    steps: int
    lr: float
    optimizer: str = "adamw"  # sgd | adam | adamw
    weight_decay: float = 0.0


def make_optimizer(params: list[nn.Parameter], o: Optim) -> torch.optim.Optimizer:
    """SGD (momentum 0.9), Adam or AdamW over the trainable parameters."""
    params = [p for p in params if p.requires_grad]
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay)
    if o.optimizer == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    raise BenchmarkError(f"optimizer={o.optimizer!r}: use sgd, adam or adamw")


@torch.no_grad()
def encode_rows(model: nn.Module, data: TrainSplit, rows: np.ndarray, batch_size: int, device: torch.device
                ) -> np.ndarray:
    """Descriptors [len(rows), D] in eval mode (for mining)."""
    model.eval()
    out = [model(data.batch(rows[i:i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(rows), batch_size)]
    return torch.cat(out).numpy()


def _step(optimizers: list[torch.optim.Optimizer], loss: Tensor) -> None:
    for o in optimizers:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in optimizers:
        o.step()


@dataclass(frozen=True)
class Mining:
    """dvgl 'partial' mining: per cache refresh, queries and a random negative pool are encoded; each query
    gets its nearest positive (in descriptor space, within positive_m) and its hardest negatives (faiss L2
    search over the pool, only images beyond negative_m)."""

    negatives: int = 10
    cache_queries: int = 1000
    cache_negatives: int = 1000
    max_positives: int = 20
    positive_m: float = 10.0
    negative_m: float = 25.0


def mine(model: nn.Module, data: TrainSplit, m: Mining, positives: list[np.ndarray], rng: np.random.Generator,
         batch_size: int, device: torch.device) -> list[np.ndarray]:
    """One cache refresh: tuples [query, positive, negative_1..N] of row indices."""
    usable = np.array([i for i, p in enumerate(positives) if len(p)], np.int64)
    if len(usable) == 0:
        raise BenchmarkError(f"no training image has another within {m.positive_m} m; nothing to mine")
    queries = rng.choice(usable, min(m.cache_queries, len(usable)), replace=False)
    pool = rng.choice(len(data.utm), min(m.cache_negatives, len(data.utm)), replace=False)
    pos = {int(q): rng.choice(positives[q], min(m.max_positives, len(positives[q])), replace=False) for q in queries}
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
        far = np.linalg.norm(data.utm[ranked_rows] - data.utm[q], axis=1) > m.negative_m
        hard = ranked_rows[far][:m.negatives]
        if len(hard) == m.negatives:
            tuples.append(np.concatenate([[q, best], hard]).astype(np.int64))
    return tuples


def train_tuples(model: nn.Module, data: TrainSplit, o: Optim, m: Mining, batch_size: int, loss: BatchLossName,
                 convention: Convention, margin: float | None, rng: np.random.Generator, device: torch.device,
                 progress: bool, desc: str) -> list[float]:
    """Triplet / SARE training on mined tuples; returns the loss per step."""
    positives, _ = positives_and_far(data.utm, m.positive_m)
    optimizer = make_optimizer(list(model.parameters()), o)
    losses: list[float] = []
    bar = loss_bar(o.steps, desc, progress)
    while len(losses) < o.steps:
        tuples = mine(model, data, m, positives, rng, 64, device)
        if not tuples:
            raise BenchmarkError(f"mining found no query with {m.negatives} negatives beyond {m.negative_m} m; "
                                 "lower negatives or raise cache_negatives")
        model.train()
        for lo in range(0, len(tuples) - batch_size + 1, batch_size):
            rows = np.concatenate(tuples[lo:lo + batch_size])
            features = model(data.batch(rows, train=True).to(device))
            value = batch_loss(features, loss, convention, negs_num_per_query=m.negatives, margin=margin)
            _step([optimizer], value)
            losses.append(float(value.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if len(losses) >= o.steps:
                break
    bar.close()
    return losses


@dataclass(frozen=True)
class CosPlaceGroups:
    """CosPlace's grouping and CosFace settings."""

    m: float = 10.0
    alpha: float = 30.0
    n: int = 5
    l: int = 2  # noqa: E741 (CosPlace's name)
    groups_num: int = 8
    min_images_per_class: int = 10
    iterations_per_epoch: int = 10_000
    s: float = 30.0
    margin: float = 0.4
    classifier_lr: float = 1e-2


def train_cosface(model: nn.Module, data: TrainSplit, o: Optim, g: CosPlaceGroups, dim: int, batch_size: int,
                  rng: np.random.Generator, device: torch.device, progress: bool, desc: str) -> list[float]:
    """CosPlace: one CosFace classifier per group, one group per epoch (epoch % groups_num), Adam for both."""
    groups = cosplace_groups(data.utm, data.heading, g.m, g.alpha, g.n, g.l, g.min_images_per_class)[:g.groups_num]
    if not groups:
        raise BenchmarkError(f"no CosPlace class has {g.min_images_per_class} images; lower min_images_per_class")
    classifiers = [MarginCosineProduct(dim, len(group), g.s, g.margin).to(device) for group in groups]
    optimizer = make_optimizer(list(model.parameters()), o)
    heads = [torch.optim.Adam(c.parameters(), lr=g.classifier_lr) for c in classifiers]
    losses: list[float] = []
    bar = loss_bar(o.steps, desc, progress)
    epoch = 0
    model.train()
    while len(losses) < o.steps:
        k = epoch % len(groups)
        members = list(groups[k].values())
        for _ in range(g.iterations_per_epoch):
            labels = rng.choice(len(members), batch_size, replace=len(members) < batch_size)
            rows = [int(rng.choice(members[c])) for c in labels]
            logits = classifiers[k](model(data.batch(rows, train=True).to(device)),
                                    torch.as_tensor(labels, device=device))
            value = F.cross_entropy(logits, torch.as_tensor(labels, device=device))
            _step([optimizer, heads[k]], value)
            losses.append(float(value.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", group=k)
            if len(losses) >= o.steps:
                break
        epoch += 1
    bar.close()
    return losses


@dataclass(frozen=True)
class PlaceBatches:
    """MultiSimilarity batches: places_per_batch places x images_per_place images (GSV-Cities style)."""

    places_per_batch: int = 120
    images_per_place: int = 4
    cell_m: float = 30.0
    heading_deg: float = 45.0


def train_multisimilarity(model: nn.Module, data: TrainSplit, o: Optim, p: PlaceBatches, rng: np.random.Generator,
                          device: torch.device, progress: bool, desc: str) -> list[float]:
    """MixVPR/SALAD: MultiSimilarity loss on the pairs its miner selects (pytorch-metric-learning)."""
    place_list = places(data.utm, data.heading, p.cell_m, p.heading_deg)
    if len(place_list) < 2:
        raise BenchmarkError("fewer than two places with two images each; raise cell_m")
    loss_fn, miner = multisimilarity()
    optimizer = make_optimizer(list(model.parameters()), o)
    losses: list[float] = []
    bar = loss_bar(o.steps, desc, progress)
    model.train()
    while len(losses) < o.steps:
        chosen = rng.choice(len(place_list), min(p.places_per_batch, len(place_list)), replace=False)
        rows, labels = [], []
        for label, place in enumerate(chosen):
            members = place_list[place]
            picked = rng.choice(members, min(p.images_per_place, len(members)), replace=False)
            rows += picked.tolist()
            labels += [label] * len(picked)
        descriptors = model(data.batch(rows, train=True).to(device))
        target = torch.as_tensor(labels, device=device)
        value = loss_fn(descriptors, target, miner(descriptors, target))
        _step([optimizer], value)
        losses.append(float(value.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    return losses
