"""CLIP weight files: OpenAI CLIP and open_clip state-dict layouts in, ialbench checkpoints out."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchmarkError
from methods.training.checkpoints import check_state_dict, half_state, load_weights_file, save_atomic

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


def save_clip_start(trained: Path, file: Path, about: str) -> None:
    """Write an ialbench-trained CLIP checkpoint as a start for other runs: the state dict in float16, no prompt
    context, `about` as its provenance; atomically."""
    raw = read_weights(trained)
    if raw.get("format") != FORMAT:
        raise BenchmarkError(f"{trained} is not an ialbench CLIP checkpoint; it cannot be a CLIP start")
    save_atomic(checkpoint(half_state(raw["state_dict"]), None, {"start": about}), file)


class _Opaque:
    """Stands in for any class a checkpoint pickled beside its tensors (Dassl's schedulers, optimisers): it takes
    whatever state it is given and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


_TENSOR_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                   ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
                   ("torch", "Size"), ("torch", "device"), ("torch", "dtype"), ("builtins", "set"),
                   ("torch", "float16"), ("torch", "float32"), ("torch", "bfloat16"),
                   *(("torch", f"{kind}Storage") for kind in ("Float", "Half", "BFloat16", "Double", "Long", "Int",
                                                              "Short", "Char", "Byte", "Bool"))}


class _TensorsOnly(pickle.Unpickler):
    """Unpickles tensors and containers; every other class becomes `_Opaque`, so no pickled code runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TENSOR_GLOBALS:
            return super().find_class(module, name)
        return _Opaque


class _TensorsOnlyPickle:  # the `pickle_module` torch.load takes
    Unpickler = _TensorsOnly
    load = pickle.load


PROMPT_BUFFERS = ("token_prefix", "token_suffix")  # the class names' fixed embeddings: not part of a prompt


def read_prompt_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The prompt learner's tensors from an official CoOp / CoCoOp / MaPLe checkpoint (Dassl's `model.pth.tar-N`:
    {"state_dict", "epoch", "optimizer", "scheduler", ...}; MaPLe's holds the whole model under
    `prompt_learner.`), without the class-specific `token_prefix`/`token_suffix` (as the official loaders drop
    them). Pickled optimiser and scheduler objects are read as opaque stand-ins, never run."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"prompt checkpoint {path} does not exist; pass prompts=PATH to a local CoOp / CoCoOp / "
                             "MaPLe checkpoint (e.g. prompt_learner/model.pth.tar-50)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorsOnlyPickle)
    except Exception as e:  # torch raises many types for a bad file
        raise BenchmarkError(f"prompt checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not state:
        raise BenchmarkError(f"prompt checkpoint {path} holds no state dict; pass a Dassl checkpoint of CoOp, CoCoOp "
                             "or MaPLe (prompt_learner/model.pth.tar-N or MultiModalPromptLearner/model.pth.tar-N)")
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith(("image_encoder.", "text_encoder.", "logit_scale")):  # MaPLe saves the frozen CLIP too
            continue
        key = key.removeprefix("prompt_learner.")
        if key in PROMPT_BUFFERS or not isinstance(value, torch.Tensor):
            continue
        out[key] = value.float() if value.is_floating_point() else value
    if "ctx" not in out:
        raise BenchmarkError(f"prompt checkpoint {path} has no prompt context (`ctx`); its keys: "
                             f"{', '.join(sorted(state)[:8])}")
    return out
