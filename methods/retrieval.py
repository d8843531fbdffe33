"""The shared two-stage pipeline: encoder -> faiss index of the database -> top-N -> coordinates ->
reverse geocoding -> k distinct sub-streets. Adapters supply only an encoder (and its training)."""

from __future__ import annotations

import dataclasses
import os
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import torch
from torch import nn

from benchmark.dataset import Dataset
from benchmark.distributed import barrier, secondary
from benchmark.errors import BenchmarkError
from benchmark.geocoder import Gazetteer, StreetMap, gazetteer_for, gps_noise, labelled_points, street_map_for
from benchmark.images import StoredRows, map_images
from benchmark.measure import StageClock, module_bytes
from benchmark.method import Footprint, Method, Prediction, QueryBatch
from benchmark.protocol import cache_root
from benchmark.streetnames import StreetNames, street_names_for


@dataclass(frozen=True)
class RetrievalOptions:
    """Options every retrieval method shares."""

    search_depth: int = 50  # database images retrieved per query; ≥ 10 for Recall@10
    index: str = "flat"  # flat (exact inner product) | ivfpq (approximate, compressed)
    ivf_lists: int = 0  # IVF-PQ coarse cells; 0 = about sqrt(database size)
    pq_bytes: int = 0  # IVF-PQ bytes per vector (sub-quantizers); 0 = the largest divisor of D up to 32
    nprobe: int = 16  # IVF-PQ cells visited per query
    rerank: int = 0  # IVF-PQ: re-rank rerank x search_depth approximate hits by exact inner product (0: none)
    shards: int = 1  # faiss.IndexShards of this many contiguous parts, searched in parallel threads
    store: str = "memory"  # database descriptors before indexing: memory | float32 | float16 (a file, streamed)
    # gazetteer (nearest labelled points) | streetmap (nearest sub-street geometry) | streetnames (a public service's
    # named ways and junctions, matched to the candidates by name: benchmark.streetnames.StreetNames)
    geocoder: str = "gazetteer"
    map: str = ""  # geocoder=streetnames on a dataset without a map of its own: a local OpenStreetMap .osm.pbf
    gps_noise_m: float = 0.0  # σ (m, per axis) of Gaussian GPS error on the database coordinates (seeded by --seed)


ADD_CHUNK = 65536  # rows converted to float32 and added at a time
STORES = {"memory": None, "float32": np.float32, "float16": np.float16}  # where database descriptors wait


def build_index(database: np.ndarray, options: RetrievalOptions) -> faiss.Index:
    """A CPU faiss index over L2-normalised rows: exact inner product, or IVF-PQ with inner-product metric
    (optionally re-ranking its hits exactly); with `shards` > 1 an IndexShards of contiguous parts searched in
    parallel (IVF-PQ's quantizers trained once, on all rows). The rows may be a float16 or float32 memory map:
    they are added chunk by chunk, so only the index itself is held in memory."""
    n, dim = database.shape
    if options.rerank < 0 or (options.rerank and options.index != "ivfpq"):
        raise BenchmarkError(f"rerank={options.rerank}: a positive factor, with index=ivfpq only")
    if options.shards < 1:
        raise BenchmarkError(f"shards={options.shards}: give at least 1")
    if options.index == "flat":
        template = faiss.IndexFlatIP(dim)
    elif options.index == "ivfpq":
        template = _trained_ivfpq(database, options)
    else:
        raise BenchmarkError(f"index={options.index!r}: use flat or ivfpq")
    count = max(1, min(options.shards, n))
    bounds = [n * i // count for i in range(count + 1)]
    shards = []
    for lo, hi in zip(bounds, bounds[1:]):
        index = faiss.clone_index(template) if count > 1 else template
        if options.rerank > 0:  # the full vectors are kept beside the codes, for the exact second pass
            index = faiss.IndexRefineFlat(index)
            index.k_factor = options.rerank
        for start in range(lo, hi, ADD_CHUNK):  # float32 one chunk at a time: a memory map is never copied whole
            index.add(np.ascontiguousarray(database[start:min(start + ADD_CHUNK, hi)], np.float32))
        shards.append(index)
    if count == 1:
        return shards[0]
    sharded = faiss.IndexShards(dim, True, True)  # threaded search; ids run on from shard to shard
    for index in shards:
        sharded.add_shard(index)  # faiss's wrapper keeps a reference to each shard
    return sharded


def _trained_ivfpq(database: np.ndarray, options: RetrievalOptions) -> faiss.Index:
    """An empty IVF-PQ index trained on the rows (a memory map: on a seeded sample of 256 rows per list)."""
    n, dim = database.shape
    lists = options.ivf_lists or max(1, int(round(np.sqrt(n))))
    lists = min(lists, n)
    m = options.pq_bytes or max(d for d in range(1, min(dim, 32) + 1) if dim % d == 0)
    if dim % m:
        raise BenchmarkError(f"pq_bytes={m} must divide the descriptor size {dim}")
    # faiss k-means wants ≥ 39 training points per centroid: 2^nbits PQ centroids per sub-quantizer.
    nbits = int(min(8, max(1, np.floor(np.log2(max(2.0, n / 39))))))
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, m, nbits, faiss.METRIC_INNER_PRODUCT)
    sample = database
    if isinstance(database, (np.memmap, StoredRows)) and n > 256 * lists:  # faiss would subsample anyway, after a full copy
        sample = database[np.sort(np.random.default_rng(0).choice(n, 256 * lists, replace=False))]
    index.train(np.ascontiguousarray(sample, np.float32))
    index.nprobe = min(options.nprobe, lists)
    return index


def index_nbytes(index: faiss.Index) -> int:
    """Resident bytes of an index: a flat index's vectors, the sum of its shards, else its serialised size."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexFlat):
        return int(index.ntotal) * index.d * 4
    if isinstance(index, faiss.IndexShards):
        return sum(index_nbytes(index.at(i)) for i in range(index.count()))
    return int(faiss.serialize_index(index).nbytes)


def index_to_device(index: faiss.Index, device: torch.device) -> faiss.Index:
    """The index to search with: on CUDA with faiss-gpu, a GPU copy (split across every visible GPU when there
    are several, `shard` mode); the CPU index otherwise, and for the re-ranking and CPU-sharded wrappers."""
    if isinstance(index, (faiss.IndexRefineFlat, faiss.IndexShards)):
        return index
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 1:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True
        return faiss.index_cpu_to_all_gpus(index, options)
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(resources, device.index or 0, index)
        gpu.referenced_objects = [resources]  # keep the resources alive as long as the index
        return gpu
    return index


GEOCODERS = ("gazetteer", "streetmap", "streetnames")
MAP_COVERAGE_M = 100.0  # a user-supplied map whose streets lie farther than this from the images is the wrong one
Geocoder = Gazetteer | StreetMap | StreetNames


def make_geocoder(dataset: Dataset, name: str, map_path: str = "") -> Geocoder:
    """The reverse geocoder named by the `geocoder` option; `map_path` (the `map` option) is a local OpenStreetMap
    extract for `streetnames` on a dataset whose protocol has no map (checked to cover the dataset)."""
    if map_path and name != "streetnames":
        raise BenchmarkError(f"map={map_path}: only geocoder=streetnames reads a map (geocoder={name!r})")
    if name == "gazetteer":
        return gazetteer_for(dataset)
    if name == "streetmap":
        return street_map_for(dataset)
    if name == "streetnames":
        if not map_path:
            return street_names_for(dataset)
        from protocols.city.streetnames import read_named_ways

        geocoder = street_names_for(dataset, read_named_ways(map_path))
        utm = labelled_points(dataset)[0]
        off = geocoder.coverage(utm[::max(1, len(utm) // 500)])
        if off > MAP_COVERAGE_M:
            raise BenchmarkError(f"map={map_path}: does not cover {dataset.name} (its labelled images lie a median "
                                 f"{off:.0f} m from the nearest named way; is it the right city?)")
        return geocoder
    raise BenchmarkError(f"geocoder={name!r}: use one of {', '.join(GEOCODERS)}")


def geocode_ranked(geocoder: Geocoder, coords: np.ndarray, scores: list[float], k: int
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
    addresses result, the list is filled with the geocoder's next-nearest addresses around the top-1
    coordinates (scored like the last retrieved image, keeping their distance order). With `gps_noise_m` the
    database coordinates carry a seeded GPS error (`benchmark.geocoder.gps_noise`), as real photo tags do; the
    geocoder's map and the Recall@N ground truth stay exact.
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
        """Build the geocoder and the encoder, index the database, and take the database's (noisy) GPS."""
        if self.options.search_depth < 10:
            raise BenchmarkError(f"{self.name}: search_depth must be at least 10 (Recall@10)")
        if not 0 <= self.options.gps_noise_m < float("inf"):
            raise BenchmarkError(f"{self.name}: gps_noise_m={self.options.gps_noise_m}; give a σ in metres ≥ 0")
        self.geocoder: Geocoder = make_geocoder(dataset, self.options.geocoder, self.options.map)
        if self.options.store not in STORES:
            raise BenchmarkError(f"{self.name}: store={self.options.store!r}; use one of {', '.join(STORES)}")
        self.encoder = self.build_encoder(dataset).to(self.ctx.device).eval()
        descriptors = self.database_descriptors(dataset)
        self.index = build_index(descriptors, self.options)
        if isinstance(descriptors, StoredRows):  # streamed to files for indexing only: the index holds them now
            barrier()  # under torchrun every process has built its index before the files go
            if not secondary():
                descriptors.delete()
        self.searcher = index_to_device(self.index, self.ctx.device)
        # The GPS tags of the database photos, noisy as a phone's when gps_noise_m > 0 (the geocoder's map is not).
        self.database_utm = gps_noise(dataset.utm("database"), self.options.gps_noise_m, self.ctx.seed, "database")
        self.depth = min(self.options.search_depth, self.index.ntotal)

    def database_descriptors(self, dataset: Dataset, positions: Sequence[int] | None = None) -> np.ndarray:
        """The encoder's descriptors [N, D] of the database images at `positions` (default: all), in order."""
        paths = dataset.paths("database")
        if positions is not None:
            paths = [paths[i] for i in positions]
        store = None
        if self.options.store != "memory":
            store = cache_root() / "descriptors" / f"{self.name}-{os.getpid()}-{id(self):x}.npy"
        with torch.inference_mode():
            return map_images(paths, self.preprocess, self.ctx.batch_size, self.encode,
                              f"{self.name}: indexing database", self.ctx.progress, shard=True, store=store,
                              dtype=STORES.get(self.options.store, np.float32))

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
        """Encoder weights; the index plus database coordinates; the geocoder's gazetteer or street map. The
        search structure is the index alone."""
        index_bytes = index_nbytes(self.index)
        return Footprint(model=module_bytes(self.encoder), database=index_bytes + self.database_utm.nbytes,
                         map=self.geocoder.nbytes, search=index_bytes)
