"""Training-time photometric augmentation shared by every trained method (kornia, seeded by torch's RNG).

Queries differ from the day-lit database and training views in lighting, exposure, haze and noise; the
upstream recipes train with colour augmentation for the same reason (CosPlace's ColorJitter, MixVPR's
RandAugment). Works on uint8 batches so each method keeps its own normalisation.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn


class Photometric(nn.Module):
    """Colour jitter, occasional grey and sensor noise, scaled by `strength` (0 switches it off).

    Its randomness depends only on (seed, call number), never on the global RNG's state.
    """

    def __init__(self, strength: float, seed: int = 0):
        super().__init__()
        s = float(strength)
        self.seed = seed
        self.calls = 0
        self.enabled = s > 0
        self.ops = nn.Sequential(
            K.ColorJitter(brightness=0.6 * s, contrast=0.5 * s, saturation=0.5 * s, hue=0.05 * s, p=0.9),
            K.RandomGrayscale(p=0.1 * min(s, 1.0)),
            K.RandomGaussianNoise(mean=0.0, std=0.03 * s, p=0.5),
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> augmented uint8 of the same shape."""
        if not self.enabled:
            return images
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + self.calls)
            out = self.ops(images.float() / 255.0).clamp_(0.0, 1.0)
        self.calls += 1
        return (out * 255.0).round_().to(torch.uint8)
