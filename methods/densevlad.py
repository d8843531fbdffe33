"""DenseVLAD (Torii et al., CVPR 2015 / PAMI 2018): dense multi-scale RootSIFT, VLAD over a k-means vocabulary of
the database's descriptors (hard assignment, intra- then global L2 normalisation), PCA-whitening; training-free
place recognition through the shared retrieval pipeline, then reverse geocoding.

The dense SIFT follows VLFeat's `vl_phow` defaults (bin sizes 4, 6, 8, 10 at step 2, a pre-blur of σ = bin / 6,
8 orientations, 4 x 4 spatial bins `bin` pixels apart with bilinear binning, a per-bin Gaussian window of
1.5 bins, clipping at 0.2, descriptors of low contrast zeroed) and 247code's RootSIFT, VLAD and whitening (no
mean subtracted). Deviations: zeroed (low-contrast) descriptors are left out of the VLAD instead of tying on a
kd-tree's first centre, the whitening adds `whiten_eps` x the mean eigenvalue to every eigenvalue, and the CPU
default keeps the renders' size with a smaller vocabulary and output (the `paper` preset has the published
640 px, 128 words and 4,096 dimensions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel1d
from PIL import Image
from torch import Tensor, nn

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from methods.vlad import VLADMethod, VLADOptions

ORIENTATIONS = 8
SPATIAL_BINS = 4
MAGNIF = 6.0  # vl_phow: pre-blur with sigma = bin size / magnif
CLIP = 0.2  # SIFT's clipping of the unit descriptor


@dataclass(frozen=True)
class DenseVLADOptions(VLADOptions):
    """Image size and the dense SIFT grid (vocabulary and whitening: VLADOptions)."""

    long_side: int = 0  # resize so the longer side has this many pixels (0: keep the image's size)
    bin_sizes: str = "4,6,8,10"  # SIFT spatial bin sizes in pixels, one descriptor grid each
    step: int = 2  # grid step in pixels
    window_size: float = 1.5  # the per-bin Gaussian window, in bins
    contrast_threshold: float = 0.005  # descriptors whose norm is below this are zeroed (and left out)
    dim: int = 1024  # PCA-whitened output size (0: the raw clusters x 128 VLAD)


def bin_sizes(text: str) -> list[int]:
    """'4,6,8,10' -> [4, 6, 8, 10]; anything else is one clear error."""
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise BenchmarkError(f"densevlad: bin_sizes={text!r}; give positive pixel sizes such as 4,6,8,10")
    return sizes


def separable(x: Tensor, kernel_x: Tensor, kernel_y: Tensor, stride: int = 1) -> Tensor:
    """Each channel of [B, C, H, W] correlated with `kernel_x` along W, then `kernel_y` along H (no padding), every
    `stride` pixels. Channels-last: oneDNN's depthwise convolution is about 10x faster on it than on NCHW."""
    channels = x.shape[1]
    x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, kernel_x.view(1, 1, 1, -1).expand(channels, 1, 1, -1), stride=(1, stride), groups=channels)
    return F.conv2d(x, kernel_y.view(1, 1, -1, 1).expand(channels, 1, -1, 1), stride=(stride, 1), groups=channels)


def blur(grey: Tensor, sigma: float, radius: int) -> Tensor:
    """[B, 1, H, W] smoothed by a Gaussian of `sigma` cut at `radius`, borders replicated (kornia's kernel)."""
    kernel = get_gaussian_kernel1d(2 * radius + 1, sigma, device=grey.device, dtype=grey.dtype)[0]
    padded = F.pad(grey, (radius,) * 4, mode="replicate")
    # the images become the channels of one depthwise convolution: a single-channel one is slow on oneDNN
    return separable(padded.transpose(0, 1), kernel, kernel).transpose(0, 1)


def orientation_histograms(grey: Tensor) -> Tensor:
    """[B, 1, H, W] -> [B, 8, H, W]: each pixel's gradient magnitude split between its two nearest of 8
    orientation bins (bin 0 points along +x, bins turn counter-clockwise in image coordinates)."""
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")[:, 0]  # central differences, borders replicated
    gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) * 0.5
    gy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) * 0.5
    magnitude = torch.hypot(gx, gy)
    position = torch.remainder(torch.atan2(gy, gx), 2 * math.pi) / (2 * math.pi / ORIENTATIONS)
    low = torch.floor(position)
    upper = position - low
    low = low.long() % ORIENTATIONS
    # built channels-last ([B, H, W, 8]) for the depthwise convolutions that pool it
    hist = grey.new_zeros(grey.shape[0], *grey.shape[2:], ORIENTATIONS)
    hist.scatter_add_(-1, low[..., None], (magnitude * (1 - upper))[..., None])
    hist.scatter_add_(-1, ((low + 1) % ORIENTATIONS)[..., None], (magnitude * upper)[..., None])
    return hist.permute(0, 3, 1, 2)


def dense_sift(grey: Tensor, bin_size: int, step: int, window_size: float = 1.5,
               contrast_threshold: float = 0.005) -> Tensor:
    """[B, 1, H, W] in [0, 1] -> RootSIFT descriptors [B, N, 128] on a `step` grid (4 x 4 bins of `bin_size`
    pixels each; N = 0 when the image is smaller than a descriptor). Low-contrast descriptors are all zero."""
    # the pooled map loses 2 (bin - 1) pixels, and a descriptor spans 3 bins + 1 of it
    span = (SPATIAL_BINS - 1) * bin_size
    if min(grey.shape[-2:]) - 2 * (bin_size - 1) <= span:
        return grey.new_zeros(grey.shape[0], 0, ORIENTATIONS * SPATIAL_BINS ** 2)
    sigma = bin_size / MAGNIF
    radius = max(1, math.ceil(4 * sigma))
    hist = orientation_histograms(blur(grey, sigma, radius))
    # bilinear spatial binning: a triangular kernel of half-width bin_size, separable, per orientation, evaluated
    # only every `stride` pixels: every bin centre read below (bin · i + step · k) lies on that grid
    stride = math.gcd(bin_size, step)
    offsets = torch.arange(-bin_size + 1, bin_size, dtype=grey.dtype, device=grey.device)
    tri = 1 - offsets.abs() / bin_size
    pooled = separable(hist, tri, tri, stride).permute(0, 2, 3, 1)  # [B, H', W', 8]
    hop, jump = bin_size // stride, step // stride
    centre = torch.arange(SPATIAL_BINS, dtype=grey.dtype, device=grey.device) - (SPATIAL_BINS - 1) / 2
    window = torch.exp(-(centre[:, None] ** 2 + centre[None, :] ** 2) / (2 * window_size ** 2))
    # windows of the 4 bins a descriptor spans, starting every `step` pixels, as views: [B, rows, cols, 8, 4, 4]
    size = (SPATIAL_BINS - 1) * hop + 1
    cells = pooled.unfold(1, size, jump)[..., ::hop].unfold(2, size, jump)[..., ::hop]
    desc = torch.mul(cells, window, out=cells.new_empty(cells.shape))  # one copy, VLFeat's orientation-major order
    return root_sift(desc.view(grey.shape[0], -1, ORIENTATIONS * SPATIAL_BINS ** 2), contrast_threshold, True)


def root_sift(desc: Tensor, contrast_threshold: float = 0.0, inplace: bool = False) -> Tensor:
    """SIFT normalisation (L2, clip at 0.2, L2) then RootSIFT (L1, square root): unit L2 rows; rows whose
    norm is below `contrast_threshold` become zero. `inplace` reuses `desc`'s memory."""
    norm = desc.norm(dim=-1, keepdim=True)
    unit = (desc.div_ if inplace else desc.div)(norm.clamp_min(1e-12)).clamp_(max=CLIP)
    keep = (norm >= max(contrast_threshold, 1e-12)).to(desc.dtype)
    unit.mul_(keep / unit.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return unit.div_(unit.sum(dim=-1, keepdim=True) + 1e-12).sqrt_()


class DenseRootSIFT(nn.Module):
    """Grey images [B, 1, H, W] -> RootSIFT descriptors [B, N_s, 128], one tensor per scale."""

    def __init__(self, sizes: list[int], step: int, window_size: float, contrast_threshold: float):
        super().__init__()
        self.sizes, self.step = sizes, step
        self.window_size, self.contrast_threshold = window_size, contrast_threshold

    def forward(self, images: Tensor) -> list[Tensor]:
        """Each scale's descriptors, low-contrast ones zero (kept apart: VLAD sums them scale by scale)."""
        return [dense_sift(images, b, self.step, self.window_size, self.contrast_threshold) for b in self.sizes]


class DenseVLAD(VLADMethod):
    """DenseVLAD through the shared retrieval pipeline: vocabulary and whitening from the database images."""

    name = "densevlad"
    Options = DenseVLADOptions
    PRESETS = {"smoke": {"bin_sizes": "4,6", "step": 4, "clusters": 8, "dim": 32, "vocabulary_images": 50, "whiten_images": 0,
                         "descriptors_per_image": 50},
               "default": {},
               "paper": {"long_side": 640, "clusters": 128, "dim": 4096, "vocabulary_images": 0, "whiten_images": 0,
                         "descriptors_per_image": 1000}}

    def preprocess(self, image: Image.Image) -> Tensor:
        """Grey, resized so the longer side is `long_side` (if set), as float in [0, 1]: [1, H, W]."""
        grey = image.convert("L")
        side = self.options.long_side
        if side > 0:
            scale = side / max(grey.size)
            grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                               Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(grey, np.float32) / 255.0)[None]

    def dense_features(self, dataset: Dataset) -> nn.Module:
        """Dense multi-scale RootSIFT on the configured grid."""
        o = self.options
        if o.step < 1:
            raise BenchmarkError(f"densevlad: step must be at least 1, got {o.step}")
        return DenseRootSIFT(bin_sizes(o.bin_sizes), o.step, o.window_size, o.contrast_threshold)
