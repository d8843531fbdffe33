"""DenseVLAD's parts against hand-computed cases: RootSIFT, orientation binning, the dense grid, VLAD on a toy
vocabulary, the whitening; bad options. (The end-to-end run on `tiny` is the registry's smoke test.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, spatial_gradient

from benchmark.errors import BenchmarkError
from benchmark.method import RunContext, make_options
from benchmark.registry import METHODS
from methods.densevlad import bin_sizes, dense_sift, orientation_histograms, root_sift
from methods.retrieval import RetrievalMethod
from methods.vlad import VLADEncoder, vlad, whitening


def test_root_sift_by_hand():
    desc = torch.zeros(2, 128)
    desc[0, :2] = torch.tensor([3.0, 4.0])  # unit (0.6, 0.8) -> clipped (0.2, 0.2) -> (0.5, 0.5) in L1 -> sqrt
    desc[1, 0] = 1e-4  # below the contrast threshold: zeroed
    out = root_sift(desc, contrast_threshold=0.005)
    assert out[0, :2].tolist() == pytest.approx([math.sqrt(0.5)] * 2) and out[0, 2:].abs().sum() == 0
    assert out[1].abs().sum() == 0
    many = root_sift(torch.rand(50, 128))
    assert torch.allclose(many.norm(dim=1), torch.ones(50)) and (many >= 0).all()  # sqrt of an L1 unit vector


@pytest.mark.parametrize("dx, dy, bin_", [(1.0, 0.0, 0), (0.0, 1.0, 2), (-1.0, 0.0, 4), (1.0, 1.0, 1)])
def test_a_ramp_puts_its_gradient_into_its_orientation_bin(dx, dy, bin_):
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    image = (0.01 * (dx * xs + dy * ys))[None, None]
    hist = orientation_histograms(image)[0, :, 6, 6]
    assert float(hist[bin_]) == pytest.approx(0.01 * math.hypot(dx, dy), rel=1e-5)
    assert float(hist.sum()) == pytest.approx(float(hist[bin_]), rel=1e-5)


def test_the_dense_grid_and_flat_images():
    # a 40 x 40 image, bins of 4 px: the pooled map loses 2·(4 - 1) px, a descriptor spans 3 bins + 1: 11 x 11 at step 2
    assert dense_sift(torch.rand(1, 1, 40, 40), 4, 2).shape == (1, 121, 128)
    assert dense_sift(torch.full((1, 1, 40, 40), 0.5), 4, 2).abs().sum() == 0  # no contrast anywhere
    assert dense_sift(torch.rand(1, 1, 12, 12), 10, 2).shape == (1, 0, 128)  # smaller than one descriptor


def plain_dense_sift(grey: torch.Tensor, bin_: int, step: int) -> torch.Tensor:
    """The textbook dense SIFT: kornia's blur and gradient, every pixel pooled, a dilated unfold; then RootSIFT."""
    sigma = bin_ / 6
    radius = max(1, math.ceil(4 * sigma))
    grad = spatial_gradient(gaussian_blur2d(grey, 2 * radius + 1, (sigma, sigma), border_type="replicate"),
                            mode="diff", normalized=False)[:, 0] * 0.5
    angle = torch.remainder(torch.atan2(grad[:, 1], grad[:, 0]), 2 * math.pi) / (math.pi / 4)
    magnitude = torch.hypot(grad[:, 0], grad[:, 1])
    hist = torch.stack([magnitude * (1 - (angle - o).abs()).clamp(min=0)
                        + magnitude * (1 - (angle - 8 - o).abs()).clamp(min=0) for o in range(8)], dim=1)
    tri = 1 - torch.arange(-bin_ + 1, bin_).abs() / bin_
    kernel = (tri[:, None] * tri[None, :]).expand(8, 1, -1, -1)
    cells = F.unfold(F.conv2d(hist, kernel, groups=8), kernel_size=4, dilation=bin_, stride=step)
    centre = torch.arange(4.0) - 1.5
    window = torch.exp(-(centre[:, None] ** 2 + centre[None, :] ** 2) / (2 * 1.5 ** 2)).flatten()
    desc = (cells.view(len(grey), 8, 16, -1) * window[None, :, None]).flatten(1, 2).transpose(1, 2)
    return root_sift(desc, 0.005)


@pytest.mark.parametrize("bin_, step", [(4, 2), (6, 4), (4, 3), (10, 2)])
def test_dense_sift_equals_the_textbook_computation(bin_, step):
    """Strided pooling and windowed views (the fast path) give what pooling every pixel and unfolding gives,
    also when the step does not divide the bin size."""
    grey = torch.rand(2, 1, 64, 81, generator=torch.Generator().manual_seed(0))
    fast, plain = dense_sift(grey, bin_, step), plain_dense_sift(grey, bin_, step)
    assert fast.shape == plain.shape and fast.shape[1] > 0
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)


def test_vlad_of_parts_and_of_chunks_equals_vlad_of_the_whole():
    torch.manual_seed(0)
    desc, centroids = torch.rand(5, 30, 8), F.normalize(torch.rand(4, 8), dim=1)
    desc[:, ::7] = 0  # zero rows in every part: never counted
    whole = vlad(desc, centroids)
    torch.testing.assert_close(vlad([desc[:, :11], desc[:, 11:]], centroids), whole)
    features = torch.nn.Identity()
    torch.testing.assert_close(VLADEncoder(features, centroids, chunk=2).vlads(desc), whole)


def test_vlad_on_a_toy_vocabulary():
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    desc = torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.0, 0.0]]])  # the zero row is left out
    # cluster 0 gets (0, 0) + (-0.2, 0.6), intra-normalised; cluster 1's residual is zero
    expected = torch.tensor([-0.2, 0.6, 0.0, 0.0]) / math.hypot(0.2, 0.6)
    assert torch.allclose(vlad(desc, centroids)[0], expected, atol=1e-6)


def test_whitening_makes_the_fitted_second_moment_the_identity():
    rows = torch.randn(200, 6) @ torch.diag(torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])) + 1.0
    projection = whitening(rows, 4, eps=0.0)
    moment = (rows @ projection.T).T @ (rows @ projection.T) / len(rows)  # no mean subtracted, as 247code
    assert torch.allclose(moment, torch.eye(4), atol=1e-4)
    assert whitening(rows[:3], 4, 0.0)[3:].abs().sum() == 0  # 3 rows fit 3 components; the rest stay zero
    with pytest.raises(BenchmarkError, match="dim=7"):
        whitening(rows, 7, 0.0)


@pytest.mark.parametrize("text", ["", "a,b", "4,0"])
def test_bad_bin_sizes_are_one_clear_error(text):
    with pytest.raises(BenchmarkError, match="bin_sizes"):
        bin_sizes(text)


def test_the_whitening_images_are_indexed_from_their_fit_as_if_encoded_again(tiny_dataset, one_thread):
    """The database rows of the images that fitted the whitening are reused, not recomputed: the index must
    hold what encoding every database image afresh gives, in database order."""
    cls = METHODS.get("densevlad")
    total = len(tiny_dataset.paths("database"))
    opts = make_options(cls, "smoke", {"dim": "16", "whiten_images": str(total // 2)})
    method = cls(opts, RunContext(torch.device("cpu"), seed=0, preset="smoke", progress=False))
    method.prepare(tiny_dataset)
    indexed = method.index.reconstruct_n(0, method.index.ntotal)
    fresh = RetrievalMethod.database_descriptors(method, tiny_dataset)
    assert indexed.shape == fresh.shape == (total, 16)
    np.testing.assert_allclose(indexed, fresh, atol=1e-5)
