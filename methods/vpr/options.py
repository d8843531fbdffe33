"""Options of the VPR methods, declared once: the recipes in methods.vpr.recipes read these directly."""

from __future__ import annotations

from dataclasses import dataclass

from methods.retrieval import RetrievalOptions
from methods.training.options import FitOptions
from methods.training.trunks import TrunkOptions


@dataclass(frozen=True)
class VPROptions(TrunkOptions, RetrievalOptions, FitOptions):
    """Options every trained VPR method shares: retrieval, training (FitOptions: steps, batch = tuples /
    classes / places per step, lr, optimizer, augment, ...) and the network (CPU-sized defaults)."""

    weights: str = ""  # an official checkpoint file: loaded instead of training
    backbone: str = "resnet18"
    image_h: int = 64
    image_w: int = 88


@dataclass(frozen=True)
class TupleOptions(VPROptions):
    """Hard-negative mining for the triplet / SARE recipes (dvgl 'partial' mining)."""

    negatives: int = 5  # hard negatives per tuple on the CPU; dvgl's 10 in the paper presets
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
    # ResNet cut: after layer3 on the CPU (as the other ResNet methods, so the Kotka trunk starts all of it);
    # CosPlace publishes layer4 networks (paper preset)
    cut: str = "layer3"
    group_m: float = 10.0
    alpha: float = 30.0
    group_n: int = 5
    group_l: int = 2
    groups_num: int = 8
    min_images_per_class: int = 1  # the embedded cities have 1-2 images per class; CosPlace's 10 in paper
    iterations_per_epoch: int = 40  # steps per group before the next group trains
    cosface_s: float = 30.0
    cosface_margin: float = 0.4
    classifier_lr: float = 1e-2


@dataclass(frozen=True)
class EigenPlacesOptions(CosPlaceOptions):
    """EigenPlaces: M x M cells in N x N groups (no heading), the focal distance, the two losses' weights. The
    embedded cities capture a location every 10 m, so the CPU default takes 30 m cells of at least 2 locations
    (EigenPlaces: 15 m and 5 panoramas on SF-XL)."""

    group_m: float = 30.0
    group_n: int = 3
    groups_num: int = 9
    focal_dist: float = 10.0
    min_images_per_class: int = 2  # capture locations per cell
    cosface_s: float = 100.0
    lambda_lat: float = 1.0
    lambda_front: float = 1.0


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
