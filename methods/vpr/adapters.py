"""The six VPR methods on the shared retrieval pipeline: each supplies a network and its training recipe.

CPU presets ('smoke', 'default') train from scratch with small inputs and ResNet-18 / a small ViT so that a
method trains and evaluates on the helsinki default in minutes on 2 cores; 'paper' presets carry the
published backbones, sizes and schedules (meant for GPUs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchmark.augment import Photometric
from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.images import iterate_images
from benchmark.training import CheckpointStore, file_sha256
from methods.retrieval import PIPELINE_OPTIONS, RetrievalMethod, RetrievalOptions
from methods.vpr import recipes
from methods.vpr.backbones import DinoV2, ResNetTrunk, resnet_sequential, vgg16_encoder
from methods.vpr.heads import SALAD, CosPlaceHead, GeM, L2Norm, MixVPR, NetVLAD
from methods.vpr.models import DVGL, LIGHTNING, NANNE, VPRNet, load_official


@dataclass(frozen=True)
class VPROptions(RetrievalOptions):
    """Options every trained VPR method shares (CPU-sized defaults; presets set the rest)."""

    weights: str = ""  # an official checkpoint file: loaded instead of training
    backbone: str = "resnet18"
    image_h: int = 64
    image_w: int = 88
    steps: int = 300  # optimizer steps
    batch: int = 8  # queries / classes / places per step
    lr: float = 3e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    augment: float = 0.5  # photometric training augmentation strength (0: off)


@dataclass(frozen=True)
class TupleOptions(VPROptions):
    """Hard-negative mining for the triplet / SARE recipes (dvgl 'partial' mining)."""

    negatives: int = 5
    cache_queries: int = 64
    cache_negatives: int = 256
    max_positives: int = 8
    positive_m: float = 10.0
    negative_m: float = 25.0
    margin: float = -1.0  # < 0: the convention's default


@dataclass(frozen=True)
class NetVLADOptions(TupleOptions):
    """NetVLAD: clusters and the k-means initialisation."""

    clusters: int = 64
    kmeans_images: int = 500
    cut: str = "layer3"  # ResNet cut (dvgl resnet18conv4); VGG-16 is always cut at conv5_3


@dataclass(frozen=True)
class SAREOptions(NetVLADOptions):
    """SARE: NetVLAD trained with the joint or individual SARE loss."""

    sare: str = "joint"  # joint | ind


@dataclass(frozen=True)
class GeMOptions(TupleOptions):
    """GeM pooling on a ResNet cut after layer3 (dvgl resnet*conv4)."""

    cut: str = "layer3"


@dataclass(frozen=True)
class CosPlaceOptions(VPROptions):
    """CosPlace: descriptor size and its groups (M metres, alpha degrees, N, L)."""

    fc_dim: int = 256
    group_m: float = 10.0
    alpha: float = 30.0
    group_n: int = 5
    group_l: int = 2
    groups_num: int = 8
    min_images_per_class: int = 1
    iterations_per_epoch: int = 40
    classifier_lr: float = 1e-2


@dataclass(frozen=True)
class PlaceOptions(VPROptions):
    """MultiSimilarity place batches."""

    images_per_place: int = 4
    cell_m: float = 30.0
    heading_deg: float = 45.0


@dataclass(frozen=True)
class MixVPROptions(PlaceOptions):
    """MixVPR aggregator sizes (on a ResNet cut after layer3)."""

    out_channels: int = 128
    out_rows: int = 4
    mix_depth: int = 4


@dataclass(frozen=True)
class SALADOptions(PlaceOptions):
    """SALAD on a DINOv2-layout ViT (patch 14); image sides must be multiples of 14."""

    vit_dim: int = 192
    vit_depth: int = 4
    vit_heads: int = 3
    trainable_blocks: int = 4
    clusters: int = 16
    cluster_dim: int = 32
    token_dim: int = 64


SMOKE = {"steps": 4, "batch": 4, "image_h": 48, "image_w": 64}


class VPRMethod(RetrievalMethod):
    """A trained VPR encoder: load official weights, or train from scratch once and cache the state."""

    Options: ClassVar[type] = VPROptions

    @abstractmethod
    def build_network(self) -> VPRNet:
        """The network at the configured size, with random weights, in the official layout."""

    @abstractmethod
    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> list[float]:
        """Train in place with this method's recipe; return the loss per step."""

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize to image_h x image_w and normalise with ImageNet mean/std."""
        return recipes.normalise(recipes.to_uint8(image, self.options.image_h, self.options.image_w)[None])[0]

    def _optim(self) -> recipes.Optim:
        o = self.options
        return recipes.Optim(o.steps, o.lr, o.optimizer, o.weight_decay)

    def training_key(self, dataset: Dataset) -> Path:
        """Cache folder of the trained state: keyed by every option that changes training, and the data."""
        options = {k: v for k, v in dataclasses.asdict(self.options).items()
                   if k not in PIPELINE_OPTIONS and k != "weights"}
        blob = json.dumps({"method": self.name, "options": options, "seed": self.ctx.seed}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self.ctx.cache_dir.parent / f"{self.name}-train-{digest}-{dataset.data_hash[:16]}"

    def build_encoder(self, dataset: Dataset) -> nn.Module:
        """Official weights if given; else the cached trained state; else train from scratch and cache."""
        torch.manual_seed(self.ctx.seed)
        model = self.build_network()
        self.trained_now = False
        if self.options.weights:
            load_official(model, self.options.weights)
            path = Path(self.options.weights).expanduser()
            self._weights = {"source": "file", "path": str(path), "sha256": file_sha256(path)}
            return model
        store = CheckpointStore(self.training_key(dataset))
        if store.exists():
            model.load_state_dict(store.load())
        else:
            model.to(self.ctx.device)
            data = load_train_split(dataset, self.options.image_h, self.options.image_w, self.ctx.batch_size,
                                    self.options.augment, self.ctx.seed)
            self.train(model, data, np.random.default_rng(self.ctx.seed))
            store.save({k: v.cpu() for k, v in model.state_dict().items()})
            self.trained_now = True
        self._weights = {"source": "from-scratch", "path": str(store.path), "sha256": file_sha256(store.path)}
        return model

    def weights(self) -> dict[str, Any]:
        """Provenance of the encoder weights."""
        return getattr(self, "_weights", {"source": "from-scratch"})


def load_train_split(dataset: Dataset, height: int, width: int, batch_size: int,
                     augment: float = 0.0, seed: int = 0) -> recipes.TrainSplit:
    """Decode and resize the whole training split once (uint8 in memory); `augment` = photometric strength."""
    chunks = list(iterate_images(dataset.paths("train"), lambda im: recipes.to_uint8(im, height, width), batch_size))
    table = dataset.splits["train"]
    if "heading" not in table or table.heading.isna().any():
        heading = np.zeros(len(table))
    else:
        heading = table.heading.to_numpy(np.float64)
    return recipes.TrainSplit(torch.cat(chunks), dataset.utm("train"), heading,
                              Photometric(augment, seed) if augment > 0 else None)


class TupleMethod(VPRMethod):
    """Triplet/SARE training on faiss-mined tuples (NetVLAD, SARE, GeM)."""

    loss: ClassVar[str] = "triplet"
    convention: ClassVar[str] = "nanne"

    def batch_loss_name(self) -> str:
        """Which batch loss trains this method."""
        return self.loss

    def before_training(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> None:
        """Hook run once before the first step (NetVLAD's k-means initialisation)."""

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> list[float]:
        """Mine hard negatives with faiss each cache refresh, then step on the tuples."""
        o = self.options
        self.before_training(model, data, rng)
        mining = recipes.Mining(o.negatives, o.cache_queries, o.cache_negatives, o.max_positives, o.positive_m,
                                o.negative_m)
        return recipes.train_tuples(model, data, self._optim(), mining, o.batch, self.batch_loss_name(),
                                    self.convention, None if o.margin < 0 else o.margin, rng, self.ctx.device,
                                    self.ctx.progress, f"{self.name}: training")


def _trunk(backbone: str, cut: str) -> tuple[nn.Module, int]:
    if backbone == "vgg16":
        return vgg16_encoder()
    return resnet_sequential(backbone, cut, frozen=2)


class NetVLADMethod(TupleMethod):
    """NetVLAD (Arandjelović et al. 2016): Nanne's encoder + pool layout, triplet loss, k-means init."""

    name = "netvlad"
    Options = NetVLADOptions
    PRESETS = {"smoke": {**SMOKE, "clusters": 8, "kmeans_images": 40, "cache_queries": 8, "cache_negatives": 64},
               "default": {},
               "paper": {"augment": 0.0, "backbone": "vgg16", "image_h": 480, "image_w": 640, "negatives": 10, "batch": 4,
                         "cache_queries": 1000, "cache_negatives": 1000, "clusters": 64, "steps": 75_000,
                         "lr": 1e-4, "optimizer": "sgd", "weight_decay": 1e-3, "kmeans_images": 500}}

    def build_network(self) -> VPRNet:
        """Trunk (VGG-16 conv5_3 or ResNet cut) + NetVLAD, keys `encoder.*` / `pool.*`."""
        trunk, channels = _trunk(self.options.backbone, self.options.cut)
        return VPRNet(NANNE, trunk, NetVLAD(self.options.clusters, channels))

    def before_training(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> None:
        """Cluster local descriptors of sampled training images (up to 100 per image) to set the centroids."""
        rows = rng.choice(len(data.utm), min(self.options.kmeans_images, len(data.utm)), replace=False)
        local = []
        model.eval()
        with torch.no_grad():
            for lo in range(0, len(rows), 64):
                maps = model.encoder(data.batch(rows[lo:lo + 64]).to(self.ctx.device))
                flat = maps.flatten(2).transpose(1, 2).cpu()  # [B, HW, C]
                for f in flat:
                    keep = rng.choice(len(f), min(100, len(f)), replace=False)
                    local.append(f[torch.as_tensor(keep)])
        descs = torch.cat(local)
        if len(descs) < self.options.clusters:
            raise BenchmarkError(f"{self.name}: {len(descs)} local descriptors for {self.options.clusters} clusters; "
                                 "raise kmeans_images")
        model.pool.init_from_descriptors(descs, niter=100, seed=self.ctx.seed)


class SAREMethod(NetVLADMethod):
    """SARE (Liu et al. 2019): NetVLAD trained with the SARE loss (joint or ind), OpenIBL's convention."""

    name = "sare"
    Options = SAREOptions
    convention = "openibl"
    PRESETS = NetVLADMethod.PRESETS

    def batch_loss_name(self) -> str:
        """sare_joint or sare_ind, from the `sare` option."""
        if self.options.sare not in ("joint", "ind"):
            raise BenchmarkError(f"sare={self.options.sare!r}: use joint or ind")
        return f"sare_{self.options.sare}"


class GeMMethod(TupleMethod):
    """GeM (Radenović et al.) as in the dvgl benchmark: ResNet conv4 + L2Norm + GeM, triplet loss."""

    name = "gem"
    Options = GeMOptions
    convention = "dvgl"
    PRESETS = {"smoke": {**SMOKE, "cache_queries": 8, "cache_negatives": 64},
               "default": {},
               "paper": {"augment": 0.0, "backbone": "resnet50", "image_h": 480, "image_w": 640, "negatives": 10, "batch": 4,
                         "cache_queries": 1000, "cache_negatives": 1000, "steps": 50_000, "lr": 1e-5,
                         "optimizer": "adam"}}

    def build_network(self) -> VPRNet:
        """Trunk + Sequential(L2Norm, GeM, Flatten, L2Norm), keys `backbone.*` / `aggregation.1.p`."""
        trunk, _ = _trunk(self.options.backbone, self.options.cut)
        return VPRNet(DVGL, trunk, nn.Sequential(L2Norm(1), GeM(), nn.Flatten(), L2Norm(1)))


class CosPlaceMethod(VPRMethod):
    """CosPlace (Berton et al. 2022): ResNet + L2/GeM/FC/L2 head, CosFace over UTM/heading groups."""

    name = "cosplace"
    Options = CosPlaceOptions
    PRESETS = {"smoke": {**SMOKE, "iterations_per_epoch": 2, "groups_num": 2, "fc_dim": 32},
               "default": {"batch": 32},
               "paper": {"augment": 1.0, "backbone": "resnet50", "fc_dim": 2048, "image_h": 512, "image_w": 512, "batch": 32,
                         "steps": 500_000, "iterations_per_epoch": 10_000, "min_images_per_class": 10,
                         "lr": 1e-5, "optimizer": "adam"}}

    def build_network(self) -> VPRNet:
        """ResNet children up to layer4 + CosPlaceHead, keys `backbone.{0,1,4..7}` / `aggregation.{1,3}`."""
        trunk, channels = resnet_sequential(self.options.backbone, "layer4", frozen=2)
        return VPRNet(DVGL, trunk, CosPlaceHead(channels, self.options.fc_dim))

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> list[float]:
        """CosFace (s=30, m=0.4), one group per epoch."""
        o = self.options
        groups = recipes.CosPlaceGroups(o.group_m, o.alpha, o.group_n, o.group_l, o.groups_num,
                                        o.min_images_per_class, o.iterations_per_epoch, classifier_lr=o.classifier_lr)
        return recipes.train_cosface(model, data, self._optim(), groups, o.fc_dim, o.batch, rng, self.ctx.device,
                                     self.ctx.progress, f"{self.name}: training")


class PlaceMethod(VPRMethod):
    """MultiSimilarity training over place batches (MixVPR, SALAD)."""

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> list[float]:
        """MultiSimilarity loss + miner (pytorch-metric-learning)."""
        o = self.options
        batches = recipes.PlaceBatches(o.batch, o.images_per_place, o.cell_m, o.heading_deg)
        return recipes.train_multisimilarity(model, data, self._optim(), batches, rng, self.ctx.device,
                                             self.ctx.progress, f"{self.name}: training")


def _feature_size(side: int) -> int:
    for _ in range(4):  # conv1, maxpool, layer2 and layer3 each halve, rounding up
        side = (side + 1) // 2
    return side


class MixVPRMethod(PlaceMethod):
    """MixVPR (Ali-bey et al. 2023): ResNet cut after layer3 (`backbone.model.*`) + MixVPR (`aggregator.*`)."""

    name = "mixvpr"
    Options = MixVPROptions
    PRESETS = {"smoke": {**SMOKE, "out_channels": 16, "mix_depth": 1},
               "default": {"batch": 16},
               "paper": {"backbone": "resnet50", "image_h": 320, "image_w": 320, "out_channels": 1024,
                         "out_rows": 4, "mix_depth": 4, "batch": 120, "steps": 40_000, "lr": 0.05,
                         "optimizer": "sgd", "weight_decay": 1e-3}}

    def build_network(self) -> VPRNet:
        """The feature map size follows from the image size (stride 16 after layer3)."""
        o = self.options
        trunk = ResNetTrunk(o.backbone, "layer3", frozen=2)
        head = MixVPR(trunk.out_channels, _feature_size(o.image_h), _feature_size(o.image_w), o.out_channels,
                      o.mix_depth, 1, o.out_rows)
        return VPRNet(LIGHTNING, trunk, head)


class SALADMethod(PlaceMethod):
    """SALAD (Izquierdo & Civera 2024): DINOv2-layout ViT/14 (`backbone.model.*`) + SALAD (`aggregator.*`)."""

    name = "salad"
    Options = SALADOptions
    PRESETS = {"smoke": {**SMOKE, "image_h": 56, "image_w": 70, "vit_dim": 64, "vit_depth": 2, "vit_heads": 2,
                         "clusters": 4, "cluster_dim": 8, "token_dim": 16},
               "default": {"image_h": 70, "image_w": 98, "batch": 16},
               "paper": {"image_h": 322, "image_w": 322, "vit_dim": 768, "vit_depth": 12, "vit_heads": 12,
                         "trainable_blocks": 4, "clusters": 64, "cluster_dim": 128, "token_dim": 256,
                         "batch": 60, "steps": 4_000, "lr": 6e-5, "optimizer": "adamw", "weight_decay": 9.5e-9}}

    def build_network(self) -> VPRNet:
        """ViT with DINOv2 keys and the hub's 37x37 position grid, then SALAD with the configured sizes."""
        o = self.options
        if o.image_h % 14 or o.image_w % 14:
            raise BenchmarkError(f"{self.name}: image_h and image_w must be multiples of 14 (got {o.image_h}x{o.image_w})")
        vit = DinoV2(o.vit_dim, o.vit_depth, o.vit_heads, trainable_blocks=o.trainable_blocks)
        head = SALAD(o.vit_dim, o.clusters, o.cluster_dim, o.token_dim)
        return VPRNet(LIGHTNING, vit, head)
