"""The training options every trained method takes, declared once (method options inherit them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FitOptions:
    """Budget, optimiser, LR schedule and augmentation of the fit loop (`methods.training.loop.fit`).

    Defaults are the VPR recipes' CPU values; the CLIP methods override theirs (Adam, cosine, epochs).
    """

    steps: int = 300  # optimiser steps; when epochs > 0 a cap on them (0: no cap)
    epochs: int = 0  # passes over the training split, for recipes that iterate it; 0: `steps` decides
    batch: int = 8  # training examples per step: images, tuples, classes or places, as the recipe defines
    lr: float = 3e-4
    lr_min: float = 0.0  # the cosine schedule's last LR
    schedule: str = "constant"  # constant | cosine (both after a linear warm-up of warmup_steps)
    warmup_steps: int = 0
    optimizer: str = "adamw"  # sgd (momentum 0.9) | adam | adamw
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    accumulate: int = 1  # batches whose gradients are summed into one optimiser step
    bf16: bool = False  # bfloat16 autocast of the forward pass (CPU and CUDA)
    augment: float = 0.5  # photometric augmentation strength of training images (0: off)

