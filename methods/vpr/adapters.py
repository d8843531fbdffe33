"""The six VPR methods on the shared retrieval pipeline: each supplies a network and its training recipe.

CPU presets train small inputs and ResNet-18 / a small ViT ('smoke' from scratch, 'default' from the
Kotka-pretrained trunk, `init=kotka-r18`) so that a method trains and evaluates on the helsinki default in
minutes on 2 cores; 'paper' presets carry the published backbones, sizes and schedules (meant for GPUs).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchmark.dataset import Dataset
from benchmark.distributed import processes
from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from benchmark.images import decoded_once
from methods.retrieval import RetrievalMethod
from methods.training.augment import Photometric
from methods.training.frozen import cached_training, check_cache
from methods.training.loop import TrainLog
from methods.training.store import train_or_load
from methods.training.trunks import KOTKA_START, StartsFromTrunk, apply_trunk, load_trunk
from methods.vpr import recipes
from methods.vpr.backbones import DinoV2, ResNetTrunk, resnet_sequential, vgg16_encoder
from methods.vpr.heads import SALAD, CosPlaceHead, GeM, L2Norm, MixVPR, NetVLAD
from methods.vpr.models import DVGL, LIGHTNING, NANNE, VPRNet, load_official
from methods.vpr.options import (
    CosPlaceOptions,
    EigenPlacesOptions,
    GeMOptions,
    MixVPROptions,
    NetVLADOptions,
    SALADOptions,
    SAREOptions,
    VPROptions,
)

SMOKE = {"steps": 4, "batch": 4, "image_h": 48, "image_w": 64}
# The CPU default starts every ResNet-18 method from the trunk ialbench pretrained on Kotka (methods/weights/README.md),
# its first stages frozen and cached (KOTKA_START).
KOTKA = KOTKA_START


class VPRMethod(StartsFromTrunk, RetrievalMethod):
    """A trained VPR encoder: load official weights, or train from scratch once (cached by the runner)."""

    Options: ClassVar[type] = VPROptions
    trains = True

    @abstractmethod
    def build_network(self) -> VPRNet:
        """The network at the configured size, with random weights, in the official layout."""

    @abstractmethod
    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> TrainLog:
        """Train in place with this method's recipe; return the loop's log."""

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize to image_h x image_w and normalise with ImageNet mean/std."""
        return recipes.preprocess(image, self.options.image_h, self.options.image_w)

    def build_encoder(self, dataset: Dataset) -> nn.Module:
        """Official weights if given; else the cached trained state; else train from scratch and cache."""
        o = self.options
        torch.manual_seed(self.ctx.seed)
        model = self.build_network()
        if o.weights and o.init not in ("", "scratch"):
            raise BenchmarkError(f"{self.name}: init={o.init} and weights= both set the backbone; give one")
        if o.weights:
            load_official(model, o.weights)
            path = Path(o.weights).expanduser()
            self._provenance = {"source": "file", "path": str(path), "sha256": file_sha256(path)}
            return model

        procs = processes(self.ctx.device)
        trunk = load_trunk(o.init)
        if trunk is not None:
            apply_trunk(getattr(model, model.layout[0]), trunk)
        origin = trunk.source if trunk is not None else f"{o.backbone} from scratch"

        check_cache(self.name, o.frozen, o.cache_frozen, o.augment)

        def train() -> TrainLog:
            model.to(self.ctx.device)
            progress = self.ctx.progress and procs.main
            data = load_train_split(dataset, o.image_h, o.image_w, self.ctx.batch_size, o.augment, self.ctx.seed,
                                    progress)
            # Under torchrun each process draws its own batches (DDP averages their gradients).
            seed = [self.ctx.seed, procs.rank] if procs.distributed else self.ctx.seed
            if not o.cache_frozen:
                return self.train(model, data, np.random.default_rng(seed))
            data.images, cache = cached_training(getattr(model, model.layout[0]), o.frozen, data.images,
                                                 recipes.normalise, self.ctx.batch_size, self.ctx.device,
                                                 f"{self.name}: frozen stages", progress)
            data.cached = True
            with cache:
                return self.train(model, data, np.random.default_rng(seed))

        self.training = train_or_load(self.ctx.cache_dir, model.load_state_dict, train,
                                      lambda: {k: v.cpu() for k, v in model.state_dict().items()},
                                      lambda: {"backbone": origin,
                                               "input_size": [o.image_h, o.image_w]},
                                      procs.main)
        path = self.ctx.cache_dir / "model.pt"
        self._provenance = {"source": "from-scratch", "path": str(path), "sha256": file_sha256(path)}
        return model

    def provenance(self) -> dict[str, Any]:
        """Provenance of the encoder weights."""
        return getattr(self, "_provenance", {"source": "from-scratch"})


def train_images(dataset: Dataset, height: int, width: int, batch_size: int, progress: bool = False) -> torch.Tensor:
    """The training split decoded once (per process) and resized to height x width: uint8 [N, 3, H, W] in memory."""
    return decoded_once(("bilinear", height, width), dataset.paths("train"),
                        lambda im: recipes.to_uint8(im, height, width), batch_size, "decoding training images",
                        progress)


def load_train_split(dataset: Dataset, height: int, width: int, batch_size: int,
                     augment: float = 0.0, seed: int = 0, progress: bool = False) -> recipes.TrainSplit:
    """Decode and resize the whole training split once (uint8 in memory); `augment` = photometric strength."""
    images = train_images(dataset, height, width, batch_size, progress)
    table = dataset.splits["train"]
    if "heading" not in table or table.heading.isna().any():
        heading = np.zeros(len(table))
    else:
        heading = table.heading.to_numpy(np.float64)
    return recipes.TrainSplit(images, dataset.utm("train"), heading,
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

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> TrainLog:
        """Mine hard negatives with faiss each cache refresh, then step on the tuples."""
        self.before_training(model, data, rng)
        return recipes.train_tuples(model, data, self.options, self.batch_loss_name(), self.convention, rng,
                                    self.ctx.device, self.ctx.progress, f"{self.name}: training")


def _trunk(backbone: str, cut: str, frozen: int) -> tuple[nn.Module, int]:
    if backbone == "vgg16":
        return vgg16_encoder()
    return resnet_sequential(backbone, cut, frozen=frozen)


class NetVLADMethod(TupleMethod):
    """NetVLAD (Arandjelović et al. 2016): Nanne's encoder + pool layout, triplet loss, k-means init."""

    name = "netvlad"
    Options = NetVLADOptions
    PRESETS = {"smoke": {**SMOKE, "clusters": 8, "kmeans_images": 40, "cache_queries": 8, "cache_negatives": 64},
               "default": KOTKA,
               "paper": {"frozen": 2, "augment": 0.0, "backbone": "vgg16", "image_h": 480, "image_w": 640, "negatives": 10, "batch": 4,
                         "cache_queries": 1000, "cache_negatives": 1000, "clusters": 64, "steps": 75_000,
                         "lr": 1e-4, "optimizer": "sgd", "weight_decay": 1e-3, "kmeans_images": 500}}

    def build_network(self) -> VPRNet:
        """Trunk (VGG-16 conv5_3 or ResNet cut) + NetVLAD, keys `encoder.*` / `pool.*`."""
        trunk, channels = _trunk(self.options.backbone, self.options.cut, self.options.frozen)
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
               "default": KOTKA,
               "paper": {"frozen": 2, "augment": 0.0, "backbone": "resnet50", "image_h": 480, "image_w": 640, "negatives": 10, "batch": 4,
                         "cache_queries": 1000, "cache_negatives": 1000, "steps": 50_000, "lr": 1e-5,
                         "optimizer": "adam"}}

    def build_network(self) -> VPRNet:
        """Trunk + Sequential(L2Norm, GeM, Flatten, L2Norm), keys `backbone.*` / `aggregation.1.p`."""
        trunk, _ = _trunk(self.options.backbone, self.options.cut, self.options.frozen)
        return VPRNet(DVGL, trunk, nn.Sequential(L2Norm(1), GeM(), nn.Flatten(), L2Norm(1)))


class CosPlaceMethod(VPRMethod):
    """CosPlace (Berton et al. 2022): ResNet + L2/GeM/FC/L2 head, CosFace over UTM/heading groups."""

    name = "cosplace"
    Options = CosPlaceOptions
    PRESETS = {"smoke": {**SMOKE, "iterations_per_epoch": 2, "groups_num": 2, "fc_dim": 32},
               "default": {**KOTKA, "batch": 32},
               "paper": {"frozen": 2, "augment": 1.0, "backbone": "resnet50", "cut": "layer4", "fc_dim": 2048,
                         "image_h": 512, "image_w": 512, "batch": 32,
                         "steps": 500_000, "iterations_per_epoch": 10_000, "min_images_per_class": 10,
                         "lr": 1e-5, "optimizer": "adam"}}

    def build_network(self) -> VPRNet:
        """ResNet children up to `cut` + CosPlaceHead, keys `backbone.{0,1,4..7}` / `aggregation.{1,3}`. The
        published networks (paper preset) cut after layer4; the CPU presets after layer3, as every other ResNet
        method here (so the Kotka-pretrained trunk starts all of it)."""
        trunk, channels = resnet_sequential(self.options.backbone, self.options.cut, frozen=self.options.frozen)
        return VPRNet(DVGL, trunk, CosPlaceHead(channels, self.options.fc_dim))

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> TrainLog:
        """CosFace (s=30, m=0.4), one group per epoch."""
        return recipes.train_cosface(model, data, self.options, rng, self.ctx.device, self.ctx.progress,
                                     f"{self.name}: training")


class EigenPlacesMethod(CosPlaceMethod):
    """EigenPlaces (Berton et al. 2023): CosPlace's network, CosFace on lateral and frontal views of each cell
    (towards focal points off its principal directions); loads the official checkpoints (CosPlace layout)."""

    name = "eigenplaces"
    Options = EigenPlacesOptions
    PRESETS = {"smoke": {**SMOKE, "iterations_per_epoch": 2, "groups_num": 2, "fc_dim": 32, "group_m": 40.0},
               "default": {**KOTKA, "batch": 32},
               "paper": {"frozen": 2, "augment": 1.0, "backbone": "resnet50", "cut": "layer4", "fc_dim": 2048,
                         "image_h": 512, "image_w": 512, "batch": 32, "steps": 200_000, "iterations_per_epoch": 5_000,
                         "group_m": 15.0, "group_n": 3, "focal_dist": 10.0, "min_images_per_class": 5,
                         "lr": 1e-5, "optimizer": "adam"}}

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> TrainLog:
        """Lateral + frontal CosFace (s=100, m=0.4), one group per epoch."""
        return recipes.train_eigenplaces(model, data, self.options, rng, self.ctx.device, self.ctx.progress,
                                         f"{self.name}: training")


class PlaceMethod(VPRMethod):
    """MultiSimilarity training over place batches (MixVPR, SALAD)."""

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> TrainLog:
        """MultiSimilarity loss + miner (pytorch-metric-learning)."""
        return recipes.train_multisimilarity(model, data, self.options, rng, self.ctx.device, self.ctx.progress,
                                             f"{self.name}: training")


def _feature_size(side: int) -> int:
    for _ in range(4):  # conv1, maxpool, layer2 and layer3 each halve, rounding up
        side = (side + 1) // 2
    return side


class MixVPRMethod(PlaceMethod):
    """MixVPR (Ali-bey et al. 2023): ResNet cut after layer3 (`backbone.model.*`) + MixVPR (`aggregator.*`)."""

    name = "mixvpr"
    Options = MixVPROptions
    PRESETS = {"smoke": {**SMOKE, "out_channels": 16, "mix_depth": 1},
               "default": {**KOTKA, "batch": 16},
               "paper": {"frozen": 2, "backbone": "resnet50", "image_h": 320, "image_w": 320, "out_channels": 1024,
                         "out_rows": 4, "mix_depth": 4, "batch": 120, "steps": 40_000, "lr": 0.05,
                         "optimizer": "sgd", "weight_decay": 1e-3}}

    def build_network(self) -> VPRNet:
        """The feature map size follows from the image size (stride 16 after layer3)."""
        o = self.options
        trunk = ResNetTrunk(o.backbone, "layer3", frozen=o.frozen)
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
