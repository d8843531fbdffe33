"""The registered IAL methods: AddressCLIP (and its loss ablations), CLIP + address, zero-shot CLIP, CoOp, CoCoOp."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from benchmark.dataset import Dataset
from benchmark.distributed import processes
from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from benchmark.images import map_images
from benchmark.measure import module_bytes
from benchmark.method import Footprint, RunContext
from methods.addressclip import coop, maple
from methods.addressclip.data import ImageTransform, image_source, train_texts
from methods.addressclip.losses import LossWeights
from methods.addressclip.model import ResNetTower, build_clip, image_size, model_config
from methods.addressclip.objective import ContrastiveStep
from methods.addressclip.text import Tokenizer, address_text, encode_tokens
from methods.addressclip.weights import (
    checkpoint,
    load_clip_state,
    read_prompt_checkpoint,
    read_weights,
    split_checkpoint,
)
from methods.ial import IALMethod
from methods.training.frozen import cached_training, check_cache
from methods.training.loop import (
    TensorRows,
    TrainLog,
    TrainStep,
    epoch_batches,
    fit,
    total_steps,
)
from methods.training.options import FitOptions
from methods.training.store import train_or_load
from methods.training.trunks import (
    KOTKA_START,
    StartsFromTrunk,
    TrunkOptions,
    TrunkSpec,
    apply_trunk,
    clip_start,
    load_trunk,
    trunk_file,
)
from methods.vpr.backbones import freeze_leading

LOSS_TERMS = ("address", "caption", "geography")


@dataclass(frozen=True)
class ClipOptions:
    """Model and inference options of every CLIP method."""

    model: str = "ial-r18"  # one of methods.addressclip.model.SMALL_CONFIGS or an open_clip config name
    quick_gelu: bool = False  # OpenAI's CLIP weights were trained with QuickGELU
    weights: str = ""  # a CLIP state dict (OpenAI / open_clip layout) or an ialbench checkpoint
    pretrained: bool = False  # the preset starts from CLIP weights, so `weights` is required
    template: str = "raw"  # how an address is written for the text tower: raw | sentence


@dataclass(frozen=True)
class TrainOptions(TrunkOptions, ClipOptions, FitOptions):
    """Fine-tuning: FitOptions with CLIP's defaults (Adam β=(0.9, 0.98), ε=1e-6, cosine LR after a warm-up,
    epochs over the train split, `batch` images per process) and how the train split is read."""

    steps: int = 0  # a cap on the steps of `epochs` (0: none)
    epochs: int = 1
    batch: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-6
    schedule: str = "cosine"
    warmup_steps: int = 20
    optimizer: str = "adam"
    beta2: float = 0.98
    eps: float = 1e-6
    preload: bool = True  # decode the train split once into memory (small images only)
    # scratch | a ResNet trunk pretrained by ialbench (methods.training.trunks, e.g. kotka-r18) | a trunk file;
    # starts the image tower of the ResNet configs (ial-r18*) when no `weights` are given
    init: str = "scratch"
    # bfloat16 autocast and channels-last for the image tower only: ~2.7x faster image steps on a bf16 CPU,
    # while the text tower stays fp32 (its attention backward is slower in bf16 on the CPU)
    image_bf16: bool = False
    workers: int = 0  # loader processes when not preloaded


@dataclass(frozen=True)
class ContrastiveOptions(TrainOptions):
    """Which towers fine-tune (the paper's Table 4): both, image (text frozen) or text (image frozen)."""

    towers: str = "both"


@dataclass(frozen=True)
class AddressCLIPOptions(ContrastiveOptions):
    """Which losses are on ('+'-joined: address, caption, geography), their weights, eq.-5's reading."""

    losses: str = "address+caption+geography"
    alpha: float = 1.0
    beta: float = 0.2
    gamma: float = 0.8
    # Measured on helsinki default (1 and 3 epochs): literal ≥ similarity on SSA@1, within the 95 % CI.
    geo: str = "literal"  # literal: match cosine similarity to D^U; similarity: to 1 − D^U


@dataclass(frozen=True)
class PromptOptions(TrainOptions):
    """A prompt learner: an official prompt checkpoint to evaluate instead of training."""

    # CoOp / CoCoOp / MaPLe's own Dassl checkpoint (prompt_learner/model.pth.tar-N, MaPLe's
    # MultiModalPromptLearner/model.pth.tar-N), with the CLIP it was trained on as `weights`
    prompts: str = ""


@dataclass(frozen=True)
class CoOpOptions(PromptOptions):
    """CoOp: number of learnable context vectors."""

    n_ctx: int = 16


@dataclass(frozen=True)
class MaPLeOptions(PromptOptions):
    """MaPLe: prompt tokens per layer, prompted layers, and the prompt text whose first words start the context."""

    n_ctx: int = 2
    depth: int = 9
    ctx_init: str = "a photo of a"


@dataclass(frozen=True)
class CoCoOpOptions(CoOpOptions):
    """CoCoOp: the published 4 context vectors, initialised from the words of `ctx_init` (which then set their
    number; empty: n_ctx random vectors)."""

    n_ctx: int = 4
    ctx_init: str = "a photo of a"


SMOKE = {"model": "ial-r18-tiny", "epochs": 3, "batch": 32, "lr": 1e-3, "lr_min": 1e-6, "warmup_steps": 10}
# From the Kotka-pretrained trunk (as the VPR methods), image tower in bf16 + channels-last. Measured on
# helsinki v2, seed 0, SSA@1: clip-address from scratch 300 steps 17.21, 600 steps 24.34; kotka-r18 300 steps
# 23.85, 600 steps 36.07 (fp32) / 35.25 (image_bf16, 305 s instead of 445 s). addressclip (batch 64, lr 1e-3):
# 500 steps 32.68, 1000 steps 45.39, 1500 steps 52.85 [50.5, 55.0] (613 s), 2000 steps 54.55 [52.2, 56.9];
# lr 2e-3 at 1000 steps 31.47; batch 32 x 2000 steps 34.76. 1000 steps keep the main job within 15 minutes
# on 2 cores; 1500 (`steps=1500,epochs=8`) would take it to about 19.
DEFAULT = {"model": "ial-r18", "epochs": 6, "steps": 1000, "batch": 64, "lr": 1e-3, "lr_min": 1e-6,
           "warmup_steps": 20, "init": "kotka-r18", "image_bf16": True}
# The fine-tuning methods start as every ResNet-18 method of the CPU default (KOTKA_START: stem, layer1 and
# layer2 frozen and computed once, no photometric augmentation). Their image step is then layer3 only, where fp32 is
# as fast as bf16 (2-core Xeon without AMX, 60 steps: 14 s fp32, 16 s bf16), so it stays fp32.
FINE_TUNE = {**DEFAULT, **KOTKA_START, "image_bf16": False}
# The prompt learners adapt a pretrained CLIP whose towers stay frozen, as the papers adapt OpenAI's: on the CPU
# that is the CLIP ialbench pretrained on Kotka (methods.training.trunks, kotka-clip), in fp32 as it was trained.
PROMPT_DEFAULT = {**DEFAULT, "init": "kotka-clip", "image_bf16": False}
PAPER = {"model": "ViT-B-16", "quick_gelu": True, "pretrained": True, "augment": 0.0, "epochs": 100, "batch": 32,
         "lr": 2.4e-5, "lr_min": 2.4e-8, "warmup_steps": 0, "preload": False, "workers": 8}
PAPER_INFERENCE = {"model": "ViT-B-16", "quick_gelu": True, "pretrained": True}


class ClipMethod(StartsFromTrunk, IALMethod):
    """An open_clip CLIP: image tower + text tower, candidates written by `template` and encoded once."""

    Options: ClassVar[type] = ClipOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"model": "ial-r18-tiny"}, "default": {},
                                                    "paper": PAPER_INFERENCE}

    def __init__(self, options: Any, ctx: RunContext):
        super().__init__(options, ctx)
        config = model_config(options.model)
        size = config["vision_cfg"].get("image_size", 224)
        self.transform = ImageTransform((size, size) if isinstance(size, int) else (int(size[0]), int(size[1])))
        self.context_length = int(config["text_cfg"].get("context_length", 77))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """CLIP preprocessing at the model's input size."""
        return self.transform(image)

    def fit(self, dataset: Dataset) -> None:
        """Build the model, load `weights`, then learn (subclasses) or not (zero-shot)."""
        opts = self.options
        if opts.template not in ("raw", "sentence"):
            raise BenchmarkError(f"{self.name}: template must be raw or sentence, got {opts.template!r}")
        if opts.pretrained and not opts.weights:
            raise BenchmarkError(f"{self.name}: this preset fine-tunes official CLIP weights ({opts.model}); "
                                 "pass --weights PATH to a local OpenAI CLIP or open_clip state dict")
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
        init = getattr(opts, "init", "scratch")
        self.start = clip_start(init)
        self.trunk = None if self.start is not None else load_trunk(init)
        if self.start is not None:
            self.load_start(self.start, init)
        if self.trunk is not None:
            if opts.weights:
                raise BenchmarkError(f"{self.name}: init={opts.init} and weights= both start the image tower; "
                                     "give one")
            if not isinstance(self.model.visual, ResNetTower):
                raise BenchmarkError(f"{self.name}: init= starts ResNet image towers only; {opts.model} is not one "
                                     "(use model=ial-r18 or init=scratch)")
            apply_trunk(self.model.visual.trunk, self.trunk)
            self._provenance = {"source": "file", "path": str(self.trunk.path), "sha256": self.trunk.sha256}
        self.model.to(self.device).eval()
        self.learn(dataset, given)
        self.model.eval()

    def load_start(self, start: TrunkSpec, init: str) -> None:
        """Both towers from a CLIP that ialbench pretrained on another city (`init=kotka-clip`)."""
        o = self.options
        if o.weights:
            raise BenchmarkError(f"{self.name}: init={init} and weights= both start the CLIP; give one")
        if o.model != start.backbone:
            raise BenchmarkError(f"{self.name}: init={init} is a {start.backbone} CLIP; set model={start.backbone} "
                                 f"(model={o.model} was asked)")
        path = trunk_file(init)
        state, _, _ = split_checkpoint(read_weights(path))
        load_clip_state(self.model, state, f"{path} (rebuild it with `python -m benchmark pretrain {init}`)")
        self._provenance = {"source": "file", "path": str(path), "sha256": file_sha256(path)}

    def learn(self, dataset: Dataset, given: tuple[torch.Tensor | None, bool] | None) -> None:
        """Train (or load the cached result); `given` is (CoOp context, ialbench-trained) of a weights file."""

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """The image tower's embeddings."""
        return self.model.encode_image(images)

    def encode_candidates(self, addresses: list[str]) -> torch.Tensor:
        """The text tower's embeddings of the candidates written by `template`, in chunks."""
        chunks = []
        for lo in range(0, len(addresses), 256):
            texts = [address_text(a, self.options.template) for a in addresses[lo:lo + 256]]
            chunks.append(encode_tokens(self.model, self.tokenizer(texts).to(self.device)))
        return torch.cat(chunks)

    def image_encoder(self) -> torch.nn.Module:
        """The image tower (the text tower is not needed once the candidates are encoded)."""
        return self.model.visual

    def cached_training(self, train: Callable[[], TrainLog], load: Callable[[dict[str, Any]], None],
                        context: Callable[[], torch.Tensor | dict[str, torch.Tensor] | None]) -> None:
        """The runner-keyed cache: load the saved checkpoint, or train and save it in the ialbench layout."""
        meta = {"method": self.name, "options": asdict(self.options)}

        def state() -> dict[str, Any]:
            weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            extra = context()
            if isinstance(extra, dict):
                extra = {k: v.detach().cpu() for k, v in extra.items()}
            elif extra is not None:
                extra = extra.detach().cpu()
            return checkpoint(weights, extra, meta)

        self.training = train_or_load(self.ctx.cache_dir, load, train, state,
                                      lambda: {"backbone": self.backbone(), "input_size": list(self.transform.size)},
                                      main=processes(self.device).main)
        trained = self.ctx.cache_dir / "model.pt"
        if not (self.options.weights or self.start) and trained.is_file():  # as the VPR methods record theirs
            self._provenance = {"source": "from-scratch", "path": str(trained), "sha256": file_sha256(trained)}

    def backbone(self) -> str:
        """The image tower and where training started it (for the training record)."""
        vision = model_config(self.options.model)["vision_cfg"]
        tower = f"{vision['resnet']} {vision['cut']} + GeM" if "resnet" in vision else self.options.model
        if self.options.weights:
            return f"{tower} from {Path(self.options.weights).name}"
        start = getattr(self, "start", None)
        if start is not None:
            return f"{tower}, both towers from the {start.describe()}"
        trunk = getattr(self, "trunk", None)
        return f"{tower}, trunk {trunk.source}" if trunk is not None else f"{tower} from scratch"

    def fit_step(self, step: TrainStep, source: TorchDataset) -> TrainLog:
        """Run the shared fit loop over epochs of a dataset of (input, row index) pairs."""
        o = self.options
        batches, per_epoch = epoch_batches(source, o, self.ctx.seed, self.device, o.workers, f"{self.name}: training")
        return fit(step, batches, total_steps(o, per_epoch), o, self.device, f"{self.name}: training",
                   self.ctx.progress)


@dataclass(frozen=True)
class ZeroShotOptions(ClipOptions):
    """Zero-shot CLIP: where its towers come from (a registered CLIP start, or `weights`)."""

    # scratch | a whole CLIP ialbench pretrained (kotka-clip) | a ResNet trunk or trunk file for the image tower
    init: str = "scratch"


class CLIPZeroShot(ClipMethod):
    """Zero-shot CLIP: no training. With official weights (`paper`) the paper's baseline; on the CPU default the
    CLIP ialbench pretrained on Kotka, to which Helsinki's street names are as new as Pittsburgh's to CLIP."""

    name = "clip-zeroshot"
    Options: ClassVar[type] = ZeroShotOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"model": "ial-r18-tiny"},
                                                    "default": {"init": "kotka-clip"}, "paper": PAPER_INFERENCE}


def refuse_partial_freezing(name: str, o: TrainOptions) -> None:
    """Prompt learners keep both towers frozen whole: `frozen` and `cache_frozen` would silently do nothing."""
    if o.frozen or o.cache_frozen:
        raise BenchmarkError(f"{name}: both towers are frozen whole (prompt learning); drop frozen= and cache_frozen=")


TOWERS = ("both", "image", "text")


def official_prompts(name: str, prompts: torch.nn.Module, o: PromptOptions, given: tuple[Any, bool] | None) -> bool:
    """Load `prompts=` (an official prompt checkpoint) into the prompt learner; True when one was given."""
    if not o.prompts:
        return False
    if given is not None and given[0] is not None:
        raise BenchmarkError(f"{name}: weights= already holds trained prompts and prompts= names others; give one")
    path = Path(o.prompts).expanduser()
    prompts.load_official(read_prompt_checkpoint(path), f"prompt checkpoint {path}")
    return True


def freeze_towers(model: torch.nn.Module, towers: str) -> None:
    """Keep only the named tower trainable (`image`: the text tower is frozen; `text`: the image tower is);
    the logit scale always trains."""
    if towers not in TOWERS:
        raise BenchmarkError(f"towers={towers!r}: use one of {', '.join(TOWERS)}")
    for name, param in model.named_parameters():
        image = name.startswith("visual.")
        param.requires_grad_(name == "logit_scale" or towers == "both" or image == (towers == "image"))


class ContrastiveMethod(ClipMethod):
    """Fine-tunes both towers (or one: `towers=`) on a weighted sum of the AddressCLIP losses."""

    trains = True
    Options: ClassVar[type] = ContrastiveOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "default": FINE_TUNE, "paper": PAPER}

    def loss_setup(self) -> tuple[LossWeights, str]:
        """The eq.-6 weights and eq.-5 reading this method trains with."""
        return LossWeights(address=1.0, caption=0.0, geography=0.0), "similarity"

    def learn(self, dataset: Dataset, given: tuple[torch.Tensor | None, bool] | None) -> None:
        """Evaluate a given ialbench checkpoint as is; else load the cached model or train and cache it."""
        if (given is not None and given[1]) or (self.options.epochs <= 0 and self.options.steps <= 0):
            return
        freeze_towers(self.model, self.options.towers)
        if self.options.frozen:
            if not isinstance(self.model.visual, ResNetTower):
                raise BenchmarkError(f"{self.name}: frozen= freezes ResNet image towers only; {self.options.model} "
                                     "is not one (use model=ial-r18 or frozen=0)")
            freeze_leading(self.model.visual.trunk, self.options.frozen)

        o = self.options
        check_cache(self.name, o.frozen, o.cache_frozen, o.augment)
        if o.cache_frozen and not o.preload:
            raise BenchmarkError(f"{self.name}: cache_frozen=true needs preload=true")

        def train() -> TrainLog:
            weights, geo = self.loss_setup()
            texts = train_texts(dataset, self.tokenizer, o.template, captions=bool(weights.caption))
            source = image_source(dataset, self.transform, o.preload, self.ctx.progress)
            step = ContrastiveStep(self.model, texts, self.transform, weights, geo, o.augment, self.ctx.seed,
                                   o.image_bf16, o.cache_frozen)
            if not o.cache_frozen:
                return self.fit_step(step, source)
            features, cache = cached_training(self.model.visual.trunk, o.frozen, source.rows,
                                              self.transform.normalize, self.ctx.batch_size, self.device,
                                              f"{self.name}: frozen stages", self.ctx.progress)
            with cache:
                return self.fit_step(step, TensorRows(features))

        def load(saved: dict[str, Any]) -> None:
            load_clip_state(self.model, saved["state_dict"], str(self.ctx.cache_dir))

        self.cached_training(train, load, lambda: None)


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
    trains = True
    Options: ClassVar[type] = CoOpOptions
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "default": PROMPT_DEFAULT,
                                                    "paper": {**PAPER, "lr": 2e-3, "lr_min": 0.0,
                                                              "epochs": 50}}

    STEP: ClassVar[type] = coop.CoOpStep

    def make_prompts(self) -> coop.PromptContext:
        """CoOp's unified context of n_ctx random vectors."""
        width = self.model.token_embedding.weight.shape[1]
        return coop.PromptContext(width, self.options.n_ctx, self.ctx.seed)

    def given_prompts(self, saved: Any) -> bool:
        """Take the context of a --weights checkpoint (True: nothing to train)."""
        if isinstance(saved, dict):
            raise BenchmarkError(f"{self.name}: --weights holds a conditional prompt learner (a cocoop run); "
                                 "evaluate it with cocoop")
        self.prompts.context.data.copy_(saved)
        return True

    def prompt_state(self) -> Any:
        """What the cache keeps beside the CLIP state: the context."""
        return self.prompts.context

    def load_prompt_state(self, saved: Any) -> None:
        """The context from the cache."""
        self.prompts.context.data.copy_(saved)

    def learn(self, dataset: Dataset, given: tuple[Any, bool] | None) -> None:
        """Learn the prompts on frozen image features (cached like the other methods)."""
        refuse_partial_freezing(self.name, self.options)
        self.prompts = self.make_prompts().to(self.device)
        if official_prompts(self.name, self.prompts, self.options, given):
            return
        if given is not None and given[0] is not None and self.given_prompts(given[0]):
            return
        if self.options.epochs <= 0 and self.options.steps <= 0:
            return

        def train() -> TrainLog:
            features = self.image_features(dataset)
            tokens = self.prompts.prompt_tokens(self.tokenizer, dataset.address_book.addresses).to(self.device)
            labels = train_texts(dataset, self.tokenizer, "raw", captions=False).labels
            return self.fit_step(self.STEP(self.model, self.prompts, tokens, labels), TensorRows(features))

        def load(saved: dict[str, Any]) -> None:
            load_clip_state(self.model, saved["state_dict"], str(self.ctx.cache_dir))
            self.load_prompt_state(saved["context"])

        self.cached_training(train, load, self.prompt_state)

    def image_features(self, dataset: Dataset) -> torch.Tensor:
        """Frozen image features of the train split (computed once: the image tower does not change)."""
        with torch.inference_mode():
            return map_images(dataset.paths("train"), self.transform, self.ctx.batch_size,
                              lambda images: self.model.encode_image(images.to(self.device)).cpu(),
                              f"{self.name}: encoding training images", self.ctx.progress, shard=True)

    def encode_candidates(self, addresses: list[str]) -> torch.Tensor:
        """The candidates as CoOp prompts (the `template` option does not apply)."""
        tokens = self.prompts.prompt_tokens(self.tokenizer, addresses).to(self.device)
        return self.prompts.text_features(self.model, tokens)


class CoCoOp(CoOp):
    """CoCoOp: CoOp's context shifted per image by a meta-net, so every query encodes all candidates anew (its
    latency and footprint carry the text tower)."""

    name = "cocoop"
    Options: ClassVar[type] = CoCoOpOptions
    # B x C text passes per step: a smaller batch than CoOp's, and fewer steps (on helsinki's 174 candidates a step
    # of 8 took 4.2 s on a 2-core AMD EPYC, so 400 steps would train for 28 minutes). Paper: SGD 2e-3, 10 epochs,
    # batch 1, warm-up 1e-5.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {**SMOKE, "batch": 4, "epochs": 1},
        "default": {**PROMPT_DEFAULT, "batch": 8, "steps": 100, "epochs": 1, "lr": 2e-3},
        "paper": {**PAPER, "lr": 2e-3, "lr_min": 0.0, "epochs": 10, "batch": 1, "optimizer": "sgd",
                  "weight_decay": 5e-4, "warmup_steps": 0}}

    def make_prompts(self) -> coop.ConditionalPrompts:
        """The context (from `ctx_init`'s token embeddings, or random) and a fresh meta-net."""
        o = self.options
        width = self.model.token_embedding.weight.shape[1]
        init, n_ctx = None, o.n_ctx
        if o.ctx_init.strip():
            ids = self.tokenizer.tokens(o.ctx_init.strip())
            with torch.no_grad():
                init = self.model.token_embedding.weight[torch.tensor(ids, device=self.device)].detach().cpu()
            n_ctx = len(ids)
        if n_ctx < 1:
            raise BenchmarkError(f"{self.name}: n_ctx must be at least 1 (or give ctx_init words)")
        projection = self.model.text_projection  # the joint width, which the image features have too
        joint = projection.shape[1] if isinstance(projection, torch.Tensor) else projection.out_features
        return coop.ConditionalPrompts(width, n_ctx, self.ctx.seed, int(joint), init)

    STEP = coop.CoCoOpStep

    def given_prompts(self, saved: Any) -> bool:
        """A cocoop checkpoint's prompt learner (context and meta-net); other files train anew."""
        if isinstance(saved, dict):
            self.prompts.load_state_dict(saved)
            return True
        return False

    def prompt_state(self) -> dict[str, torch.Tensor]:
        """Context and meta-net, saved together."""
        return self.prompts.state_dict()

    def load_prompt_state(self, saved: Any) -> None:
        """Context and meta-net from the cache."""
        self.prompts.load_state_dict(saved)

    def prepare(self, dataset: Dataset) -> None:
        """Fit, then keep the candidates' prompt tokens: their features are computed per query."""
        super().prepare(dataset)
        self.candidate_tokens = self.prompts.prompt_tokens(self.tokenizer, self.candidates).to(self.device)

    def candidates_for(self, features: torch.Tensor) -> torch.Tensor:
        """Every candidate's features conditioned on each image: [B, C, D], normalised."""
        return F.normalize(self.prompts.conditional_features(self.model, self.candidate_tokens, features).float(),
                           dim=-1)

    def footprint(self) -> Footprint:
        """Both towers and the prompt learner (the text tower runs per query), and the candidates' tokens."""
        size = self.candidate_tokens.numel() * self.candidate_tokens.element_size()
        return Footprint(model=module_bytes(self.model) + module_bytes(self.prompts), database=size, search=size)


class MaPLe(ClipMethod):
    """MaPLe: deep prompts in both frozen towers, the image tower's coupled to the text tower's (ViT towers only)."""

    name = "maple"
    trains = True
    Options: ClassVar[type] = MaPLeOptions
    # A ViT image tower: the CPU default's ResNet tower has no tokens to prompt. Paper: ViT-B/16, SGD 0.0035,
    # 5 epochs, batch 4, depth 9, 2 tokens from "a photo of a".
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {**SMOKE, "model": "ial-tiny", "depth": 2, "epochs": 1},
        # ial-small's text tower has 3 layers: prompts in the first 2, as the published 9 of 12 leave the last quarter
        # 2000 steps of 32: the 64,000 images coop's default sees (helsinki v2, seed 0, SSA@1 4.55 [3.6, 5.5]; on the
        # 1,000-step Kotka ViT: 300 steps 0.60, 2000 steps 1.54; its prompts re-run the ViT every step)
        "default": {"model": "ial-small", "init": "kotka-clip-vit", "depth": 2, "epochs": 6, "steps": 2000,
                    "batch": 32, "lr": 3.5e-3, "lr_min": 0.0, "warmup_steps": 10},
        "paper": {**PAPER, "lr": 3.5e-3, "lr_min": 0.0, "epochs": 5, "batch": 4, "optimizer": "sgd",
                  "warmup_steps": 0}}

    def make_prompts(self) -> maple.MultiModalPrompts:
        """The prompt learner; the first-layer context starts from the embeddings of ctx_init's first tokens."""
        o = self.options
        text_width = self.model.token_embedding.weight.shape[1]
        if not isinstance(self.model.visual, VisionTransformer):
            raise BenchmarkError(f"{self.name}: prompts enter a ViT image tower; {o.model} has a "
                                 f"{type(self.model.visual).__name__} (use model=ial-small, or ViT-B-16 with --weights)")
        if not 1 <= o.depth <= len(self.model.transformer.resblocks):
            raise BenchmarkError(f"{self.name}: depth={o.depth}; this model has "
                                 f"{len(self.model.transformer.resblocks)} text layers")
        init = None
        words = self.tokenizer.tokens(o.ctx_init.strip()) if o.ctx_init.strip() else []
        if words:
            if len(words) < o.n_ctx:
                raise BenchmarkError(f"{self.name}: ctx_init {o.ctx_init!r} has fewer than n_ctx={o.n_ctx} tokens")
            with torch.no_grad():
                init = self.model.token_embedding.weight[torch.tensor(words[:o.n_ctx], device=self.device)].cpu()
        self.prefix = o.ctx_init.strip() if words else " ".join(["X"] * o.n_ctx)
        return maple.MultiModalPrompts(text_width, self.model.visual.transformer.width, o.n_ctx, o.depth,
                                       self.ctx.seed, init)

    def learn(self, dataset: Dataset, given: tuple[Any, bool] | None) -> None:
        """Learn the prompts on the train split (both towers frozen), cached like the other methods."""
        refuse_partial_freezing(self.name, self.options)
        self.prompts = self.make_prompts().to(self.device)
        if official_prompts(self.name, self.prompts, self.options, given):
            return
        if given is not None and isinstance(given[0], dict):
            self.prompts.load_state_dict(given[0])
            return
        if self.options.epochs <= 0 and self.options.steps <= 0:
            return

        def train() -> TrainLog:
            tokens = self.prompts.prompt_tokens(self.tokenizer, self.prefix, dataset.address_book.addresses)
            labels = train_texts(dataset, self.tokenizer, "raw", captions=False).labels
            source = image_source(dataset, self.transform, self.options.preload, self.ctx.progress)
            step = maple.MaPLeStep(self.model, self.prompts, tokens.to(self.device), labels, self.transform.normalize)
            return self.fit_step(step, source)

        def load(saved: dict[str, Any]) -> None:
            load_clip_state(self.model, saved["state_dict"], str(self.ctx.cache_dir))
            self.prompts.load_state_dict(saved["context"])

        self.cached_training(train, load, lambda: self.prompts.state_dict())

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """The image tower with its coupled prompts."""
        return self.prompts.encode_image(self.model, images)

    def encode_candidates(self, addresses: list[str]) -> torch.Tensor:
        """The candidates through the prompted text tower (the `template` option does not apply)."""
        tokens = self.prompts.prompt_tokens(self.tokenizer, self.prefix, addresses).to(self.device)
        return self.prompts.encode_text(self.model, tokens)

    def footprint(self) -> Footprint:
        """The image tower and the prompt learner (the couplings make the image prompts), and the candidates."""
        size = self.candidate_features.numel() * self.candidate_features.element_size()
        return Footprint(model=module_bytes(self.model.visual) + module_bytes(self.prompts), database=size,
                         search=size)
