"""Large databases: descriptors streamed to a memory-mapped file (memory no longer grows with the database),
indexes built from it chunk by chunk, faiss.IndexShards, and the GPU copy where a GPU exists."""

from __future__ import annotations

import tracemalloc

import faiss
import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.cli import main
from benchmark.images import StoredRows, map_images
from benchmark.protocol import cache_root
from methods.retrieval import RetrievalOptions, build_index, index_nbytes, index_to_device

WIDTH = 20_000  # floats per row: 64 rows are 5 MB, one batch of 8 is 0.6 MB


@pytest.fixture
def images(tmp_path):
    """64 tiny image files, each a distinct grey level."""
    paths = []
    for i in range(64):
        path = tmp_path / f"{i:02d}.png"
        Image.new("L", (4, 4), i).save(path)
        paths.append(path)
    return paths


def encode(batch: torch.Tensor) -> np.ndarray:
    """Each image's grey level repeated WIDTH times: rows big enough to see in the allocator."""
    return np.repeat(batch[:, :1, 0, 0].numpy().astype(np.float32), WIDTH, axis=1)


def peak_bytes(fn) -> tuple[object, int]:
    """fn()'s result and the peak of Python-tracked allocations while it ran (numpy reports its buffers)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streamed_rows_equal_the_in_memory_ones_without_holding_them(images, tmp_path):
    transform = lambda im: torch.from_numpy(np.asarray(im.convert("L"), np.float32))[None]  # noqa: E731
    full, in_memory_peak = peak_bytes(lambda: map_images(images, transform, 8, encode))
    store = tmp_path / "rows.npy"
    streamed, streamed_peak = peak_bytes(lambda: map_images(images, transform, 8, encode, store=store))
    assert isinstance(streamed, StoredRows) and streamed.shape == full.shape == (64, WIDTH)
    np.testing.assert_array_equal(streamed, full)
    assert in_memory_peak > full.nbytes  # the list of batches and their concatenation
    assert streamed_peak < full.nbytes / 3  # about one batch, whatever the number of rows
    halves = map_images(images, transform, 8, encode, store=tmp_path / "half.npy", dtype=np.float16)
    assert halves.dtype == np.float16 and np.array_equal(halves, full.astype(np.float16))


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_shards_answer_like_one_index_and_memory_maps_index_like_arrays(tmp_path, kind):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3000, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rows[:50] + 0.05 * rng.standard_normal((50, 32)).astype(np.float32)
    options = RetrievalOptions(index=kind, pq_bytes=8)
    one = build_index(rows, options)
    three = build_index(rows, RetrievalOptions(index=kind, pq_bytes=8, shards=3))
    assert isinstance(three, faiss.IndexShards) and three.ntotal == 3000
    (s1, i1), (s3, i3) = one.search(queries, 10), three.search(queries, 10)
    np.testing.assert_array_equal(i1, i3)
    np.testing.assert_allclose(s1, s3, rtol=1e-5)
    if kind == "flat":
        assert index_nbytes(three) == index_nbytes(one) == 3000 * 32 * 4
    np.save(tmp_path / "rows.npy", rows)
    mapped = build_index(np.load(tmp_path / "rows.npy", mmap_mode="r"), options)
    np.testing.assert_array_equal(mapped.search(queries, 10)[1], i1)


def test_a_run_can_stream_and_shard_its_database(tmp_path, tiny_dataset):
    out = tmp_path / "runs"
    args = ["run", "-q", "--protocol", "tiny", "--preset", "smoke", "--latency-queries", "2", "--out", str(out)]
    assert main([*args, "--methods", "tiny-images:store=float16,shards=2,densevlad:store=float32"]) == 0
    assert not any((cache_root() / "descriptors").glob("*.npy"))  # the streamed file is gone once indexed
    assert main([*args, "--methods", "tiny-images:store=float32,shards=1"]) == 0
    assert main([*args, "--methods", "tiny-images:store=disk"]) == 2  # a store that does not exist: one error


@pytest.mark.skipif(not torch.cuda.is_available() or not hasattr(faiss, "StandardGpuResources"),
                    reason="needs CUDA and faiss-gpu (pip install -e '.[gpu]')")
def test_the_gpu_copy_answers_like_the_cpu_index():
    rows = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    cpu = build_index(rows, RetrievalOptions())
    gpu = index_to_device(cpu, torch.device("cuda"))
    np.testing.assert_array_equal(cpu.search(rows[:20], 5)[1], gpu.search(rows[:20], 5)[1])


def test_a_split_over_the_preload_limit_is_read_lazily(images, monkeypatch):
    from benchmark.errors import BenchmarkError
    from benchmark.images import LazyImages, decoded_once
    from methods.training.frozen import cached_training
    from methods.training.loop import TensorRows
    from methods.vpr.recipes import to_uint8

    transform = lambda im: to_uint8(im, 8, 8)  # noqa: E731
    full = decoded_once(("lazy-test", 8), images, transform, 8)
    monkeypatch.setenv("IALBENCH_PRELOAD_GB", "0")
    lazy = decoded_once(("lazy-test", 9), images, transform, 8)
    assert isinstance(full, torch.Tensor) and isinstance(lazy, LazyImages) and len(lazy) == len(full) == 64
    assert torch.equal(lazy[torch.tensor([3, 0, 5])], full[[3, 0, 5]]) and torch.equal(lazy[4:9], full[4:9])
    assert torch.equal(lazy[np.int64(7)], full[7]) and torch.equal(TensorRows(lazy)[7][0], full[7])
    with pytest.raises(BenchmarkError, match="cache_frozen=false"):
        cached_training(torch.nn.Identity(), 1, lazy, lambda x: x, 8, torch.device("cpu"), "gem: frozen stages", False)


def test_training_from_a_lazy_split_learns_what_training_in_memory_does(tmp_path, tiny_dataset, monkeypatch):
    """The same seed, the same images, decoded per batch instead of once: the same model, the same answers."""
    args = ["run", "-q", "--protocol", "tiny", "--preset", "smoke", "--latency-queries", "2",
            "--methods", "gem:cache_frozen=false"]
    assert main([*args, "--out", str(tmp_path / "memory")]) == 0
    monkeypatch.setenv("IALBENCH_PRELOAD_GB", "0")
    monkeypatch.setenv("IALBENCH_CACHE", str(tmp_path / "cache"))  # train again instead of loading the model
    assert main([*args, "--out", str(tmp_path / "lazy")]) == 0
    first, second = (next((tmp_path / d).glob("*/*/*/predictions.jsonl")).read_text() for d in ("memory", "lazy"))
    assert first == second
