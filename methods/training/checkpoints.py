"""Weight files: user-supplied ones read with one clear error when missing, unreadable or not fitting the model;
ours written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchmarkError


def load_weights_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load a user-supplied weights file, with one clear error if it is missing or unreadable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"weights file {path} does not exist; pass --weights PATH to a local checkpoint "
                             "(nothing is downloaded)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise BenchmarkError(f"weights file {path} cannot be read by torch.load ({type(e).__name__}: {e})") from None


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                     fresh: tuple[str, ...] = ()) -> None:
    """Load strictly (but for the model's keys under the `fresh` prefixes, which keep their values); on mismatch
    raise one error listing missing and unexpected keys (and shape clashes)."""
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.startswith(fresh))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append("shape mismatch: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                     for k in shapes]))
        raise BenchmarkError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=not fresh)


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then move it into place (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def half_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict on the CPU with its floating-point tensors in float16 (how ialbench ships pretrained starts)."""
    return {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu() for k, v in state.items()}
