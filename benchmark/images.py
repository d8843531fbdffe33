"""Image loading for methods: decode, apply the method's own preprocessing, batch."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from benchmark.distributed import gather_rows, gather_to_all, rank_and_size, shard_bounds
from benchmark.errors import BenchmarkError

log = logging.getLogger("benchmark")


def load_rgb(path: Path) -> Image.Image:
    """Decode an image as RGB; a missing or broken file is one clear error naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise BenchmarkError(f"image {path} is missing; run `python -m benchmark data check` on the dataset") from None
    except (UnidentifiedImageError, OSError) as e:
        raise BenchmarkError(f"image {path} cannot be decoded ({e}); replace the file") from None


class ImageFiles(TorchDataset):
    """Images at given paths, each passed through `transform` (the method's preprocessing), decoded per item;
    with `with_index` each item comes with its row number (as training loops want)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor],
                 with_index: bool = False):
        self.paths = list(paths)
        self.transform = transform
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        image = self.transform(load_rgb(self.paths[i]))
        return (image, i) if self.with_index else image


def iterate_images(
    paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor], batch_size: int, workers: int = 0
) -> Iterator[torch.Tensor]:
    """Batches of preprocessed images in path order."""
    loader = DataLoader(ImageFiles(paths, transform), batch_size=batch_size, shuffle=False, num_workers=workers)
    yield from loader


class StoredRows:
    """Rows kept in .npy files on disk (one memory map per file, e.g. one per torchrun process), read as one
    array: `shape`, `dtype`, slicing and row indexing; `files` to delete once they are indexed."""

    def __init__(self, files: Sequence[Path]):
        self.files = [Path(f) for f in files]
        self.parts = [np.load(f, mmap_mode="r") for f in self.files]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.offsets[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        rows = np.arange(len(self))[index]
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for p in np.unique(part):
            mask = part == p
            out[mask] = self.parts[p][rows[mask] - self.offsets[p]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def delete(self) -> None:
        """Forget the maps and remove the files."""
        self.parts = []
        for f in self.files:
            f.unlink(missing_ok=True)


def map_images(paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor], batch_size: int,
               fn: Callable[[torch.Tensor], Any] | None = None, desc: str = "decoding images",
               progress: bool = False, shard: bool = False, store: Path | None = None,
               dtype: np.dtype | type = np.float32) -> Any:
    """Every image of a list decoded and preprocessed, optionally mapped batch by batch through `fn` (an
    encoder), and concatenated in path order: a torch tensor, or a numpy array if `fn` returns numpy.

    `shard`: under torchrun each process maps its own whole batches of the list and every process gets all the
    rows back, in order (for work that is the same for every image, not one that draws random numbers).
    `store` (for `fn` returning numpy): rows are streamed into .npy files as `dtype`, batch by batch (under torchrun one file per
    process, `<store>.rank<r>.npy`, in a folder every process sees), and come back as StoredRows over them,
    so they are never all in memory."""
    lo, hi = shard_bounds(len(paths), batch_size) if shard else (0, len(paths))
    rank, world = rank_and_size()
    if store is not None and shard and world > 1:
        store = Path(store).with_suffix(f".rank{rank}.npy")
    stream = store is not None
    chunks, sink, done = [], None, 0
    with tqdm(total=hi - lo, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for batch in iterate_images(paths[lo:hi], transform, batch_size):
            out = batch if fn is None else fn(batch)
            if stream and isinstance(out, np.ndarray):
                if sink is None:
                    Path(store).parent.mkdir(parents=True, exist_ok=True)
                    sink = np.lib.format.open_memmap(store, mode="w+", dtype=dtype, shape=(hi - lo, *out.shape[1:]))
                sink[done:done + len(out)] = out
                done += len(out)
            else:
                chunks.append(out)
            bar.update(len(batch))
    if sink is not None:
        sink.flush()
        del sink
    if stream and not chunks:
        mine = [str(store)] if done else []
        files = gather_to_all(mine) if shard else mine
        if not files:
            raise BenchmarkError(f"{desc}: no images")
        return StoredRows(files)
    local = None
    if chunks:
        local = np.ascontiguousarray(np.concatenate(chunks)) if isinstance(chunks[0], np.ndarray) else torch.cat(chunks)
    rows = gather_rows(local) if shard else local
    if rows is None:
        raise BenchmarkError(f"{desc}: no images")
    return rows


class LazyImages:
    """A split's preprocessed images, decoded on demand: indexable like the uint8 tensor `decoded_once` returns
    (an int gives one image, a slice, list, array or tensor of rows a stacked batch), for splits too large to
    hold in memory."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self.transform(load_rgb(self.paths[index]))
        rows = range(len(self))[index] if isinstance(index, slice) else np.asarray(index, np.int64).reshape(-1)
        return torch.stack([self.transform(load_rgb(self.paths[int(i)])) for i in rows])


_DECODED: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
DECODED_KEEP = 2  # splits kept: the headline methods read the training split in two preprocessings


def preload_limit() -> int:
    """Bytes of decoded images a split may take in memory ($IALBENCH_PRELOAD_GB, default 8) before it is read
    lazily instead."""
    return int(float(os.environ.get("IALBENCH_PRELOAD_GB", "8")) * 2**30)


def decoded_once(key: tuple[Any, ...], paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor],
                 batch_size: int, desc: str = "decoding images", progress: bool = False) -> torch.Tensor | LazyImages:
    """map_images of a whole split, kept for the next method of this process that asks with the same `key`
    (which names the preprocessing, e.g. ("bilinear", 64, 88)). Callers must not modify the tensor in place.
    A split whose decoded images would exceed `preload_limit()` comes back as LazyImages (decoded per batch)."""
    full = (key, tuple(str(p) for p in paths))
    if full in _DECODED:
        _DECODED.move_to_end(full)
        return _DECODED[full]
    if paths:
        first = transform(load_rgb(paths[0]))
        if len(paths) * first.numel() * first.element_size() > preload_limit():
            log.info("%s: %d images would take %.1f GB decoded; reading them lazily", desc, len(paths),
                     len(paths) * first.numel() * first.element_size() / 2**30)
            return LazyImages(paths, transform)
    images = map_images(paths, transform, batch_size, desc=desc, progress=progress, shard=True)
    _DECODED[full] = images
    while len(_DECODED) > DECODED_KEEP:
        _DECODED.popitem(last=False)
    return images
