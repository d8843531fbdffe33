"""Aggregation heads of NetVLAD, GeM/CosPlace, MixVPR and SALAD with the official state_dict key names.

Each class reproduces the eval-mode forward of its official counterpart (see shared/reference/README.md);
the docstrings name the upstream class. Nothing here hard-codes a device.
"""

from __future__ import annotations

import math

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class L2Norm(nn.Module):
    """L2-normalise along one dimension (CosPlace `layers.L2Norm`)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2.0, dim=self.dim)


class NetVLAD(nn.Module):
    """NetVLAD layer: Nanne/pytorch-NetVlad `NetVLAD` (incl. `vladv2`) and dvgl `NetVLAD` (incl. tokens).

    Keys: `centroids` [K, C] and `conv.weight` ([K, C, 1, 1], or [K, C, 1] with `work_with_tokens`),
    plus `conv.bias` [K] with `vladv2`. Input [B, C, H, W], or [B, N, C] tokens; output [B, K*C].
    """

    def __init__(self, clusters_num: int = 64, dim: int = 128, normalize_input: bool = True,
                 work_with_tokens: bool = False, vladv2: bool = False) -> None:
        super().__init__()
        self.clusters_num = clusters_num
        self.dim = dim
        self.normalize_input = normalize_input
        self.work_with_tokens = work_with_tokens
        self.vladv2 = vladv2
        self.alpha = 0.0
        conv = nn.Conv1d if work_with_tokens else nn.Conv2d
        self.conv = conv(dim, clusters_num, kernel_size=1, bias=vladv2)
        self.centroids = nn.Parameter(torch.rand(clusters_num, dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.work_with_tokens:
            x = x.transpose(1, 2)  # [B, N, C] -> [B, C, N]
        if self.normalize_input:
            x = F.normalize(x, p=2, dim=1)
        assign = self.conv(x).flatten(2).softmax(dim=1)  # [B, K, N]
        feats = x.flatten(2)  # [B, C, N]
        # sum_n a_kn (x_n - c_k) = (A X^T)_k - (sum_n a_kn) c_k: upstream's per-cluster loop, vectorised.
        vlad = torch.bmm(assign, feats.transpose(1, 2)) - assign.sum(dim=2, keepdim=True) * self.centroids
        vlad = F.normalize(vlad, p=2, dim=2)  # intra-normalisation, per cluster
        return F.normalize(vlad.flatten(1), p=2, dim=1)  # cluster-major: index k*C + c

    @torch.no_grad()
    def init_from_descriptors(self, descriptors: Tensor, niter: int = 100, seed: int = 1234) -> float:
        """Set centroids by faiss k-means on local descriptors [N, C] and the assignment conv; return alpha.

        As upstream, vladv1 clusters L2-normalised descriptors (dvgl normalises them, Nanne appends an
        L2Norm to the encoder in cluster mode) and sets conv.weight = alpha * c/|c| with
        alpha = -log(0.01) / mean over descriptors of (top-1 minus top-2 dot product with the unit centroids).
        vladv2 clusters the raw descriptors and sets conv.weight = 2*alpha*c, conv.bias = -alpha*|c| (Nanne's
        formula) with alpha = -log(0.01) / mean over centroids of (d2^2 - d1^2), d1 <= d2 the distances to the
        two nearest descriptors. Nanne's code squares the *indices* returned by kneighbors there, which is a
        bug; the distances are used here.
        """
        descs = descriptors.detach().to(device="cpu", dtype=torch.float32)
        if not self.vladv2:
            descs = F.normalize(descs, p=2, dim=1)
        kmeans = faiss.Kmeans(self.dim, self.clusters_num, niter=niter, verbose=False, seed=seed)
        kmeans.train(np.ascontiguousarray(descs.numpy()))
        centroids = torch.from_numpy(kmeans.centroids.copy())
        if self.vladv2:
            d1_d2 = torch.cdist(centroids, descs).topk(2, dim=1, largest=False).values ** 2
            alpha = -math.log(0.01) / (d1_d2[:, 1] - d1_d2[:, 0]).mean().item()
            weight = 2.0 * alpha * centroids
        else:
            unit = F.normalize(centroids, p=2, dim=1)
            top2 = (unit @ descs.T).topk(2, dim=0).values
            alpha = -math.log(0.01) / (top2[0] - top2[1]).mean().item()
            weight = alpha * unit
        self.alpha = alpha
        self.centroids.copy_(centroids)  # copy_ casts to the parameters' own device and dtype
        self.conv.weight.copy_(weight.reshape(self.conv.weight.shape))
        if self.vladv2:
            self.conv.bias.copy_(-alpha * centroids.norm(dim=1))
        return alpha


class GeM(nn.Module):
    """Generalised-mean pooling with learnable p (shape [1]): [B, C, H, W] -> [B, C, 1, 1]."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / self.p)


class CosPlaceHead(nn.Sequential):
    """CosPlace/EigenPlaces aggregation: Sequential(L2Norm, GeM, Flatten, Linear, L2Norm).

    Keys `1.p`, `3.weight`, `3.bias` (prefix `aggregation.` in full checkpoints). The first L2Norm acts per
    location over channels, before GeM; moving it changes the descriptor.
    """

    def __init__(self, features_dim: int, fc_output_dim: int, p: float = 3.0) -> None:
        super().__init__(L2Norm(dim=1), GeM(p=p), nn.Flatten(), nn.Linear(features_dim, fc_output_dim),
                         L2Norm(dim=1))


class FeatureMixerLayer(nn.Module):
    """MixVPR Feature-Mixer: x + MLP(LayerNorm(x)) over the flattened H*W axis (key prefix `mix.`)."""

    def __init__(self, in_dim: int, mlp_ratio: float = 1) -> None:
        super().__init__()
        hidden = int(in_dim * mlp_ratio)
        self.mix = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, in_dim))
        for module in self.mix:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(x)


class MixVPR(nn.Module):
    """MixVPR aggregator (amaralibey/MixVPR `MixVPR`): [B, C, in_h, in_w] -> [B, out_channels*out_rows]."""

    def __init__(self, in_channels: int = 1024, in_h: int = 20, in_w: int = 20, out_channels: int = 512,
                 mix_depth: int = 1, mlp_ratio: float = 1, out_rows: int = 4) -> None:
        super().__init__()
        self.in_h, self.in_w = in_h, in_w
        self.in_channels, self.out_channels, self.out_rows = in_channels, out_channels, out_rows
        hw = in_h * in_w
        self.mix = nn.Sequential(*[FeatureMixerLayer(hw, mlp_ratio) for _ in range(mix_depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(hw, out_rows)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.in_h, self.in_w):
            expected = (self.in_h, self.in_w)
            raise ValueError(f"MixVPR expects {expected} feature maps, got {tuple(x.shape[-2:])}")
        x = self.mix(x.flatten(2))  # [B, C, H*W], row-major locations
        x = self.channel_proj(x.transpose(1, 2)).transpose(1, 2)  # [B, out_channels, H*W]
        x = self.row_proj(x)  # [B, out_channels, out_rows]
        return F.normalize(x.flatten(1), p=2, dim=-1)  # channel-major: index c*out_rows + r


def log_optimal_transport(scores: Tensor, dust_bin: Tensor, iters: int) -> Tensor:
    """SALAD/SuperGlue log-domain Sinkhorn on [B, m, n] scores plus a dustbin row; returns log P * (n+m).

    Rows (clusters and dustbin) are updated before columns; the marginals are 1/(n+m) per row and column,
    with (n-m)/(n+m) on the dustbin row, so n > m is required. Output is [B, m+1, n].
    """
    b, m, n = scores.shape
    if n <= m:
        raise ValueError(f"Sinkhorn with a dustbin needs more locations than clusters (n={n}, m={m})")
    couplings = torch.cat([scores, dust_bin.expand(b, 1, n)], dim=1)
    norm = -math.log(n + m)
    log_mu = scores.new_full((m + 1,), norm)
    log_mu[-1] = norm + math.log(n - m)
    log_nu = scores.new_full((n,), norm)
    u = scores.new_zeros(b, m + 1)
    v = scores.new_zeros(b, n)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(couplings + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(couplings + u.unsqueeze(2), dim=1)
    return couplings + u.unsqueeze(2) + v.unsqueeze(1) - norm


class SALAD(nn.Module):
    """SALAD aggregator (serizba/salad `SALAD`): forward((features [B, C, H, W], token [B, C])) -> [B, g+l*m].

    The output is [token (g), clusters (cluster_dim-major, index l*m + k)], each part L2-normalised and the
    whole normalised again. Dropout only acts in train mode.
    """

    def __init__(self, num_channels: int = 1536, num_clusters: int = 64, cluster_dim: int = 128,
                 token_dim: int = 256, dropout: float = 0.3, hidden_dim: int = 512,
                 sinkhorn_iters: int = 3) -> None:
        super().__init__()
        self.num_channels, self.num_clusters = num_channels, num_clusters
        self.cluster_dim, self.token_dim = cluster_dim, token_dim
        self.sinkhorn_iters = sinkhorn_iters

        def drop() -> nn.Module:
            return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.token_features = nn.Sequential(nn.Linear(num_channels, hidden_dim), nn.ReLU(),
                                            nn.Linear(hidden_dim, token_dim))
        self.cluster_features = nn.Sequential(nn.Conv2d(num_channels, hidden_dim, 1), drop(), nn.ReLU(),
                                              nn.Conv2d(hidden_dim, cluster_dim, 1))
        self.score = nn.Sequential(nn.Conv2d(num_channels, hidden_dim, 1), drop(), nn.ReLU(),
                                   nn.Conv2d(hidden_dim, num_clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: tuple[Tensor, Tensor]) -> Tensor:
        features, token = x
        f = self.cluster_features(features).flatten(2)  # [B, l, n]
        scores = self.score(features).flatten(2)  # [B, m, n]
        t = self.token_features(token)  # [B, g]
        p = log_optimal_transport(scores, self.dust_bin, self.sinkhorn_iters).exp()[:, :-1]  # drop dustbin
        local = torch.bmm(f, p.transpose(1, 2))  # [B, l, m]
        local = F.normalize(local, p=2, dim=1).flatten(1)
        return F.normalize(torch.cat([F.normalize(t, p=2, dim=-1), local], dim=-1), p=2, dim=-1)
