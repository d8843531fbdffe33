"""Training-free VLAD retrieval, shared by DenseVLAD (dense RootSIFT) and AnyLoc (a network's dense features): a
k-means vocabulary of descriptors sampled from the database, hard assignment to the nearest unit centre,
residuals summed per centre, intra- and global L2 normalisation, and an optional PCA-whitening fitted on the
database's VLADs (247code's: no mean subtracted). A subclass gives the dense features of a batch."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.images import map_images
from methods.retrieval import RetrievalMethod, RetrievalOptions


@dataclass(frozen=True)
class VLADOptions(RetrievalOptions):
    """Vocabulary, whitening and how much of the database fits them."""

    clusters: int = 64  # visual words
    dim: int = 0  # PCA-whitened output size (0: the raw clusters x D VLAD)
    vocabulary_images: int = 500  # database images whose descriptors train the vocabulary (0: all)
    descriptors_per_image: int = 200  # descriptors sampled from each of them
    whiten_images: int = 2000  # database images whose VLADs fit the whitening (0: all)
    whiten_eps: float = 1e-2  # added to each eigenvalue, as a fraction of their mean


def vlad(desc: Tensor | Sequence[Tensor], centroids: Tensor) -> Tensor:
    """VLADs of a batch of descriptor sets [B, N, D], or of their parts [B, N_i, D] (e.g. one per scale), over
    unit centroids [K, D]: hard assignment, summed residuals per centroid, intra-normalised, then globally
    L2-normalised -> [B, K·D]. All-zero descriptors (e.g. SIFT's low-contrast ones) are left out."""
    parts = [desc] if isinstance(desc, Tensor) else list(desc)
    batch, d = parts[0].shape[0], parts[0].shape[-1]
    sums = parts[0].new_zeros(batch, len(centroids), d)
    counts = parts[0].new_zeros(batch, len(centroids))
    for part in parts:  # residual sums add up over parts, so no part is copied into one big set
        # nearest unit centroid = largest dot product minus half its squared norm (all 1)
        assign = (part @ centroids.T).argmax(dim=-1)  # [B, N]
        # an all-zero row adds nothing to the sums; it only must not be counted
        sums.scatter_add_(1, assign[..., None].expand(-1, -1, d), part)
        counts.scatter_add_(1, assign, part.any(dim=-1).to(part.dtype))
    residuals = sums - counts[..., None] * centroids[None]
    return F.normalize(F.normalize(residuals, dim=-1).flatten(1), dim=-1)


def descriptor_sets(desc: Tensor | Sequence[Tensor]) -> Tensor:
    """A dense feature module's output as one [B, N, D] tensor (its parts concatenated)."""
    return desc if isinstance(desc, Tensor) else torch.cat(list(desc), dim=1)


def whitening(vlads: Tensor, dim: int, eps: float) -> Tensor:
    """The projection [dim, D] of 247code's PCA-whitening, fitted on rows [n, D] without subtracting their
    mean: the top `dim` right singular vectors scaled by (eigenvalue + eps · mean eigenvalue)^-1/2."""
    if dim > vlads.shape[1]:
        raise BenchmarkError(f"dim={dim} exceeds the VLAD size {vlads.shape[1]}")
    _, s, vh = torch.linalg.svd(vlads.double(), full_matrices=False)
    eigen = s ** 2 / len(vlads)
    keep = min(dim, len(eigen))
    scale = (eigen[:keep] + eps * eigen.mean()).rsqrt()
    projection = vh[:keep] * scale[:, None]
    if keep < dim:  # fewer fitting rows than output dimensions: the rest stay zero
        projection = torch.cat([projection, projection.new_zeros(dim - keep, projection.shape[1])])
    return projection.float()


def vocabulary(descriptors: np.ndarray, clusters: int, seed: int) -> Tensor:
    """k-means (faiss, 25 iterations, every sample used) centres of descriptor rows, L2-normalised."""
    if len(descriptors) < clusters:
        raise BenchmarkError(f"{len(descriptors)} descriptors for {clusters} clusters: sample more images or "
                             "descriptors, or use fewer clusters")
    kmeans = faiss.Kmeans(descriptors.shape[1], clusters, niter=25, seed=seed,
                          max_points_per_centroid=max(256, len(descriptors) // clusters + 1))
    kmeans.train(np.ascontiguousarray(descriptors, np.float32))
    return F.normalize(torch.from_numpy(kmeans.centroids.copy()), dim=1)


class VLADEncoder(nn.Module):
    """Images -> L2-normalised VLADs [B, K·D] of a dense feature module's descriptors, whitened to [B, dim]
    when a projection is set; `chunk` images at a time through the features (0: the whole batch)."""

    def __init__(self, features: nn.Module, centroids: Tensor, projection: Tensor | None = None, chunk: int = 0):
        super().__init__()
        self.features, self.chunk = features, chunk
        self.register_buffer("centroids", centroids)
        self.register_buffer("projection", projection if projection is not None else torch.empty(0))

    def vlads(self, images: Tensor) -> Tensor:
        """The unwhitened VLADs [B, K·D]."""
        chunks = images.split(self.chunk) if self.chunk else [images]
        return torch.cat([vlad(self.features(chunk), self.centroids) for chunk in chunks])

    def whiten(self, vlads: Tensor) -> Tensor:
        """Unwhitened VLADs -> the output descriptors (projected and re-normalised when a projection is set)."""
        if self.projection.numel():
            return F.normalize(vlads @ self.projection.T, dim=1)
        return vlads

    def forward(self, images: Tensor) -> Tensor:
        """VLAD descriptors, whitened when a projection is set."""
        return self.whiten(self.vlads(images))


class VLADMethod(RetrievalMethod):
    """Retrieval on VLADs of dense descriptors: vocabulary (and whitening) from the database, no training."""

    @abstractmethod
    def dense_features(self, dataset: Dataset) -> nn.Module:
        """A module mapping a preprocessed batch to descriptors [B, N, D], or to a list of such parts whose
        union is each image's set (all-zero rows are ignored)."""

    def build_encoder(self, dataset: Dataset) -> nn.Module:
        """Sample database descriptors, cluster them, then fit the whitening on database VLADs."""
        o = self.options
        if o.clusters < 1 or o.dim < 0 or o.descriptors_per_image < 1:
            raise BenchmarkError(f"{self.name}: clusters and descriptors_per_image must be positive, dim ≥ 0")
        rng = np.random.default_rng(self.ctx.seed)
        paths = dataset.paths("database")
        features = self.dense_features(dataset).to(self.ctx.device).eval()

        def sample(images: Tensor) -> np.ndarray:
            rows = []
            for desc in descriptor_sets(features(images.to(self.ctx.device))).float().cpu():
                desc = desc[desc.abs().sum(dim=1) > 0].numpy()
                take = min(len(desc), o.descriptors_per_image)
                rows.append(desc[rng.choice(len(desc), size=take, replace=False)] if take else desc[:0])
            return np.concatenate(rows)

        with torch.inference_mode():
            vocabulary_paths = [paths[i] for i in _subset(len(paths), o.vocabulary_images, rng)]
            sampled = map_images(vocabulary_paths, self.preprocess, self.ctx.batch_size, sample,
                                 f"{self.name}: sampling descriptors", self.ctx.progress)
        # on a CPU, dense descriptors of 8 images at a time stay in cache: about 1.2x the throughput of 32
        encoder = VLADEncoder(features, vocabulary(sampled, o.clusters, self.ctx.seed).to(self.ctx.device),
                              chunk=8 if self.ctx.device.type == "cpu" else 0)
        self._whitened: tuple[np.ndarray, np.ndarray] | None = None
        if o.dim:
            fit = _subset(len(paths), o.whiten_images, rng)
            with torch.inference_mode():
                vlads = map_images([paths[i] for i in fit], self.preprocess, self.ctx.batch_size,
                                   lambda images: encoder.vlads(images.to(self.ctx.device)).cpu(),
                                   f"{self.name}: VLADs for the whitening", self.ctx.progress, shard=True)
                encoder.projection = whitening(vlads, o.dim, o.whiten_eps).to(self.ctx.device)
                # these database images are indexed from the VLADs just computed, not encoded a second time
                self._whitened = (fit, encoder.whiten(vlads.to(self.ctx.device)).float().cpu().numpy())
        return encoder

    def database_descriptors(self, dataset: Dataset, positions: Sequence[int] | None = None) -> np.ndarray:
        """The database descriptors; the whitening's images come from its fit, not from a second encoding (except
        with `store=`: then every row is encoded again and streamed to disk, as in the shared pipeline)."""
        fitted, self._whitened = getattr(self, "_whitened", None), None
        if positions is not None or fitted is None or self.options.store != "memory":
            return super().database_descriptors(dataset, positions)
        fit, whitened = fitted
        database = np.empty((len(dataset.paths("database")), whitened.shape[1]), np.float32)
        database[fit] = whitened
        rest = np.setdiff1d(np.arange(len(database)), fit)
        if len(rest):
            database[rest] = super().database_descriptors(dataset, rest.tolist())
        return database


def _subset(total: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of `count` of `total` items drawn by `rng` (all of them when count is 0 or too large)."""
    if count <= 0 or count >= total:
        return np.arange(total)
    return np.sort(rng.choice(total, size=count, replace=False))
