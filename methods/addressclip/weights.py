"""CLIP weight files: OpenAI CLIP and open_clip state-dict layouts in, ialbench checkpoints out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchmarkError
from methods.training.checkpoints import check_state_dict, load_weights_file

FORMAT = "ialbench-addressclip"
# Integers OpenAI's CLIP files carry next to the tensors (open_clip drops them the same way).
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def read_weights(path: str | Path) -> dict[str, Any]:
    """Read a weights file: a state dict, an open_clip training checkpoint, an OpenAI JIT archive or ours."""
    try:
        raw = load_weights_file(path)
    except BenchmarkError as error:
        try:  # OpenAI's released .pt files are TorchScript archives
            raw = torch.jit.load(str(Path(path).expanduser()), map_location="cpu").state_dict()
        except Exception:
            raise error from None
    if isinstance(raw, torch.jit.ScriptModule):
        raw = raw.state_dict()
    if not isinstance(raw, dict):
        raise BenchmarkError(f"weights file {path} holds a {type(raw).__name__}, not a state dict")
    return raw


def split_checkpoint(raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, bool]:
    """(CLIP state dict in open_clip key names, CoOp context or None, whether it is an ialbench-trained model)."""
    if raw.get("format") == FORMAT:
        return dict(raw["state_dict"]), raw.get("context"), True
    state = raw
    for key in ("state_dict", "model"):  # open_clip training checkpoints and common wrappers
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    out = {}
    for key, value in state.items():
        if key in OPENAI_EXTRAS:
            continue
        out[key.removeprefix("module.")] = value
    return out, None, False


def load_clip_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load into an open_clip CLIP: exact keys and shapes or one error naming what is missing/unexpected."""
    own_dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    # OpenAI files store most weights in float16; the model computes in float32.
    state = {k: v.to(own_dtypes[k]) if k in own_dtypes and v.is_floating_point() else v for k, v in state.items()}
    check_state_dict(model, state, source)


def checkpoint(state: dict[str, torch.Tensor], context: torch.Tensor | None, meta: dict[str, Any]) -> dict:
    """Our saved form: the CLIP state dict in open_clip layout, CoOp's context if any, and provenance."""
    out: dict[str, Any] = {"format": FORMAT, "state_dict": state, "meta": meta}
    if context is not None:
        out["context"] = context
    return out
