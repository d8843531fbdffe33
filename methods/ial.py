"""The IAL contract beside RetrievalMethod: images and candidate addresses in one embedding space.

A subclass supplies `fit` (build, load or train its model), `encode_images`, `encode_candidates` and
`image_encoder`; the candidate set is encoded once after fitting, and top-k by cosine similarity, the
footprint and the provenance are shared.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.dataset import Dataset
from benchmark.measure import StageClock, module_bytes
from benchmark.method import Footprint, Method, Prediction, QueryBatch, RunContext


class IALMethod(Method):
    """Candidate ranking: cosine top-k of an image's embedding over the candidate addresses' embeddings."""

    family = "ial"

    def __init__(self, options: Any, ctx: RunContext):
        super().__init__(options, ctx)
        self.device = ctx.device
        self._provenance: dict[str, Any] = {"source": "from-scratch"}

    @abstractmethod
    def fit(self, dataset: Dataset) -> None:
        """Build the model: load weights, train, or read the state the runner cached."""

    @abstractmethod
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [B, ...] on self.device -> embeddings [B, D] (normalised afterwards)."""

    @abstractmethod
    def encode_candidates(self, addresses: list[str]) -> torch.Tensor:
        """Candidate addresses -> embeddings [C, D] (normalised afterwards)."""

    @abstractmethod
    def image_encoder(self) -> nn.Module:
        """The part of the model needed at inference besides the candidate matrix (for the footprint)."""

    def prepare(self, dataset: Dataset) -> None:
        """Fit, then encode the candidate set (train ∪ database addresses) once."""
        self.fit(dataset)
        self.candidates = list(dataset.address_book.addresses)
        self.candidate_features = self.encode_texts(self.candidates)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Any texts (sub-streets, streets, neighbourhoods) -> normalised float embeddings [T, D], as candidates."""
        with torch.inference_mode():
            return F.normalize(self.encode_candidates(list(texts)).float(), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [B, ...] -> normalised float embeddings [B, D], as `predict` ranks them."""
        with torch.inference_mode():
            return F.normalize(self.encode_images(images.to(self.device)).float(), dim=-1)

    @classmethod
    def image_conditioned_texts(cls) -> bool:
        """True where a text's embedding depends on the image (`candidates_for` overridden, as in CoCoOp)."""
        return cls.candidates_for is not IALMethod.candidates_for

    def candidates_for(self, features: torch.Tensor) -> torch.Tensor:
        """The normalised candidate embeddings the images are ranked against: the cached [C, D] matrix, or
        [B, C, D] for methods whose candidate features depend on the image (CoCoOp)."""
        return self.candidate_features

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Encode the images (and image-conditioned candidates), then cosine top-k over the candidates."""
        with torch.inference_mode():
            with clock.stage("encode"):
                features = self.embed_images(batch.images)
                candidates = self.candidates_for(features)
            with clock.stage("search"):
                similarity = (features @ candidates.T if candidates.dim() == 2
                              else torch.einsum("bd,bcd->bc", features, candidates))
                scores, ids = similarity.topk(min(k, len(self.candidates)), dim=1)
                scores, ids = scores.cpu().tolist(), ids.cpu().tolist()
        return [Prediction([self.candidates[i] for i in row], s) for row, s in zip(ids, scores)]

    def footprint(self) -> Footprint:
        """The image encoder's weights and the candidate embedding matrix (no text encoder at inference)."""
        matrix = self.candidate_features
        size = matrix.numel() * matrix.element_size()
        return Footprint(model=module_bytes(self.image_encoder()), database=size, search=size)

    def provenance(self) -> dict[str, Any]:
        """Where the weights came from (the init file when fine-tuned from one)."""
        return dict(self._provenance)
