"""PIGEON's haversine label smoothing (CVPR 2024, eq. 1): a cell's target decays with how much farther its
centroid is from the true position than the true cell's centroid is."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pyproj import Transformer

from benchmark.errors import BenchmarkError

EARTH_RADIUS_M = 6_371_000.0


def utm_to_latlon(utm: np.ndarray, zone: int, south: bool = False) -> np.ndarray:
    """[N, 2] UTM (east, north) in `zone` -> [N, 2] WGS84 (latitude, longitude) in degrees."""
    if not 1 <= zone <= 60:
        raise BenchmarkError(f"UTM zone {zone} is not in 1..60")
    epsg = (32700 if south else 32600) + zone
    transformer = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    utm = np.asarray(utm, np.float64).reshape(-1, 2)
    lon, lat = transformer.transform(utm[:, 0], utm[:, 1])
    return np.stack([lat, lon], axis=1)


def haversine_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres between (lat, lon) degrees, broadcasting a [..., 2] against b [..., 2]."""
    lat1, lon1 = np.radians(a[..., 0]), np.radians(a[..., 1])
    lat2, lon2 = np.radians(b[..., 0]), np.radians(b[..., 1])
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def smoothed_targets(centroids: np.ndarray, positions: np.ndarray, cells: np.ndarray, tau_m: float) -> np.ndarray:
    """[N, C] y_{n,i} = exp(-(Hav(g_i, x_n) - Hav(g_{c_n}, x_n)) / tau) for cell centroids g [C, 2] and true
    positions x [N, 2] (latitude, longitude), c_n the true cell. Not normalised, as in PIGEON: the true
    cell's target is 1 and a cell whose centroid is nearer than the true one's gets more than 1."""
    if tau_m <= 0:
        raise BenchmarkError(f"tau must be positive (metres), got {tau_m}")
    distance = haversine_m(positions[:, None, :], centroids[None, :, :])  # [N, C]
    own = distance[np.arange(len(positions)), np.asarray(cells)]
    return np.exp(-(distance - own[:, None]) / tau_m).astype(np.float32)


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-Σ_i y_{n,i} log p_{n,i}, averaged over the batch."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
