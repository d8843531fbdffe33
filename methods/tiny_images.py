"""Tiny images (Torralba et al. 2008): training-free retrieval on tiny grey thumbnails."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from benchmark.dataset import Dataset
from methods.retrieval import RetrievalMethod, RetrievalOptions


@dataclass(frozen=True)
class TinyImagesOptions(RetrievalOptions):
    """Thumbnail side in pixels, grey or colour, and whether each thumbnail is made zero-mean."""

    size: int = 16
    grey: bool = True
    zero_mean: bool = True


class TinyImageEncoder(nn.Module):
    """Flatten a thumbnail, optionally subtract its mean, L2-normalise: a [B, C·s·s] descriptor."""

    def __init__(self, zero_mean: bool):
        super().__init__()
        self.zero_mean = zero_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, s, s] in [0, 1] -> [B, C·s·s] unit vectors."""
        flat = x.flatten(1)
        if self.zero_mean:
            flat = flat - flat.mean(dim=1, keepdim=True)
        return F.normalize(flat, dim=1)


class TinyImages(RetrievalMethod):
    """The classic tiny-images baseline through the shared retrieval pipeline."""

    name = "tiny-images"
    Options = TinyImagesOptions

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Area-average down to size×size (grey unless grey=false), as float in [0, 1]."""
        opts = self.options
        small = image.convert("L" if opts.grey else "RGB").resize((opts.size, opts.size), Image.Resampling.BOX)
        array = np.asarray(small, np.float32) / 255.0
        return torch.from_numpy(array[None] if opts.grey else array.transpose(2, 0, 1).copy())

    def build_encoder(self, dataset: Dataset) -> nn.Module:
        """No training: the encoder is a fixed normalisation."""
        return TinyImageEncoder(self.options.zero_mean)
