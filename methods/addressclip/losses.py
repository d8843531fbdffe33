"""AddressCLIP's losses (paper eq. 1-6): image-address and image-caption contrast, image-geography matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

GeoTarget = Literal["literal", "similarity"]


def symmetric_infonce(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Eq. 1-2: −1/(2N) Σ_i [log softmax_j(s·V_i·T_j)_i + log softmax_k(s·T_i·V_k)_i] on unit features."""
    logits = logit_scale * image @ text.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def normalised_manhattan(utm: torch.Tensor) -> torch.Tensor:
    """Eq. 3-4: D^U_ij = ‖Û_i − Û_j‖₁ with Û the batch's UTM min–max normalised per axis (a constant axis → 0)."""
    utm = utm.double()
    low, high = utm.min(dim=0).values, utm.max(dim=0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    unit = (utm - low) / span
    return torch.cdist(unit, unit, p=1)


def geography_target(utm: torch.Tensor, form: GeoTarget) -> torch.Tensor:
    """What the image similarities are matched to: D^U itself (eq. 5 read literally) or 1 − D^U."""
    distance = normalised_manhattan(utm)
    if form == "literal":
        return distance
    if form == "similarity":
        return 1.0 - distance
    raise ValueError(f"geography target must be 'literal' or 'similarity', got {form!r}")


def geography_loss(image: torch.Tensor, utm: torch.Tensor, form: GeoTarget) -> torch.Tensor:
    """Eq. 5: mean over the N×N pairs of (D^V_ij − target_ij)², D^V the cosine similarity of image features."""
    unit = F.normalize(image, dim=-1)
    similarity = unit @ unit.T
    target = geography_target(utm, form).to(similarity.dtype)
    return ((similarity - target) ** 2).mean()


@dataclass(frozen=True)
class LossWeights:
    """Eq. 6 weights: α (address), β (caption), γ (geography); 0 switches a term off."""

    address: float = 1.0
    caption: float = 0.2
    geography: float = 0.8


def addressclip_loss(
    image: torch.Tensor,
    address_text: torch.Tensor,
    caption_text: torch.Tensor | None,
    utm: torch.Tensor,
    logit_scale: torch.Tensor,
    weights: LossWeights = LossWeights(),
    geo_form: GeoTarget = "similarity",
) -> dict[str, torch.Tensor]:
    """Eq. 6: α·L_address + β·L_caption + γ·L_geography; returns every active term and 'total'."""
    image_unit = F.normalize(image, dim=-1)
    terms: dict[str, torch.Tensor] = {}
    if weights.address:
        terms["address"] = symmetric_infonce(image_unit, F.normalize(address_text, dim=-1), logit_scale)
    if weights.caption:
        if caption_text is None:
            raise ValueError("the caption term is on but no caption features were given")
        terms["caption"] = symmetric_infonce(image_unit, F.normalize(caption_text, dim=-1), logit_scale)
    if weights.geography:
        terms["geography"] = geography_loss(image, utm, geo_form)
    if not terms:
        raise ValueError("every loss weight is zero")
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return {**terms, "total": total}
