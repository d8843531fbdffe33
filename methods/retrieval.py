"""The shared two-stage pipeline: encoder -> faiss index of the database -> top-N -> coordinates ->
reverse geocoding -> k distinct sub-streets. Adapters supply only an encoder (and its training)."""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import torch
from torch import nn

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.geocoder import Gazetteer, StreetMap, gazetteer_for, street_map_for
from benchmark.images import map_images
from benchmark.measure import StageClock, module_bytes
from benchmark.method import Footprint, Method, Prediction, QueryBatch


@dataclass(frozen=True)
class RetrievalOptions:
    """Options every retrieval method shares."""

    search_depth: int = 50  # database images retrieved per query; ≥ 10 for Recall@10
    index: str = "flat"  # flat (exact inner product) | ivfpq (approximate, compressed)
    ivf_lists: int = 0  # IVF-PQ coarse cells; 0 = about sqrt(database size)
    pq_bytes: int = 0  # IVF-PQ bytes per vector (sub-quantizers); 0 = the largest divisor of D up to 32
    nprobe: int = 16  # IVF-PQ cells visited per query
    geocoder: str = "gazetteer"  # gazetteer (nearest labelled points) | streetmap (nearest sub-street geometry)




def build_index(database: np.ndarray, options: RetrievalOptions) -> faiss.Index:
    """A CPU faiss index over L2-normalised rows: exact inner product, or IVF-PQ with inner-product metric."""
    n, dim = database.shape
    if options.index == "flat":
        index = faiss.IndexFlatIP(dim)
    elif options.index == "ivfpq":
        lists = options.ivf_lists or max(1, int(round(np.sqrt(n))))
        lists = min(lists, n)
        m = options.pq_bytes or max(d for d in range(1, min(dim, 32) + 1) if dim % d == 0)
        if dim % m:
            raise BenchmarkError(f"pq_bytes={m} must divide the descriptor size {dim}")
        # faiss k-means wants ≥ 39 training points per centroid: 2^nbits PQ centroids per sub-quantizer.
        nbits = int(min(8, max(1, np.floor(np.log2(max(2.0, n / 39))))))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, m, nbits, faiss.METRIC_INNER_PRODUCT)
        index.train(database)
        index.nprobe = min(options.nprobe, lists)
    else:
        raise BenchmarkError(f"index={options.index!r}: use flat or ivfpq")
    index.add(database)
    return index


def index_to_device(index: faiss.Index, device: torch.device) -> faiss.Index:
    """The index to search with: a GPU copy when faiss-gpu is installed and the run is on CUDA, else itself."""
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(resources, device.index or 0, index)
        gpu.referenced_resources = resources  # keep the resources alive as long as the index
        return gpu
    return index


def make_geocoder(dataset: Dataset, name: str) -> Gazetteer | StreetMap:
    """The reverse geocoder named by the `geocoder` option."""
    if name == "gazetteer":
        return gazetteer_for(dataset)
    if name == "streetmap":
        return street_map_for(dataset)
    raise BenchmarkError(f"geocoder={name!r}: use gazetteer or streetmap")


def geocode_ranked(geocoder: Gazetteer | StreetMap, coords: np.ndarray, scores: list[float], k: int
                   ) -> tuple[list[str], list[float]]:
    """k distinct addresses from ranked coordinates [M, 2] with their scores: each position reverse-geocoded in
    rank order and de-duplicated (an address keeps the score of the first position that gave it); if fewer
    than k result, the next-nearest addresses around the first position fill the list, scored like the last."""
    nearest = geocoder.lookup(coords, 1)
    topk: list[str] = []
    out: list[float] = []
    for (hit,), s in zip(nearest, scores):
        if hit[0] not in topk:
            topk.append(hit[0])
            out.append(float(s))
            if len(topk) == k:
                return topk, out
    for address, _ in geocoder.lookup(coords[:1], k + len(topk))[0]:
        if address not in topk and len(topk) < k:
            topk.append(address)
            out.append(out[-1])
    return topk, out


class RetrievalMethod(Method):
    """Place recognition + reverse geocoding. Subclasses implement `build_encoder` and `preprocess`.

    Addresses: each retrieved image's coordinates are reverse-geocoded in rank order and de-duplicated,
    each address scored by the similarity of the first image that gave it; if fewer than k distinct
    addresses result, the list is filled with the gazetteer's next-nearest addresses around the top-1
    coordinates (scored like the last retrieved image, keeping their distance order).
    """

    family = "retrieval"
    # Options that change only the index, search or geocoding, never a trained encoder (cache keys skip them).
    PIPELINE_OPTIONS = frozenset(f.name for f in dataclasses.fields(RetrievalOptions))

    @abstractmethod
    def build_encoder(self, dataset: Dataset) -> nn.Module:
        """Return (training it first if needed) a module mapping images [B, ...] to L2-normalised [B, D]."""

    def encode(self, images: torch.Tensor) -> np.ndarray:
        """Descriptors of a preprocessed batch as float32 numpy."""
        return self.encoder(images.to(self.ctx.device)).float().cpu().numpy()

    def prepare(self, dataset: Dataset) -> None:
        """Build the encoder, index the database and build the gazetteer."""
        if self.options.search_depth < 10:
            raise BenchmarkError(f"{self.name}: search_depth must be at least 10 (Recall@10)")
        self.geocoder: Gazetteer | StreetMap = make_geocoder(dataset, self.options.geocoder)
        self.encoder = self.build_encoder(dataset).to(self.ctx.device).eval()
        self.index = build_index(self.database_descriptors(dataset), self.options)
        self.searcher = index_to_device(self.index, self.ctx.device)
        self.database_utm = dataset.utm("database")
        self.depth = min(self.options.search_depth, self.index.ntotal)

    def database_descriptors(self, dataset: Dataset, positions: Sequence[int] | None = None) -> np.ndarray:
        """The encoder's descriptors [N, D] of the database images at `positions` (default: all), in order."""
        paths = dataset.paths("database")
        if positions is not None:
            paths = [paths[i] for i in positions]
        with torch.inference_mode():
            return map_images(paths, self.preprocess, self.ctx.batch_size, self.encode,
                              f"{self.name}: indexing database", self.ctx.progress, shard=True)

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Encode, search, geocode: each stage on the clock."""
        with clock.stage("encode"):
            descriptors = np.ascontiguousarray(self.encode(batch.images))
        with clock.stage("search"):
            similarity, ids = self.searcher.search(descriptors, self.depth)
        with clock.stage("geocode"):
            return [self._addresses(s, i, k) for s, i in zip(similarity, ids)]

    def _addresses(self, similarity: np.ndarray, ids: np.ndarray, k: int) -> Prediction:
        found = ids >= 0  # an approximate index may return fewer than `depth` hits (id -1)
        similarity, ids = similarity[found], ids[found]
        if len(ids) == 0:
            raise RuntimeError(f"{self.name}: the index returned no neighbour; raise nprobe")
        coords = self.database_utm[ids]
        topk, scores = geocode_ranked(self.geocoder, coords, similarity.tolist(), k)
        top = coords[0]
        return Prediction(topk, scores, (float(top[0]), float(top[1])), ids.tolist())

    def footprint(self) -> Footprint:
        """Encoder weights; the index plus database coordinates; the geocoder's gazetteer or street map."""
        index_bytes = int(faiss.serialize_index(self.index).nbytes)
        return Footprint(model=module_bytes(self.encoder), database=index_bytes + self.database_utm.nbytes,
                         map=self.geocoder.nbytes)
