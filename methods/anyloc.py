"""AnyLoc (Keetha et al., RA-L 2023): training-free VLAD over a foundation model's dense features — one layer's
facet (token, key, query or value) of a DINOv2 ViT, each patch feature L2-normalised, hard-assigned by cosine
to a k-means vocabulary of the database's features, intra- and globally normalised — then reverse geocoding.

DINOv2 weights cannot be downloaded here: `weights=` takes an official hub checkpoint (e.g.
dinov2_vitg14_pretrain.pth; ViT-G's SwiGLU `w12`/`w3` keys are read as timm's `fc1`/`fc2`). On the embedded
default the foundation model is the project's own pretrained trunk (`backbone=trunk`, the Kotka ResNet-18 of
every ResNet method, its conv4 map as dense features), since no ViT was pretrained by ialbench.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from methods.training.checkpoints import check_state_dict, load_weights_file
from methods.training.trunks import StartsFromTrunk, apply_trunk, load_trunk
from methods.vlad import VLADMethod, VLADOptions
from methods.vpr import recipes
from methods.vpr.backbones import resnet_sequential

VITS = {"vits14": "vit_small_patch14_dinov2", "vitb14": "vit_base_patch14_dinov2",
        "vitl14": "vit_large_patch14_dinov2", "vitg14": "vit_giant_patch14_dinov2"}
FACETS = ("token", "key", "query", "value")


@dataclass(frozen=True)
class AnyLocOptions(VLADOptions):
    """The foundation model (a pretrained ResNet trunk or a DINOv2 ViT), its layer and facet, the input size."""

    backbone: str = "trunk"  # trunk (init=: a ResNet trunk, its last stage's map) | dinov2 (weights=: official)
    init: str = "kotka-r18"  # the trunk for backbone=trunk: a registered name or a trunk file
    cut: str = "layer3"  # the trunk's last stage (its output is the dense feature map)
    weights: str = ""  # backbone=dinov2: an official DINOv2 hub checkpoint of the `vit` size
    vit: str = "vitg14"  # vits14 | vitb14 | vitl14 | vitg14
    layer: int = 31  # backbone=dinov2: the block whose facet is read (0-based; AnyLoc: 31 of ViT-G's 40)
    facet: str = "value"  # token (the block's output) | key | query | value (of its attention)
    image_h: int = 120
    image_w: int = 160
    clusters: int = 32  # AnyLoc's vocabulary size


def load_dinov2(model: nn.Module, path: Path) -> None:
    """An official DINOv2 hub state dict into a timm DINOv2 ViT, strictly (SwiGLU `w12`/`w3` as `fc1`/`fc2`,
    `mask_token` dropped: it only serves DINOv2's training)."""
    state = load_weights_file(path)
    if not isinstance(state, dict):
        raise BenchmarkError(f"DINOv2 weights {path} hold no state dict")
    state = {re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", k)): v
             for k, v in state.items() if k != "mask_token"}
    check_state_dict(model, state, f"DINOv2 weights {path} (pass the official checkpoint of this `vit` size)")


class ViTFacet(nn.Module):
    """A DINOv2 ViT read at one block: its output tokens or its attention's keys, queries or values, patch
    tokens only, each L2-normalised: [B, N, C]."""

    def __init__(self, vit: nn.Module, layer: int, facet: str):
        super().__init__()
        if facet not in FACETS:
            raise BenchmarkError(f"anyloc: facet={facet!r}; use one of {', '.join(FACETS)}")
        if not 0 <= layer < len(vit.blocks):
            raise BenchmarkError(f"anyloc: layer={layer}; this ViT has blocks 0..{len(vit.blocks) - 1}")
        self.vit, self.layer, self.facet = vit, layer, facet

    def forward(self, images: Tensor) -> Tensor:
        """Dense, normalised features of the chosen facet."""
        m = self.vit
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))
        for block in m.blocks[:self.layer]:
            x = block(x)
        block = m.blocks[self.layer]
        if self.facet == "token":
            x = block(x)
        else:
            qkv = block.attn.qkv(block.norm1(x))
            x = qkv.unflatten(-1, (3, -1))[:, :, ("query", "key", "value").index(self.facet)]
        return F.normalize(x[:, m.num_prefix_tokens:], dim=-1)


class TrunkFeatures(nn.Module):
    """A ResNet trunk's last feature map as dense descriptors [B, h·w, C], each L2-normalised."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, images: Tensor) -> Tensor:
        """Dense, normalised trunk features."""
        return F.normalize(self.trunk(images).flatten(2).transpose(1, 2), dim=-1)


class AnyLoc(StartsFromTrunk, VLADMethod):
    """AnyLoc-VLAD through the shared retrieval pipeline: vocabulary from the database, no training."""

    name = "anyloc"
    Options = AnyLocOptions
    PRESETS = {"smoke": {"init": "scratch", "image_h": 48, "image_w": 64, "clusters": 4, "vocabulary_images": 50,
                         "descriptors_per_image": 20},
               "default": {},
               # AnyLoc-VLAD-DINOv2: ViT-G/14, layer 31, value facet, 32 hard clusters (needs weights=)
               "paper": {"backbone": "dinov2", "vit": "vitg14", "layer": 31, "facet": "value", "clusters": 32,
                         "image_h": 322, "image_w": 322, "init": "scratch", "vocabulary_images": 0,
                         "descriptors_per_image": 1000}}

    def preprocess(self, image: Image.Image) -> Tensor:
        """Resize to image_h x image_w, ImageNet mean/std (as DINOv2 and the ResNet trunks expect)."""
        return recipes.preprocess(image, self.options.image_h, self.options.image_w)

    def dense_features(self, dataset: Dataset) -> nn.Module:
        """The trunk's map, or the ViT facet (from the official weights)."""
        o = self.options
        if o.backbone == "trunk":
            if o.weights:
                raise BenchmarkError("anyloc: --weights is for backbone=dinov2; a trunk is given by init=")
            trunk, _ = resnet_sequential("resnet18", o.cut)
            loaded = load_trunk(o.init)
            if loaded is not None:
                apply_trunk(trunk, loaded)
                self._provenance = {"source": "file", "path": str(loaded.path), "sha256": loaded.sha256}
            return TrunkFeatures(trunk)
        if o.backbone != "dinov2":
            raise BenchmarkError(f"anyloc: backbone={o.backbone!r}; use trunk or dinov2")
        if o.vit not in VITS:
            raise BenchmarkError(f"anyloc: vit={o.vit!r}; use one of {', '.join(VITS)}")
        if not o.weights:
            raise BenchmarkError(f"anyloc: backbone=dinov2 needs the official {o.vit} weights: pass --weights PATH "
                                 f"(e.g. dinov2_{o.vit}_pretrain.pth)")
        if o.image_h % 14 or o.image_w % 14:
            raise BenchmarkError(f"anyloc: image_h and image_w must be multiples of 14 for a ViT/14 "
                                 f"(got {o.image_h}x{o.image_w})")
        vit = timm.create_model(VITS[o.vit], pretrained=False, num_classes=0, img_size=518, dynamic_img_size=True)
        path = Path(o.weights).expanduser()
        load_dinov2(vit, path)
        self._provenance = {"source": "file", "path": str(path), "sha256": file_sha256(path)}
        return ViTFacet(vit, o.layer, o.facet)

    def provenance(self) -> dict:
        """The trunk or ViT weights the features come from."""
        return getattr(self, "_provenance", {"source": "from-scratch"})
