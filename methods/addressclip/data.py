"""Training data for the CLIP methods: CLIP-style image transform, the train split as tensors, image sources."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from benchmark.address import normalize
from benchmark.dataset import Dataset
from benchmark.images import ImageFiles, decoded_once
from methods.addressclip.text import Tokenizer, address_text, caption_text
from methods.training.loop import TensorRows

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageTransform:
    """CLIP's preprocessing for an (H, W) input: bicubic resize to cover it, centre crop, normalise."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self.mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """[3, H, W] uint8: resized keeping the aspect ratio so it covers (H, W), then centre-cropped."""
        height, width = self.size
        scale = max(height / image.height, width / image.width)
        w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
        image = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
        left, top = (w - width) // 2, (h - height) // 2
        image = image.crop((left, top, left + width, top + height))
        return torch.from_numpy(np.asarray(image, np.uint8).transpose(2, 0, 1).copy())

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [..., 3, H, W] -> CLIP-normalised float."""
        return (images.float() / 255.0 - self.mean.to(images.device)) / self.std.to(images.device)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One decoded image -> the float tensor the image tower takes."""
        return self.normalize(self.to_uint8(image))


def image_source(dataset: Dataset, transform: ImageTransform, preload: bool, progress: bool,
                 batch_size: int = 64) -> TorchDataset:
    """The train split's images as uint8 with their row index, decoded up front (preload) or per item."""
    paths = dataset.paths("train")
    if not preload:
        return ImageFiles(paths, transform.to_uint8, with_index=True)
    return TensorRows(decoded_once(("clip-cover", *transform.size), paths, transform.to_uint8, batch_size,
                                   "decoding training images", progress))


@dataclass
class TrainTexts:
    """Per training image: address tokens, caption(+address) tokens, UTM and address-book label."""

    address_tokens: torch.Tensor
    caption_tokens: torch.Tensor
    utm: torch.Tensor
    labels: torch.Tensor


def train_texts(dataset: Dataset, tokenizer: Tokenizer, template: str, captions: bool = True) -> TrainTexts:
    """Tokenise the train split's texts (each distinct address once)."""
    table = dataset.splits["train"]
    book = dataset.address_book
    labels = torch.tensor([book.index[a] for a in map(normalize, table.address)], dtype=torch.long)
    distinct = tokenizer([address_text(a, template) for a in book.addresses])
    if captions:
        caption_tokens = tokenizer([caption_text(str(c), a) for c, a in zip(table.caption.fillna(""), table.address)])
    else:
        caption_tokens = torch.zeros(len(table), 1, dtype=torch.long)
    utm = torch.from_numpy(dataset.utm("train").copy())
    return TrainTexts(distinct[labels], caption_tokens, utm, labels)
