"""Image loading for methods: decode, apply the method's own preprocessing, batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from benchmark.errors import BenchmarkError


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
    """Images at given paths, each passed through `transform` (the method's preprocessing)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_rgb(self.paths[i]))


def iterate_images(
    paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor], batch_size: int, workers: int = 0
) -> Iterator[torch.Tensor]:
    """Batches of preprocessed images in path order."""
    loader = DataLoader(ImageFiles(paths, transform), batch_size=batch_size, shuffle=False, num_workers=workers)
    yield from loader
