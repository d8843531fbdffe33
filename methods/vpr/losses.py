"""VPR training losses: triplet and SARE batch losses (dvgl, OpenIBL, Nanne), CosFace, MultiSimilarity.

Features for the batch losses follow the layout shared by dvgl, OpenIBL and Nanne: per query a block of
rows [query, positive, negative_1..negative_N], blocks stacked, i.e. [B*(2+N), D].
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Convention = Literal["dvgl", "openibl", "nanne"]
BatchLossName = Literal["triplet", "sare_ind", "sare_joint"]

# dvgl's --margin default is 0.1 on plain distances; Nanne (opt.margin**0.5) and OpenIBL's NetVLAD example
# (Trainer(margin=0.1**0.5)) take the square root, since the paper's margin is on squared distances.
TRIPLET_MARGIN: dict[str, float] = {"dvgl": 0.1, "openibl": math.sqrt(0.1), "nanne": math.sqrt(0.1)}


def _squared_distances(query: Tensor, positive: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
    """Squared Euclidean distances d(q, p) [B] and d(q, n_j) [B, N]."""
    d_pos = ((query - positive) ** 2).sum(dim=-1)
    d_neg = ((query.unsqueeze(1) - negatives) ** 2).sum(dim=-1)
    return d_pos, d_neg


def sare_ind(query: Tensor, positive: Tensor, negatives: Tensor) -> Tensor:
    """SARE individual loss per triplet, [B, N]: -log softmax(-[d(q,p), d(q,n_j)])[0], one softmax per n_j.

    query and positive are [B, D], negatives [B, N, D]; distances are squared Euclidean.
    """
    d_pos, d_neg = _squared_distances(query, positive, negatives)
    logits = -torch.stack([d_pos.unsqueeze(1).expand_as(d_neg), d_neg], dim=-1)  # [B, N, 2]
    return -F.log_softmax(logits, dim=-1)[..., 0]


def sare_joint(query: Tensor, positive: Tensor, negatives: Tensor) -> Tensor:
    """SARE joint loss per query, [B]: -log softmax(-[d(q,p), d(q,n_1), ..., d(q,n_N)])[0], one softmax.

    query and positive are [B, D], negatives [B, N, D]; distances are squared Euclidean.
    """
    d_pos, d_neg = _squared_distances(query, positive, negatives)
    logits = -torch.cat([d_pos.unsqueeze(1), d_neg], dim=1)  # [B, 1+N]
    return -F.log_softmax(logits, dim=1)[:, 0]


def split_tuples(features: Tensor, negs_num_per_query: int = 10) -> tuple[Tensor, Tensor, Tensor]:
    """Split [B*(2+N), D] features into queries [B, D], positives [B, D] and negatives [B, N, D]."""
    blocks = features.reshape(-1, 2 + negs_num_per_query, features.shape[-1])
    return blocks[:, 0], blocks[:, 1], blocks[:, 2:]


def batch_loss(features: Tensor, loss: BatchLossName = "triplet", convention: Convention = "dvgl",
               negs_num_per_query: int = 10, margin: float | None = None) -> Tensor:
    """The batch loss value as one repo's training loop computes it from [B*(2+N), D] features.

    convention="dvgl": deep-visual-geo-localization-benchmark train.py. Every criterion is summed and divided
      by B*N, so triplet and sare_ind are means over the B*N triplets, but sare_joint (one term per query) is
      the mean over queries divided by N. Triplet margin 0.1.
    convention="openibl": OpenIBL `Trainer._get_loss` (Euclidean version): triplet and sare_ind are means over
      the B*N triplets, sare_joint the mean over the B queries. Triplet margin sqrt(0.1).
    convention="nanne": Nanne/pytorch-NetVlad main.py, triplet only: summed over all (query, negative)
      pairs and divided by the number of negatives, i.e. the mean. Triplet margin sqrt(0.1).
    `margin` overrides the convention's triplet margin. Triplets use PyTorch's (non-squared) p=2 distance.
    """
    if convention not in TRIPLET_MARGIN:
        raise ValueError(f"unknown convention {convention!r}; expected one of {sorted(TRIPLET_MARGIN)}")
    if convention == "nanne" and loss != "triplet":
        raise ValueError("Nanne/pytorch-NetVlad trains with the triplet loss only")
    query, positive, negatives = split_tuples(features, negs_num_per_query)
    b, n = negatives.shape[:2]
    if loss == "triplet":
        anchors = query.unsqueeze(1).expand_as(negatives).reshape(b * n, -1)
        positives = positive.unsqueeze(1).expand_as(negatives).reshape(b * n, -1)
        per_triplet = F.triplet_margin_loss(anchors, positives, negatives.reshape(b * n, -1),
                                            margin=TRIPLET_MARGIN[convention] if margin is None else margin,
                                            p=2, reduction="none")
        return per_triplet.sum() / (b * n)
    if loss == "sare_ind":
        return sare_ind(query, positive, negatives).sum() / (b * n)
    if loss == "sare_joint":
        per_query = sare_joint(query, positive, negatives)
        return per_query.sum() / (b * n) if convention == "dvgl" else per_query.mean()
    raise ValueError(f"unknown loss {loss!r}; expected 'triplet', 'sare_ind' or 'sare_joint'")


def cosine_similarity_matrix(x1: Tensor, x2: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosines [N, M] between rows of x1 [N, D] and x2 [M, D] as CosPlace computes them (norms clamped)."""
    return x1 @ x2.T / torch.outer(x1.norm(dim=1), x2.norm(dim=1)).clamp(min=eps)


class MarginCosineProduct(nn.Module):
    """CosFace classifier head (CosPlace `cosface_loss.MarginCosineProduct`): s * (cos(x, W) - m * onehot).

    Key `weight` [out_features, in_features]; train with nn.CrossEntropyLoss() on the returned logits.
    """

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.4) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.s, self.m = s, m
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cosine = cosine_similarity_matrix(embeddings, self.weight)
        one_hot = F.one_hot(labels, self.out_features).to(cosine.dtype)
        return self.s * (cosine - self.m * one_hot)


def multisimilarity(epsilon: float = 0.1) -> tuple[nn.Module, nn.Module]:
    """MixVPR/SALAD's MultiSimilarity (loss, miner) from pytorch-metric-learning, configured as upstream.

    Loss: MultiSimilarityLoss(alpha=1, beta=50, base=0, distance=DotProductSimilarity()); miner:
    MultiSimilarityMiner(epsilon=0.1, distance=CosineSimilarity()). Not re-implemented on purpose.
    """
    from pytorch_metric_learning import losses, miners
    from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity

    loss = losses.MultiSimilarityLoss(alpha=1.0, beta=50, base=0.0, distance=DotProductSimilarity())
    miner = miners.MultiSimilarityMiner(epsilon=epsilon, distance=CosineSimilarity())
    return loss, miner
