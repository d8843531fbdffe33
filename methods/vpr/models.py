"""Full VPR networks in the official module layouts, and loading of the official checkpoint files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from benchmark.errors import BenchmarkError
from methods.training.checkpoints import check_state_dict, load_weights_file

# Official layouts: (trunk attribute, head attribute).
NANNE = ("encoder", "pool")  # Nanne/pytorch-NetVlad main.py: nn.Module with encoder + pool
DVGL = ("backbone", "aggregation")  # dvgl GeoLocalizationNet, CosPlace/EigenPlaces GeoLocalizationNet
LIGHTNING = ("backbone", "aggregator")  # MixVPR / SALAD VPRModel (LightningModule)


class VPRNet(nn.Module):
    """trunk -> head as one module whose two children carry the official attribute names."""

    def __init__(self, layout: tuple[str, str], trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.layout = layout
        setattr(self, layout[0], trunk)
        setattr(self, layout[1], head)

    def forward(self, x: Tensor) -> Tensor:
        """Images [B, 3, H, W] -> L2-normalised descriptors [B, D]."""
        trunk, head = (getattr(self, name) for name in self.layout)
        return head(trunk(x))


_MODULE = re.compile(r"(^|\.)module\.")


def unwrap_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    """The model state_dict inside an official file: plain, {'state_dict': ...} (Nanne, Lightning) or
    {'model_state_dict': ...} (dvgl, CosPlace last_checkpoint), with DataParallel `module.` segments removed."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise BenchmarkError(f"{source} holds no state_dict (expected a dict of tensors, or one under "
                             "'state_dict' / 'model_state_dict')")
    return {_MODULE.sub(r"\1", key): value for key, value in obj.items()}


def load_official(model: nn.Module, path: str | Path) -> None:
    """Load an official checkpoint file strictly; any key or shape mismatch is one clear error."""
    state = unwrap_state_dict(load_weights_file(path), f"weights file {path}")
    check_state_dict(model, state, f"weights file {path}")
