"""The plain control of Table 2: the retrieval methods' backbone with a linear head straight over the candidate
sub-streets, trained by cross-entropy. No text tower, no contrastive or geographic loss: what AddressCLIP
adds over it is what its text tower and losses buy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from benchmark.address import normalize
from benchmark.dataset import Dataset
from benchmark.measure import StageClock
from benchmark.method import Prediction, QueryBatch
from methods.classification.base import ClassifierMethod, ClassifierOptions
from methods.training.trunks import KOTKA_START

SMOKE = {"steps": 4, "batch": 4, "image_h": 48, "image_w": 64}
# From the Kotka trunk like every ResNet-18 method of the CPU default, with the CLIP methods' budget (1000 steps
# of 64 images) so that it is their control. Helsinki v2, seed 0, SSA@1: 600 steps of 32 gave 35.14 [32.9, 37.2],
# 1000 of 64 58.28 [56.1, 60.5] (310 s).
DEFAULT = {**KOTKA_START, "steps": 1000, "batch": 64, "lr": 3e-4}
# The control of AddressCLIP's paper preset: its image tower (OpenAI CLIP ViT-B/16, init= its weights file) and
# schedule (100 epochs of 32, lr 2.4e-5 cosine), a linear head instead of the text tower. Meant for GPUs.
PAPER = {"backbone": "clip:ViT-B-16-quickgelu", "image_h": 224, "image_w": 224, "pretrained": True, "augment": 0.0,
         "steps": 0, "epochs": 100, "batch": 32, "lr": 2.4e-5, "lr_min": 2.4e-8, "schedule": "cosine"}


@dataclass(frozen=True)
class SubStreetOptions(ClassifierOptions):
    """Label smoothing of the cross-entropy."""

    label_smoothing: float = 0.1


class SubStreetClassifier(ClassifierMethod):
    """Linear classification over the candidate sub-streets; the top-k classes are the answer."""

    name = "subst-classifier"
    Options: ClassVar[type] = SubStreetOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "default": DEFAULT, "paper": PAPER}

    def targets(self, dataset: Dataset) -> tuple[int, torch.Tensor]:
        """One class per candidate sub-street; each training image's class is its address."""
        book = dataset.address_book
        self.candidates = list(book.addresses)
        labels = [book.index[normalize(a)] for a in dataset.splits["train"].address]
        return len(self.candidates), torch.tensor(labels, dtype=torch.long)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with label smoothing."""
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.options.label_smoothing)

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Softmax over the candidates; the k most probable with their probabilities."""
        with torch.inference_mode():
            with clock.stage("encode"):
                logits = self.model(batch.images.to(self.ctx.device)).float()
            with clock.stage("search"):
                scores, ids = logits.softmax(dim=-1).topk(min(k, len(self.candidates)), dim=-1)
                scores, ids = scores.cpu().tolist(), ids.cpu().tolist()
        return [Prediction([self.candidates[i] for i in row], s) for row, s in zip(ids, scores)]
