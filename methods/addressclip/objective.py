"""AddressCLIP's training step: one batch of images and their texts through CLIP into eq. 6."""

from __future__ import annotations

import math

import torch
from open_clip.model import CLIP

from methods.addressclip.data import ImageTransform, TrainTexts
from methods.addressclip.losses import GeoTarget, LossWeights, addressclip_loss
from methods.addressclip.text import encode_token_groups
from methods.training.augment import Photometric
from methods.training.loop import TrainStep

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps its learnable temperature at 100


class ContrastiveStep(TrainStep):
    """Fine-tunes both CLIP towers on α·L_address + β·L_caption + γ·L_geography (terms with weight 0 are off)."""

    def __init__(self, clip: CLIP, texts: TrainTexts, transform: ImageTransform, weights: LossWeights,
                 geo: GeoTarget, augment: float = 0.0, seed: int = 0, image_bf16: bool = False, cached: bool = False):
        super().__init__()
        self.cached = cached  # inputs are the image trunk's cached frozen-stage output, not images
        self.image_bf16 = image_bf16
        if image_bf16:  # bf16 convolutions are fastest channels-last (oneDNN on CPU, cuDNN on CUDA)
            clip.visual.to(memory_format=torch.channels_last)
        self.clip = clip
        self.augment = Photometric(augment, seed)
        self.texts = texts
        self.transform = transform
        self.weights = weights
        self.geo = geo

    def forward(self, images: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for a batch of uint8 images (or cached features) given by their rows in the train split."""
        index = index.cpu()
        device = images.device
        pixels = images if self.cached else self.transform.normalize(self.augment(images))
        if self.image_bf16:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                image = self.clip.encode_image(pixels.contiguous(memory_format=torch.channels_last)).float()
        else:
            image = self.clip.encode_image(pixels)
        address = caption = None
        wanted = [t[index] for t, on in ((self.texts.address_tokens, self.weights.address),
                                          (self.texts.caption_tokens, self.weights.caption)) if on]
        if wanted:
            features = encode_token_groups(self.clip, [t.to(device) for t in wanted])
            address = features[0] if self.weights.address else None
            caption = features[-1] if self.weights.caption else None
        scale = self.clip.logit_scale.exp()
        return addressclip_loss(image, address, caption, self.texts.utm[index].to(device), scale,
                                self.weights, self.geo)

    def after_step(self) -> None:
        """Keep CLIP's logit scale in [0, ln 100] as CLIP's own training does."""
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
