"""Training augmentation: deterministic per (seed, call), off at strength 0, shape and dtype kept."""

from __future__ import annotations

import torch

from methods.training.augment import Photometric


def batch() -> torch.Tensor:
    return torch.randint(0, 256, (4, 3, 12, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_same_seed_same_augmentation_whatever_the_global_rng():
    a, b = Photometric(0.5, seed=1), Photometric(0.5, seed=1)
    torch.manual_seed(123)
    first = a(batch())
    torch.manual_seed(999)
    assert torch.equal(first, b(batch()))
    assert not torch.equal(a(batch()), first)  # the next call draws anew
    assert not torch.equal(Photometric(0.5, seed=2)(batch()), first)


def test_changes_pixels_but_not_shape_or_dtype_and_zero_is_off():
    out = Photometric(1.0)(batch())
    assert out.shape == batch().shape and out.dtype == torch.uint8 and not torch.equal(out, batch())
    assert torch.equal(Photometric(0.0)(batch()), batch())
