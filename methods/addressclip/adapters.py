"""The registered IAL methods: AddressCLIP (and its loss ablations), CLIP + address, zero-shot CLIP, CoOp."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.images import iterate_images
from benchmark.measure import StageClock
from benchmark.method import Footprint, Method, Prediction, QueryBatch, RunContext
from benchmark.training import CheckpointStore, file_sha256
from methods.addressclip import coop
from methods.addressclip.data import ImageTransform, image_source, train_texts
from methods.addressclip.losses import LossWeights
from methods.addressclip.model import build_clip, image_size, model_config, state_bytes
from methods.addressclip.objective import ContrastiveStep
from methods.addressclip.text import Tokenizer, address_text, encode_tokens
from methods.addressclip.train import Schedule, barrier, process_device, processes, train
from methods.addressclip.weights import checkpoint, load_clip_state, read_weights, split_checkpoint

LOSS_TERMS = ("address", "caption", "geography")


@dataclass(frozen=True)
class ClipOptions:
    """Model and inference options of every CLIP method."""

    model: str = "ial-small"  # one of methods.addressclip.model.SMALL_CONFIGS or an open_clip config name
    quick_gelu: bool = False  # OpenAI's CLIP weights were trained with QuickGELU
    weights: str = ""  # a CLIP state dict (OpenAI / open_clip layout) or an ialbench checkpoint
    pretrained: bool = False  # the preset starts from CLIP weights, so `weights` is required
    template: str = "raw"  # how an address is written for the text tower: raw | sentence


@dataclass(frozen=True)
class TrainOptions(ClipOptions):
    """Fine-tuning options (Adam + cosine LR as in the paper; batch per process)."""

    epochs: int = 1
    max_steps: int = 0  # 0: no cap beyond epochs
    batch_size: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-6
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 20
    preload: bool = True  # decode the train split once into memory (small images only)
    augment: float = 0.5  # photometric augmentation strength (0: off); CoOp trains on cached features, unaugmented
    workers: int = 0


@dataclass(frozen=True)
class AddressCLIPOptions(TrainOptions):
    """Which losses are on ('+'-joined: address, caption, geography), their weights, eq.-5's reading."""

    losses: str = "address+caption+geography"
    alpha: float = 1.0
    beta: float = 0.2
    gamma: float = 0.8
    # Measured on helsinki default (1 and 3 epochs): literal ≥ similarity on SSA@1, within the 95 % CI.
    geo: str = "literal"  # literal: match cosine similarity to D^U; similarity: to 1 − D^U


@dataclass(frozen=True)
class CoOpOptions(TrainOptions):
    """CoOp: number of learnable context vectors."""

    n_ctx: int = 16


SMOKE = {"model": "ial-tiny", "epochs": 3, "batch_size": 32, "lr": 1e-3, "lr_min": 1e-6, "warmup_steps": 10}
DEFAULT = {"model": "ial-small", "epochs": 1, "batch_size": 64, "lr": 1e-3, "lr_min": 1e-6, "warmup_steps": 20}
PAPER = {"model": "ViT-B-16", "quick_gelu": True, "pretrained": True, "augment": 0.0, "epochs": 100, "batch_size": 32,
         "lr": 2.4e-5, "lr_min": 2.4e-8, "warmup_steps": 0, "preload": False, "workers": 8}
PAPER_INFERENCE = {"model": "ViT-B-16", "quick_gelu": True, "pretrained": True}


class ClipMethod(Method):
    """Image tower + text tower; the candidate addresses are encoded once; prediction is cosine top-k."""

    family = "ial"
    Options: ClassVar[type] = ClipOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"model": "ial-tiny"}, "default": {},
                                                    "paper": PAPER_INFERENCE}

    def __init__(self, options: Any, ctx: RunContext):
        super().__init__(options, ctx)
        config = model_config(options.model)
        size = config["vision_cfg"].get("image_size", 224)
        self.transform = ImageTransform((size, size) if isinstance(size, int) else (int(size[0]), int(size[1])))
        self.context_length = int(config["text_cfg"].get("context_length", 77))
        self.loss_trace: list[float] = []
        self.trained_now = False
        self._provenance: dict[str, Any] = {"source": "from-scratch"}

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """CLIP preprocessing at the model's input size."""
        return self.transform(image)

    def prepare(self, dataset: Dataset) -> None:
        """Build the model, load `weights`, fit (subclass), then encode the candidate addresses once."""
        opts = self.options
        if opts.template not in ("raw", "sentence"):
            raise BenchmarkError(f"{self.name}: template must be raw or sentence, got {opts.template!r}")
        if opts.pretrained and not opts.weights:
            raise BenchmarkError(f"{self.name}: this preset fine-tunes official CLIP weights ({opts.model}); "
                                 "pass --weights PATH to a local OpenAI CLIP or open_clip state dict")
        self.device = process_device(self.ctx.device)
        self.tokenizer = Tokenizer(self.context_length)
        self.model = build_clip(opts.model, opts.quick_gelu, self.ctx.seed)
        if image_size(self.model) != self.transform.size:
            raise RuntimeError(f"{opts.model}: image size mismatch {image_size(self.model)} vs {self.transform.size}")
        given = None
        if opts.weights:
            path = Path(opts.weights).expanduser()
            state, context, trained = split_checkpoint(read_weights(path))
            load_clip_state(self.model, state, str(path))
            self._provenance = {"source": "file", "path": str(path), "sha256": file_sha256(path)}
            given = (context, trained)
        self.model.to(self.device).eval()
        self.fit(dataset, given)
        self.model.eval()
        self.addresses = list(dataset.address_book.addresses)
        with torch.inference_mode():
            self.address_features = self.encode_addresses(self.addresses)

    def fit(self, dataset: Dataset, given: tuple[torch.Tensor | None, bool] | None) -> None:
        """Train (or load the cached result); `given` is (CoOp context, ialbench-trained) of a weights file."""

    def encode_addresses(self, addresses: list[str]) -> torch.Tensor:
        """[C, D] unit text features of the candidates, in chunks."""
        chunks = []
        for lo in range(0, len(addresses), 256):
            texts = [address_text(a, self.options.template) for a in addresses[lo:lo + 256]]
            chunks.append(encode_tokens(self.model, self.tokenizer(texts).to(self.device)))
        return F.normalize(torch.cat(chunks).float(), dim=-1)

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Encode the images, then cosine top-k over the cached address features."""
        with torch.inference_mode():
            with clock.stage("encode"):
                features = F.normalize(self.model.encode_image(batch.images.to(self.device)).float(), dim=-1)
            with clock.stage("search"):
                scores, ids = (features @ self.address_features.T).topk(min(k, len(self.addresses)), dim=1)
                scores, ids = scores.cpu().tolist(), ids.cpu().tolist()
        return [Prediction([self.addresses[i] for i in row], s) for row, s in zip(ids, scores)]

    def footprint(self) -> Footprint:
        """The image tower's weights and the cached address-embedding matrix (the text tower is not needed)."""
        matrix = self.address_features
        return Footprint(model=state_bytes(self.model.visual), database=matrix.numel() * matrix.element_size())

    def weights(self) -> dict[str, Any]:
        """Where the weights came from (the init file when fine-tuned from one)."""
        return dict(self._provenance)

    def schedule(self) -> Schedule:
        """The training schedule from the options."""
        o = self.options
        return Schedule(epochs=o.epochs, batch_size=o.batch_size, lr=o.lr, lr_min=o.lr_min, beta1=o.beta1,
                        beta2=o.beta2, eps=o.eps, weight_decay=o.weight_decay, warmup_steps=o.warmup_steps,
                        max_steps=o.max_steps, workers=o.workers)

    def store(self) -> CheckpointStore:
        """The cached checkpoint (its name carries the init file's hash, so a changed file retrains)."""
        sha = self._provenance.get("sha256")
        return CheckpointStore(self.ctx.cache_dir, f"model-{sha[:16]}.pt" if sha else "model.pt")

    def save(self, context: torch.Tensor | None) -> None:
        """Cache the trained model (main process only), then let every process go on."""
        if processes(self.device).main:
            meta = {"method": self.name, "options": asdict(self.options), "loss_trace": self.loss_trace}
            state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            self.store().save(checkpoint(state, None if context is None else context.detach().cpu(), meta))
        barrier()


class CLIPZeroShot(ClipMethod):
    """Zero-shot CLIP: no training. Meaningful with official weights; chance level from a random init."""

    name = "clip-zeroshot"


class ContrastiveMethod(ClipMethod):
    """Fine-tunes both towers on a weighted sum of the AddressCLIP losses."""

    Options: ClassVar[type] = TrainOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "default": DEFAULT, "paper": PAPER}

    def loss_setup(self) -> tuple[LossWeights, str]:
        """The eq.-6 weights and eq.-5 reading this method trains with."""
        return LossWeights(address=1.0, caption=0.0, geography=0.0), "similarity"

    def fit(self, dataset: Dataset, given: tuple[torch.Tensor | None, bool] | None) -> None:
        """Evaluate a given ialbench checkpoint as is; else load the cached model or train and cache it."""
        if given is not None and given[1]:
            return
        store = self.store()
        if store.exists():
            saved = store.load()
            load_clip_state(self.model, saved["state_dict"], str(store.path))
            self.loss_trace = list(saved["meta"].get("loss_trace", []))
            return
        if self.options.epochs <= 0:
            return
        weights, geo = self.loss_setup()
        texts = train_texts(dataset, self.tokenizer, self.options.template, captions=bool(weights.caption))
        source = image_source(dataset, self.transform, self.options.preload, self.ctx.progress)
        step = ContrastiveStep(self.model, texts, self.transform, weights, geo, self.options.augment, self.ctx.seed)
        self.loss_trace = train(step, source, self.schedule(), self.device, self.ctx.seed,
                                f"{self.name}: training", self.ctx.progress)
        self.trained_now = True
        self.save(None)


class CLIPAddress(ContrastiveMethod):
    """The paper's 'CLIP + address': both towers fine-tuned on L_address alone."""

    name = "clip-address"


class AddressCLIP(ContrastiveMethod):
    """AddressCLIP (ECCV 2024): L_address + β L_caption + γ L_geography; Table 3's ablations via `losses`."""

    name = "addressclip"
    Options: ClassVar[type] = AddressCLIPOptions

    def loss_setup(self) -> tuple[LossWeights, str]:
        """Weights of the terms named in `losses` (others 0) and the eq.-5 reading `geo`."""
        o = self.options
        names = [t.strip() for t in o.losses.split("+") if t.strip()]
        unknown = sorted(set(names) - set(LOSS_TERMS))
        if unknown or not names:
            raise BenchmarkError(f"addressclip: losses={o.losses!r}; join terms from {', '.join(LOSS_TERMS)} "
                                 "with '+', e.g. address+geography")
        if not {"address", "caption"} & set(names):
            raise BenchmarkError("addressclip: losses must include address or caption (the text tower learns "
                                 "only from the contrastive terms)")
        if o.geo not in ("literal", "similarity"):
            raise BenchmarkError(f"addressclip: geo must be literal or similarity, got {o.geo!r}")
        weights = LossWeights(address=o.alpha if "address" in names else 0.0,
                              caption=o.beta if "caption" in names else 0.0,
                              geography=o.gamma if "geography" in names else 0.0)
        return weights, o.geo


class CoOp(ClipMethod):
    """CoOp: learnable context vectors in front of every address; both CLIP towers stay frozen."""

    name = "coop"
    Options: ClassVar[type] = CoOpOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "default": DEFAULT,
                                                    "paper": {**PAPER, "lr": 2e-3, "lr_min": 0.0,
                                                              "epochs": 50}}

    def fit(self, dataset: Dataset, given: tuple[torch.Tensor | None, bool] | None) -> None:
        """Learn the context on frozen image features (cached like the other methods)."""
        width = self.model.token_embedding.weight.shape[1]
        self.prompts = coop.PromptContext(width, self.options.n_ctx, self.ctx.seed).to(self.device)
        if given is not None and given[0] is not None:
            self.prompts.context.data.copy_(given[0])
            return
        store = self.store()
        if store.exists():
            saved = store.load()
            load_clip_state(self.model, saved["state_dict"], str(store.path))
            self.prompts.context.data.copy_(saved["context"])
            self.loss_trace = list(saved["meta"].get("loss_trace", []))
            return
        if self.options.epochs <= 0:
            return
        book = dataset.address_book
        features = self.image_features(dataset)
        tokens = self.prompts.prompt_tokens(self.tokenizer, book.addresses).to(self.device)
        labels = train_texts(dataset, self.tokenizer, "raw", captions=False).labels
        step = coop.CoOpStep(self.model, self.prompts, tokens, labels)
        self.loss_trace = train(step, coop.FeatureRows(features), self.schedule(), self.device, self.ctx.seed,
                                f"{self.name}: training", self.ctx.progress)
        self.trained_now = True
        self.save(self.prompts.context)

    def image_features(self, dataset: Dataset) -> torch.Tensor:
        """Frozen image features of the train split (computed once: the image tower does not change)."""
        chunks = []
        with torch.inference_mode():
            for images in iterate_images(dataset.paths("train"), self.transform, self.ctx.batch_size):
                chunks.append(self.model.encode_image(images.to(self.device)).cpu())
        return torch.cat(chunks)

    def encode_addresses(self, addresses: list[str]) -> torch.Tensor:
        """The candidates as CoOp prompts (the `template` option does not apply)."""
        tokens = self.prompts.prompt_tokens(self.tokenizer, addresses).to(self.device)
        return F.normalize(self.prompts.text_features(self.model, tokens).float(), dim=-1)
