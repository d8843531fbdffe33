"""The classification family's shared part: a backbone (the retrieval methods' ResNet trunk cut + GeM, or a CLIP
ViT image tower in the paper presets) with a linear head over classes, trained by the shared fit loop on
per-image targets and cached like every method.

A subclass says what the classes are (`targets`: hard labels or soft target rows), how a batch's loss is
computed from logits and targets (`loss`), what it prepares after training (`index`) and how it answers
(`predict`)."""

from __future__ import annotations

from abc import abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from benchmark.dataset import Dataset
from benchmark.distributed import processes
from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from benchmark.measure import module_bytes
from benchmark.method import Footprint, Method
from methods.classification.backbones import build_backbone, is_clip, normaliser
from methods.training.augment import Photometric
from methods.training.checkpoints import check_state_dict, load_weights_file
from methods.training.frozen import cached_training, check_cache
from methods.training.loop import TensorRows, TrainLog, TrainStep, epoch_batches, fit, total_steps
from methods.training.options import FitOptions
from methods.training.store import train_or_load
from methods.training.trunks import StartsFromTrunk, TrunkOptions, apply_trunk, load_trunk, trunk_file
from methods.vpr import recipes
from methods.vpr.adapters import train_images


@dataclass(frozen=True)
class ClassifierOptions(TrunkOptions, FitOptions):
    """Backbone, input size and start of the classifier (as the retrieval methods'), and a trained checkpoint."""

    weights: str = ""  # an ialbench checkpoint of this method (model.pt of its cache): evaluated as is
    # resnet18 | resnet50 | ... (cut at `cut`, GeM) | clip:<open_clip ViT config> (init= a CLIP weights file;
    # `frozen` then counts transformer blocks)
    backbone: str = "resnet18"
    cut: str = "layer3"
    image_h: int = 64
    image_w: int = 88
    batch: int = 32
    steps: int = 600
    pretrained: bool = False  # the preset fine-tunes published weights, so init= must name them


class Classifier(nn.Module):
    """Backbone (ResNet cut -> GeM, or a CLIP ViT's mean token) -> linear head; `embed` gives the L2-normalised
    descriptor and `normalise` the input normalisation the backbone expects."""

    def __init__(self, backbone: str, cut: str, classes: int, frozen: int = 0):
        super().__init__()
        self.trunk, self.pool, channels = build_backbone(backbone, cut, frozen)
        self.head = nn.Linear(channels, classes)
        self.normalise = normaliser(backbone)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> pooled features [B, C]."""
        return self.pool(self.trunk(images)).flatten(1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised pooled features (the descriptor refinement compares)."""
        return F.normalize(self.features(images), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits [B, classes]."""
        return self.head(self.features(images))


class ClassifierStep(TrainStep):
    """One batch of training rows: augment, normalise, logits, the method's loss against the rows' targets."""

    def __init__(self, model: Classifier, targets: torch.Tensor, loss: Any, augment: float, seed: int,
                 cached: bool = False):
        super().__init__()
        self.model = model
        self.targets = targets
        self.loss = loss
        self.augment = Photometric(augment, seed)
        self.cached = cached  # inputs are the frozen stages' cached output, not images

    def forward(self, images: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'total': loss} for uint8 images [B, 3, H, W] (or cached features) given by their rows in the train
        split."""
        inputs = images if self.cached else self.model.normalise(self.augment(images))
        logits = self.model(inputs)
        return {"total": self.loss(logits, self.targets[index.cpu()].to(logits.device))}


class ClassifierMethod(StartsFromTrunk, Method):
    """Train (or load) the classifier on the train split, then let the subclass index and answer."""

    family = "classification"
    trains = True
    Options: ClassVar[type] = ClassifierOptions

    @abstractmethod
    def targets(self, dataset: Dataset) -> tuple[int, torch.Tensor]:
        """Number of classes and each training image's target: [N] class ids or [N, classes] soft rows."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch."""

    def index(self, dataset: Dataset) -> None:
        """What the method prepares after training (cell tables, cluster means)."""

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize to image_h x image_w and normalise as the backbone expects (ImageNet's or CLIP's mean/std)."""
        o = self.options
        return normaliser(o.backbone)(recipes.to_uint8(image, o.image_h, o.image_w)[None])[0]

    def prepare(self, dataset: Dataset) -> None:
        """Targets, model (from `weights`, the cache, or trained and cached), then the subclass's index."""
        o = self.options
        classes, targets = self.targets(dataset)
        torch.manual_seed(self.ctx.seed)
        self.model = Classifier(o.backbone, o.cut, classes, o.frozen)
        if o.weights:
            if o.init not in ("", "scratch"):
                raise BenchmarkError(f"{self.name}: init={o.init} and weights= both start the backbone; give one")
            path = Path(o.weights).expanduser()
            check_state_dict(self.model, load_weights_file(path), f"{self.name} weights {path} (pass the model.pt "
                             f"of a {self.name} run on this dataset)")
            self._provenance = {"source": "file", "path": str(path), "sha256": file_sha256(path)}
        else:
            self._train(dataset, targets)
        self.model.to(self.ctx.device).eval()
        self.index(dataset)

    def _train(self, dataset: Dataset, targets: torch.Tensor) -> None:
        o = self.options
        if o.pretrained and o.init in ("", "scratch"):
            raise BenchmarkError(f"{self.name}: this preset fine-tunes published {o.backbone} weights; pass "
                                 "init=PATH (a CLIP checkpoint, OpenAI or open_clip layout) or --weights of a "
                                 f"trained {self.name} run")
        if is_clip(o.backbone):
            path = trunk_file(o.init)
            if path is not None:
                self.model.trunk.load_clip(path)
            origin = f"{o.backbone} from {path.name if path else 'scratch'}"
        else:
            trunk = load_trunk(o.init)
            if trunk is not None:
                apply_trunk(self.model.trunk, trunk)
            origin = f"{o.backbone} {o.cut} + GeM, " + (trunk.source if trunk is not None else "from scratch")
        procs = processes(self.ctx.device)

        check_cache(self.name, o.frozen, o.cache_frozen, o.augment)

        def train() -> TrainLog:
            progress = self.ctx.progress and procs.main
            images = train_images(dataset, o.image_h, o.image_w, self.ctx.batch_size, progress)
            step = ClassifierStep(self.model, targets, self.loss, o.augment, self.ctx.seed, o.cache_frozen)
            desc = f"{self.name}: training"
            cache = nullcontext()
            if o.cache_frozen:
                images, cache = cached_training(self.model.trunk, o.frozen, images, self.model.normalise,
                                                self.ctx.batch_size, self.ctx.device, f"{self.name}: frozen stages",
                                                progress)
            batches, per_epoch = epoch_batches(TensorRows(images), o, self.ctx.seed, self.ctx.device, 0, desc)
            with cache:
                return fit(step, batches, total_steps(o, per_epoch), o, self.ctx.device, desc, self.ctx.progress)

        self.training = train_or_load(self.ctx.cache_dir, self.model.load_state_dict, train,
                                      lambda: {k: v.cpu() for k, v in self.model.state_dict().items()},
                                      lambda: {"backbone": origin,
                                               "input_size": [o.image_h, o.image_w]},
                                      procs.main)
        path = self.ctx.cache_dir / "model.pt"
        self._provenance = {"source": "from-scratch", "path": str(path), "sha256": file_sha256(path)}

    def footprint(self) -> Footprint:
        """The classifier's weights (subclasses add their tables); its search structure is the head's class rows
        (weights and biases: the learnt counterpart of IAL's address embeddings)."""
        return Footprint(model=module_bytes(self.model), search=module_bytes(self.model.head))

    def provenance(self) -> dict[str, Any]:
        """Where the weights came from."""
        return getattr(self, "_provenance", {"source": "from-scratch"})

