"""Frozen leading stages computed once. With `cache_frozen=true` a ResNet trunk's stem and first `frozen` stages
run once over the training split (in eval mode, so their batch norms use the pretrained running statistics),
and every step runs only the remaining stages on the cached output.

The frozen part of a step is the same function of the image every epoch, so computing it once gives the same
gradients as recomputing it — as long as its input does not change between epochs. Photometric augmentation
changes it, hence `cache_frozen` requires `augment=0`. On a CPU a ResNet-18 cut after layer3 with 2 frozen
stages spends about two thirds of a training step's trunk time in the frozen part (forward only); caching it
makes that part free after one pass over the split.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from benchmark.distributed import gather_rows, shard_bounds
from benchmark.errors import BenchmarkError
from benchmark.images import LazyImages

STEM = 4  # conv1, bn1, relu, maxpool


def check_cache(name: str, frozen: int, cache: bool, augment: float) -> None:
    """One clear error for a cache that would change what is trained."""
    if not cache:
        return
    if frozen <= 0:
        raise BenchmarkError(f"{name}: cache_frozen=true caches the frozen stages; set frozen=1.. (or cache_frozen="
                             "false)")
    if augment > 0:
        raise BenchmarkError(f"{name}: cache_frozen=true needs augment=0 (photometric augmentation changes the "
                             "frozen stages' input every epoch)")


def trunk_modules(trunk: nn.Module) -> list[nn.Module]:
    """A ResNet cut's modules in order: stem (4), then its residual stages (dvgl Sequential or ResNetTrunk)."""
    inner, stages = getattr(trunk, "model", None), getattr(trunk, "stages", None)
    if isinstance(trunk, nn.Sequential):
        modules = list(trunk.children())
    elif inner is not None and stages is not None:
        modules = [inner.conv1, inner.bn1, inner.relu, inner.maxpool, *(getattr(inner, s) for s in stages)]
    else:
        modules = []
    resnet = (len(modules) > STEM and isinstance(modules[0], nn.Conv2d) and isinstance(modules[1], nn.BatchNorm2d)
              and all(isinstance(m, nn.Sequential) for m in modules[STEM:]))
    if not resnet:
        raise BenchmarkError(f"cache_frozen=true works on ResNet trunks only, not on this {type(trunk).__name__}")
    return modules


def split_trunk(trunk: nn.Module, frozen: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(stem + first `frozen` stages, the remaining stages); both hold the trunk's own modules."""
    modules = trunk_modules(trunk)
    if not 0 < frozen < len(modules) - STEM + 1:
        raise BenchmarkError(f"frozen={frozen}: this trunk has {len(modules) - STEM} residual stages")
    return nn.Sequential(*modules[:STEM + frozen]), nn.Sequential(*modules[STEM + frozen:])


@dataclass
class _Cached:
    images: Tensor  # held, so that an identity check on it can never match a later tensor at the same address
    features: Tensor


_CACHED: dict[tuple[str, str], _Cached] = {}
_PROBE = torch.arange(0, 256, dtype=torch.uint8).repeat(3, 1).view(1, 3, 16, 16)


def _fingerprint(prefix: nn.Module, normalise: Callable[[Tensor], Tensor]) -> tuple[str, str]:
    """What the frozen stages compute: their weights and statistics, and the normalisation (by its output)."""
    weights = hashlib.sha256()
    for name, tensor in prefix.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    probe = normalise(_PROBE.to(next(prefix.parameters()).device)).cpu().contiguous().numpy().tobytes()
    return weights.hexdigest(), hashlib.sha256(probe).hexdigest()


@torch.no_grad()
def prefix_features(prefix: nn.Module, images: Tensor, normalise: Callable[[Tensor], Tensor], batch_size: int,
                    device: torch.device, desc: str = "frozen stages", progress: bool = False) -> Tensor:
    """The frozen stages' output for uint8 images [N, 3, H, W], in eval mode, as float32 on the CPU (float16 would
    halve the memory but move the trained stages' gradients by ~2 % through their batch norms).

    Kept for the next method of this process with the same frozen weights, normalisation and images tensor
    (the Kotka-started methods of the main job share them); callers must not modify it in place."""
    key = _fingerprint(prefix, normalise)
    kept = _CACHED.get(key)
    if kept is not None and kept.images is images:
        return kept.features
    was_training = prefix.training
    prefix.eval()
    chunks = []
    first, last = shard_bounds(len(images), batch_size)  # under torchrun: this process's batches, then all
    for lo in tqdm(range(first, last, batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        chunks.append(prefix(normalise(images[lo:lo + batch_size].to(device))).float().cpu())
    prefix.train(was_training)
    features = gather_rows(torch.cat(chunks) if chunks else None)
    _CACHED.clear()  # one entry: the features of a split are the largest tensor a run holds
    _CACHED[key] = _Cached(images, features)
    return features


@contextmanager
def rest_only(trunk: nn.Module, rest: nn.Module) -> Iterator[None]:
    """Within the block the trunk's forward runs only `rest`: its input is the cached frozen-stage output."""
    trunk.forward = rest.forward  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del trunk.forward


def cached_training(trunk: nn.Module, frozen: int, images: Tensor, normalise: Callable[[Tensor], Tensor],
                    batch_size: int, device: torch.device, desc: str, progress: bool
                    ) -> tuple[Tensor, contextlib.AbstractContextManager[None]]:
    """The one sequence every family runs: the frozen stages' features of `images`, and the block within which
    the trunk runs only its remaining stages on them."""
    if isinstance(images, LazyImages):
        raise BenchmarkError(f"{desc}: the training split ({len(images)} images) is read lazily, over the preload "
                             "limit ($IALBENCH_PRELOAD_GB); its frozen-stage features would not fit either: pass "
                             "cache_frozen=false")
    prefix, rest = split_trunk(trunk, frozen)
    features = prefix_features(prefix.to(device), images, normalise, batch_size, device, desc, progress)
    return features, rest_only(trunk, rest)
