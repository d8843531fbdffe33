"""Backbones cut where each VPR method cuts them, with the key layouts of the official checkpoints.

All are built with random weights (torchvision `weights=None`, timm without pretrained weights); official
weights load later through `--weights`.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn

from benchmark.errors import BenchmarkError

RESNET_CHANNELS = {"resnet18": {"layer2": 128, "layer3": 256, "layer4": 512},
                   "resnet50": {"layer2": 512, "layer3": 1024, "layer4": 2048}}
RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _resnet(name: str) -> torchvision.models.ResNet:
    if name not in RESNET_CHANNELS:
        raise ValueError(f"backbone {name!r}: use one of {sorted(RESNET_CHANNELS)}")
    return getattr(torchvision.models, name)(weights=None)


def _freeze(modules: list[nn.Module]) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(False)


def resnet_sequential(name: str, cut: str, frozen: int = 0) -> tuple[nn.Sequential, int]:
    """ResNet children up to `cut` as one Sequential (dvgl/CosPlace layout: keys `0.`, `1.`, `4.`..`7.`).

    `frozen` is how many leading residual stages are frozen with the stem (CosPlace and dvgl freeze the
    stem and layer1..2, i.e. frozen=2). Returns the module and its output channels.
    """
    net = _resnet(name)
    children = list(net.children())[:4 + RESNET_LAYERS.index(cut) + 1]  # stem (4 modules) + stages
    trunk = nn.Sequential(*children)
    freeze_leading(trunk, frozen)
    return trunk, RESNET_CHANNELS[name][cut]


def freeze_leading(trunk: nn.Sequential, frozen: int) -> None:
    """Freeze the stem and the first `frozen` residual stages of a Sequential ResNet cut (0: nothing)."""
    stages = len(trunk) - 4
    if not 0 <= frozen <= stages:
        raise BenchmarkError(f"frozen={frozen}: this ResNet cut has {stages} residual stages; use 0..{stages}")
    if frozen:
        _freeze(list(trunk.children())[:4 + frozen])


class ResNetTrunk(nn.Module):
    """MixVPR/OpenVPRLab `ResNet`: the torchvision model under `model.`, stages after `cut` removed (set None)."""

    def __init__(self, name: str, cut: str = "layer3", frozen: int = 0):
        super().__init__()
        self.model = _resnet(name)
        self.model.avgpool = None
        self.model.fc = None
        self.stages = RESNET_LAYERS[:RESNET_LAYERS.index(cut) + 1]
        for stage in RESNET_LAYERS[len(self.stages):]:
            setattr(self.model, stage, None)
        self.out_channels = RESNET_CHANNELS[name][cut]
        if frozen:
            m = self.model
            _freeze([m.conv1, m.bn1] + [getattr(m, s) for s in RESNET_LAYERS[:frozen]])

    def forward(self, x: Tensor) -> Tensor:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        for stage in self.stages:
            x = getattr(m, stage)(x)
        return x


def vgg16_encoder(trainable_from: int = 24) -> tuple[nn.Sequential, int]:
    """Nanne's NetVLAD encoder: VGG16 `features[:-2]` (conv5_3 without its ReLU and max-pool), keys `0.`..`28.`.

    Layers before index `trainable_from` are frozen (Nanne trains conv5_1..conv5_3, i.e. from index 24).
    """
    features = list(torchvision.models.vgg16(weights=None).features.children())[:-2]
    _freeze(features[:trainable_from])
    return nn.Sequential(*features), 512


class DinoV2(nn.Module):
    """A ViT with the DINOv2 hub layout under `model.` (cls_token, pos_embed, mask_token, blocks with LayerScale).

    Built with timm (random weights). forward -> (patch features [B, C, H/p, W/p], class token [B, C]) after
    the final norm, as SALAD's backbone returns them; only the last `trainable_blocks` blocks train.
    Position embeddings are stored for 518x518 (37x37 patches, as the hub model) and interpolated.
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, patch_size: int = 14,
                 trainable_blocks: int = 4, grid: int = 37):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.model = VisionTransformer(img_size=grid * patch_size, patch_size=patch_size, embed_dim=embed_dim,
                                       depth=depth, num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True,
                                       init_values=1e-5, num_classes=0, global_pool="token",
                                       dynamic_img_size=True)
        self.model.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # unused at inference, kept for the layout
        self.patch_size = patch_size
        self.out_channels = embed_dim
        frozen = [self.model.patch_embed, *self.model.blocks[:max(0, depth - trainable_blocks)]]
        _freeze(frozen)
        self.model.cls_token.requires_grad_(False)
        self.model.pos_embed.requires_grad_(False)
        self.model.mask_token.requires_grad_(False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = x.shape
        tokens = self.model.forward_features(x)  # [B, 1+N, C], after the final norm
        grid = tokens[:, 1:].reshape(b, h // self.patch_size, w // self.patch_size, -1).permute(0, 3, 1, 2)
        return grid, tokens[:, 0]
