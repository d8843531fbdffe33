"""AddressCLIP's losses against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from methods.addressclip.losses import (
    LossWeights,
    addressclip_loss,
    geography_loss,
    geography_target,
    normalised_manhattan,
    symmetric_infonce,
)


def test_infonce_by_hand_two_pairs():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(2.0)
    # logits = 2·V·Tᵀ = [[2, 1.2], [0, 1.6]]
    row = -(math.log(math.exp(2) / (math.exp(2) + math.exp(1.2))) + math.log(math.exp(1.6) / (1 + math.exp(1.6))))
    col = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6))))
    assert symmetric_infonce(image, text, scale).item() == pytest.approx((row + col) / 4, rel=1e-6)


def test_infonce_is_symmetric_in_its_two_modalities():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    torch.testing.assert_close(symmetric_infonce(a, b, scale), symmetric_infonce(b, a, scale))


def test_manhattan_on_min_max_normalised_utm():
    utm = torch.tensor([[100.0, 1000.0], [200.0, 1000.0], [100.0, 1050.0]])
    # per axis: east span 100 m, north span 50 m -> unit points (0,0), (1,0), (0,1)
    expected = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(normalised_manhattan(utm), expected)
    torch.testing.assert_close(geography_target(utm, "literal"), expected)
    torch.testing.assert_close(geography_target(utm, "similarity"), 1 - expected)


def test_constant_axis_does_not_divide_by_zero():
    utm = torch.tensor([[0.0, 5.0], [10.0, 5.0]])
    assert normalised_manhattan(utm).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_geography_loss_by_hand_both_forms():
    image = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # cosine similarity matrix: identity
    utm = torch.tensor([[0.0, 0.0], [10.0, 10.0]])  # D^U = [[0, 2], [2, 0]]
    # literal: mean((I - D)^2) = (1 + 4 + 4 + 1) / 4; similarity: mean((I - (1 - D))^2) = (0 + 1 + 1 + 0) / 4
    assert geography_loss(image, utm, "literal").item() == pytest.approx(2.5)
    assert geography_loss(image, utm, "similarity").item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        geography_loss(image, utm, "inverse")


def test_total_is_the_weighted_sum_and_terms_switch_off():
    g = torch.Generator().manual_seed(1)
    image, address, caption = (torch.randn(4, 8, generator=g) for _ in range(3))
    utm = torch.rand(4, 2, generator=g) * 100
    scale = torch.tensor(100.0)
    out = addressclip_loss(image, address, caption, utm, scale)
    torch.testing.assert_close(out["total"], out["address"] + 0.2 * out["caption"] + 0.8 * out["geography"])
    only = addressclip_loss(image, address, None, utm, scale, LossWeights(1.0, 0.0, 0.0))
    assert set(only) == {"address", "total"}
    torch.testing.assert_close(only["total"], out["address"])
    with pytest.raises(ValueError):
        addressclip_loss(image, address, None, utm, scale, LossWeights(1.0, 0.2, 0.0))
