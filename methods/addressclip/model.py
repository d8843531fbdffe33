"""open_clip models for AddressCLIP: named configs (small CPU ones, the paper's ViT-B/16), built without download."""

from __future__ import annotations

import copy
from typing import Any

import open_clip
import torch
from open_clip.model import CLIP
from torch import nn

from benchmark.errors import BenchmarkError


# Small configs for training from scratch on a CPU. The vocabulary is CLIP's BPE (shipped in open_clip),
# so the token embedding keeps its 49,408 rows; the image side is 4:3 like the embedded city's renders.
# The "ial-r18" configs give CLIP the retrieval methods' image backbone (ResNet-18 cut after layer3, i.e. conv4,
# at their input size) with GeM pooling and a linear projection, so the comparison measures the method.
def _ial_r18(cut: str) -> dict[str, Any]:
    """The ial-r18 config with its ResNet-18 image tower cut after `cut`."""
    return {"embed_dim": 128,
            "vision_cfg": {"resnet": "resnet18", "cut": cut, "image_size": [64, 88]},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3}}


SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "ial-r18": _ial_r18("layer3"),
    # The backbone study (the paper's Fig. 5): the same tower cut one stage earlier or later; from the Kotka
    # trunk, the shallower cut takes its stages up to layer2, the deeper one starts layer4 fresh.
    "ial-r18-l2": _ial_r18("layer2"),
    "ial-r18-l4": _ial_r18("layer4"),
    "ial-r18-tiny": {
        "embed_dim": 64,
        "vision_cfg": {"resnet": "resnet18", "cut": "layer3", "image_size": [48, 64]},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "ial-small": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": [96, 128], "layers": 4, "width": 128, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
    },
    "ial-tiny": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": [48, 64], "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
}


def model_config(name: str) -> dict[str, Any]:
    """The config dict of one of our small models or of an open_clip built-in (e.g. 'ViT-B-16'), no download."""
    if name in SMALL_CONFIGS:
        return copy.deepcopy(SMALL_CONFIGS[name])
    config = open_clip.get_model_config(name)
    if config is None:
        known = ", ".join([*SMALL_CONFIGS, "or an open_clip config such as ViT-B-16"])
        raise BenchmarkError(f"unknown model {name!r}; choose {known}")
    if "custom_text" in config or "hf_model_name" in config.get("text_cfg", {}):
        raise BenchmarkError(f"model {name!r} has a custom text tower; only CLIP-style open_clip models are supported")
    return copy.deepcopy(config)


class ResNetTower(nn.Module):
    """A CLIP image tower on a ResNet trunk (the dvgl Sequential layout under `trunk.`): GeM, then a linear
    projection to the joint embedding."""

    def __init__(self, resnet: str, cut: str, image_size: list[int], embed_dim: int):
        super().__init__()
        from methods.vpr.backbones import resnet_sequential
        from methods.vpr.heads import GeM

        self.trunk, channels = resnet_sequential(resnet, cut)
        self.pool = GeM()
        self.proj = nn.Linear(channels, embed_dim)
        self.image_size = tuple(image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, embed_dim]."""
        return self.proj(self.pool(self.trunk(images)).flatten(1))


def build_clip(name: str, quick_gelu: bool, seed: int) -> CLIP:
    """A freshly initialised open_clip CLIP (weights depend only on `seed`)."""
    config = model_config(name)
    config.pop("quick_gelu", None)
    vision = config["vision_cfg"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if "resnet" not in vision:
            return CLIP(**config, quick_gelu=quick_gelu)
        tiny_vit = {"image_size": 16, "layers": 1, "width": 8, "head_width": 8, "patch_size": 16}
        model = CLIP(**{**config, "vision_cfg": tiny_vit}, quick_gelu=quick_gelu)
        model.visual = ResNetTower(vision["resnet"], vision["cut"], vision["image_size"], config["embed_dim"])
        return model


def image_size(model: CLIP) -> tuple[int, int]:
    """(height, width) the image tower takes."""
    size = model.visual.image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
