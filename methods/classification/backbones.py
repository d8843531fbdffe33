"""The classifiers' image backbones: a ResNet cut + GeM (the retrieval methods' trunk, the CPU presets) or an
open_clip ViT image tower with mean-pooled tokens (PIGEON's CLIP encoder, the paper presets), each with the
input normalisation it was trained with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from open_clip.model import _build_vision_tower
from torch import Tensor, nn

from benchmark.errors import BenchmarkError
from methods.addressclip.data import CLIP_MEAN, CLIP_STD
from methods.addressclip.model import model_config
from methods.addressclip.weights import read_weights, split_checkpoint
from methods.training.checkpoints import check_state_dict
from methods.vpr import recipes
from methods.vpr.backbones import resnet_sequential
from methods.vpr.heads import GeM

CLIP_PREFIX = "clip:"  # backbone=clip:<open_clip config>, e.g. clip:ViT-L-14-336-quickgelu


def is_clip(backbone: str) -> bool:
    """Whether `backbone` names an open_clip image tower rather than a ResNet."""
    return backbone.startswith(CLIP_PREFIX)


def clip_normalise(batch: Tensor) -> Tensor:
    """uint8 [B, 3, H, W] -> float, CLIP mean/std normalised."""
    mean = torch.tensor(CLIP_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def normaliser(backbone: str) -> Callable[[Tensor], Tensor]:
    """The input normalisation of a backbone: CLIP's for CLIP towers, ImageNet's for ResNets."""
    return clip_normalise if is_clip(backbone) else recipes.normalise


class ClipVisionTrunk(nn.Module):
    """An open_clip ViT image tower whose output is the mean of its tokens (PIGEON's embedding), projected to
    the joint width; the patch embedding and the first `frozen` transformer blocks can be frozen."""

    def __init__(self, config_name: str, frozen: int = 0):
        super().__init__()
        config = model_config(config_name)
        vision = dict(config["vision_cfg"])
        if "resnet" in vision or not isinstance(vision.get("layers"), int):
            raise BenchmarkError(f"backbone {CLIP_PREFIX}{config_name}: only ViT image towers are supported")
        self.tower = _build_vision_tower(config["embed_dim"], {**vision, "pool_type": "avg"},
                                         quick_gelu=bool(config.get("quick_gelu", False)))
        self.out_channels = int(config["embed_dim"])
        blocks = list(self.tower.transformer.resblocks)
        if not 0 <= frozen <= len(blocks):
            raise BenchmarkError(f"frozen={frozen}: {config_name} has {len(blocks)} transformer blocks; "
                                 f"use 0..{len(blocks)}")
        if frozen:
            stem = [self.tower.conv1, self.tower.ln_pre, *blocks[:frozen]]
            for p in [self.tower.class_embedding, self.tower.positional_embedding,
                      *(q for m in stem for q in m.parameters())]:
                p.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, D, 1, 1] (a 1x1 map, so the classifier's pooling keeps it as it is)."""
        return self.tower(images)[:, :, None, None]

    def load_clip(self, path: Path) -> None:
        """The image tower of a CLIP weights file (OpenAI or open_clip layout): its `visual.` keys, strictly."""
        state, _, _ = split_checkpoint(read_weights(path))
        visual = {k[len("visual."):]: v.float() if v.is_floating_point() else v
                  for k, v in state.items() if k.startswith("visual.")}
        check_state_dict(self.tower, visual, f"CLIP weights {path} (init=: pass a CLIP checkpoint of the "
                                             "backbone's architecture, OpenAI or open_clip layout)")


def build_backbone(backbone: str, cut: str, frozen: int) -> tuple[nn.Module, nn.Module, int]:
    """(trunk, pooling, channels) of a classifier backbone."""
    if is_clip(backbone):
        trunk = ClipVisionTrunk(backbone[len(CLIP_PREFIX):], frozen)
        return trunk, nn.Identity(), trunk.out_channels
    trunk, channels = resnet_sequential(backbone, cut, frozen)
    return trunk, GeM(), channels
