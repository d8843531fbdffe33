"""Networks pretrained by ialbench itself on another rendered city, that a method can start from.

Papers start from ImageNet or CLIP weights; none can be downloaded here, so the CPU presets start from what the
project's own code trained on Kotka (a city the Helsinki protocol never sees). Two kinds:
- a ResNet trunk (`kind="trunk"`), stored in torchvision's ResNet naming (`conv1.`, `bn1.`, `layer1.`..) up to its
  cut; it loads into both layouts the methods use: `ResNetTrunk` (`model.conv1.` ...) and the dvgl Sequential
  (`0.`, `1.`, `4.` ...);
- a whole CLIP (`kind="clip"`: both towers, an ialbench CLIP checkpoint in float16), the start of the prompt
  learners and zero-shot CLIP, as the papers start them from OpenAI's CLIP.

`init=` on a method takes `scratch`, a registered name (shipped in `methods/weights/`, rebuilt by
`python -m benchmark pretrain NAME`), or a path to a trunk file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from benchmark.errors import BenchmarkError
from benchmark.hashing import file_sha256
from methods.training.checkpoints import check_state_dict, half_state, load_weights_file, save_atomic

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
# torchvision ResNet child -> index in the dvgl Sequential (conv1, bn1, relu, maxpool, layer1, ...)
SEQUENTIAL_INDEX = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}


@dataclass(frozen=True)
class TrunkOptions:
    """Where a ResNet trunk starts and how much of it stays fixed (options of every method with one)."""

    # scratch | a trunk pretrained by ialbench (TRUNKS, e.g. kotka-r18) | a trunk file
    init: str = "scratch"
    # Leading ResNet stages frozen with the stem: dvgl / CosPlace freeze 2 of an ImageNet trunk (paper presets);
    # from scratch nothing may be frozen usefully (mixvpr SSA@1 35.6 vs 30.0 with 2 frozen, helsinki v2).
    frozen: int = 0
    # Run the frozen stages once over the train split (eval mode) and train the rest on their cached output
    # (methods/training/frozen.py); needs frozen >= 1 and augment=0.
    cache_frozen: bool = False


@dataclass(frozen=True)
class TrunkSpec:
    """A pretrained trunk: which method trained it, on which protocol, with which options, and its file."""

    name: str
    backbone: str
    cut: str
    protocol: str
    method: str  # a method spec as `--methods` takes it, e.g. "mixvpr:steps=1200"
    seed: int
    file: str  # under methods/weights/
    kind: str = "trunk"  # trunk: a ResNet stem..cut | clip: a whole CLIP (backbone = its model config)

    @property
    def path(self) -> Path:
        """Where the shipped file lives."""
        return WEIGHTS_DIR / self.file

    def describe(self) -> str:
        """One line for result records and tables: what the network is and how it was trained."""
        what = f"{self.backbone} CLIP" if self.kind == "clip" else f"{self.backbone} {self.cut}"
        return f"{what} pretrained on {self.protocol} ({self.method}, seed {self.seed})"


TRUNKS: dict[str, TrunkSpec] = {
    # the options spelled out are the mixvpr default preset of the day the shipped file was built
    "kotka-r18": TrunkSpec("kotka-r18", "resnet18", "layer3", "kotka",
                           "mixvpr:steps=3600,init=scratch,frozen=0,cache_frozen=false,augment=0.5", 0,
                           "kotka-r18.pt"),
    # AddressCLIP's default recipe on Kotka (addresses, captions, geography): both towers learn from Kotka's
    # image-text pairs, so Helsinki's street names are new to them, as Pittsburgh's are to OpenAI's CLIP
    # (zero-shot SSA@1 on Helsinki: 0.49, the paper's CLIP on Pitts-IAL: 0.85).
    "kotka-clip": TrunkSpec("kotka-clip", "ial-r18", "layer3", "kotka",
                            "addressclip:steps=1000,epochs=6,batch=64,lr=0.001,init=kotka-r18,frozen=2,"
                            "cache_frozen=true,augment=0", 0, "kotka-clip.pt", kind="clip"),
    # The same on the ViT towers MaPLe prompts (ial-small, from scratch: no ViT was pretrained before it).
    "kotka-clip-vit": TrunkSpec("kotka-clip-vit", "ial-small", "-", "kotka",
                                "addressclip:model=ial-small,steps=3000,epochs=16,batch=64,lr=0.001,init=scratch,"
                                "frozen=0,cache_frozen=false,augment=0.5", 0, "kotka-clip-vit.pt", kind="clip"),
}

# How every ResNet-18 method of the CPU default presets starts: from the Kotka trunk, its stem and first two
# stages fixed and computed once over the train split (cache_frozen, which needs augment=0); layer3 and the
# method's own head train. Helsinki v2, seed 0, SSA@1 at the same steps (2-core Xeon without AMX): mixvpr 42.32
# [40.2, 44.6] against 42.98 [40.7, 45.3] with every stage training and photometric augmentation, subst-classifier
# 56.96 [54.9, 59.2] against 58.83 [56.7, 61.0], in a fifth of the training time (103 s against 518 s).
KOTKA_START: dict[str, Any] = {"init": "kotka-r18", "frozen": 2, "cache_frozen": True, "augment": 0.0}


@dataclass(frozen=True)
class Trunk:
    """Trunk weights (torchvision naming), where they came from, and the file's hash."""

    state: dict[str, Tensor]
    source: str  # what to record as the backbone's origin
    path: Path
    sha256: str


def trunk_file(init: str) -> Path | None:
    """The file behind an `init=` value (None for scratch); an unknown name gets one clear error."""
    if init in ("", "scratch"):
        return None
    if init in TRUNKS:
        path = TRUNKS[init].path
        if not path.is_file():
            raise BenchmarkError(f"pretrained trunk {init!r} is missing ({path}); rebuild it with "
                                 f"`python -m benchmark pretrain {init}` or pass init=scratch")
        return path
    path = Path(init).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"init={init!r} is neither scratch, a registered trunk ({', '.join(TRUNKS)}) "
                             "nor an existing trunk file")
    return path


def clip_start(init: str) -> TrunkSpec | None:
    """The registered whole-CLIP start an `init=` value names, else None (scratch, a trunk, a trunk file)."""
    spec = TRUNKS.get(init)
    return spec if spec is not None and spec.kind == "clip" else None


def load_trunk(init: str) -> Trunk | None:
    """Read the trunk an `init=` value names (None for scratch), as float32 tensors."""
    path = trunk_file(init)
    if path is None:
        return None
    if clip_start(init) is not None:
        raise BenchmarkError(f"init={init} is a whole CLIP (both towers): only the CLIP methods start from it "
                             f"(model={TRUNKS[init].backbone}); use a trunk ({', '.join(_trunk_names())}) "
                             "or init=scratch")
    state = load_weights_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()) or not state:
        raise BenchmarkError(f"trunk file {path} holds no state dict of tensors; rebuild it with "
                             "`python -m benchmark pretrain NAME`")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    source = TRUNKS[init].describe() if init in TRUNKS else f"trunk file {path.name}"
    return Trunk(state, source, path, file_sha256(path))


def _trunk_names() -> list[str]:
    return [name for name, spec in TRUNKS.items() if spec.kind == "trunk"]


def extract_trunk(state: dict[str, Tensor], prefix: str, cut: str) -> dict[str, Tensor]:
    """The torchvision-named stem and stages up to `cut` from a model state stored under `prefix`."""
    keep = ("conv1.", "bn1.", *(f"{s}." for s in RESNET_STAGES[:RESNET_STAGES.index(cut) + 1]))
    trunk = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):].startswith(keep)}
    if not trunk:
        raise BenchmarkError(f"no ResNet trunk under {prefix!r} in the trained state")
    return trunk


def _to_sequential(key: str) -> str:
    head, _, rest = key.partition(".")
    return f"{SEQUENTIAL_INDEX[head]}.{rest}"


def apply_trunk(module: nn.Module, trunk: Trunk) -> None:
    """Load the trunk strictly into a ResNetTrunk (its torchvision `model`) or a dvgl Sequential ResNet cut; a
    cut of the same backbone at another stage takes the trunk's stages it has (a shallower cut) or starts the
    stages past the trunk's cut fresh (a deeper one); another backbone or architecture is one clear error."""
    state = trunk.state
    inner = getattr(module, "model", None)
    if isinstance(inner, torchvision.models.ResNet):
        module = inner
    elif isinstance(module, nn.Sequential):
        state = {_to_sequential(k): v for k, v in state.items()}
    else:
        raise BenchmarkError(f"init= starts ResNet trunks only; this method's backbone is a "
                             f"{type(inner or module).__name__}: use init=scratch")
    own = {key.partition(".")[0] for key in module.state_dict()}
    given = {key.partition(".")[0] for key in state}
    shared = own & given
    if shared:  # stage by stage: what the trunk has and the module lacks is dropped, the module's extra stay fresh
        state = {k: v for k, v in state.items() if k.partition(".")[0] in shared}
    check_state_dict(module, state, f"trunk {trunk.path} (init=: use a trunk of this method's backbone, "
                                    "or init=scratch)", fresh=tuple(f"{s}." for s in sorted(own - given)))


_STAGE = re.compile(r"^(conv1|bn1|layer[1-4])\.")


def save_trunk(state: dict[str, Tensor], path: Path) -> None:
    """Write a trunk (torchvision naming) with float tensors as float16, atomically."""
    bad = [k for k in state if not _STAGE.match(k)]
    if bad:
        raise ValueError(f"not torchvision ResNet trunk keys: {bad[:4]}")
    save_atomic(half_state(state), path)


def build_trunk(spec: TrunkSpec, file: Path, results: Path, preset: str = "default", device: str = "auto",
                progress: bool = True) -> tuple[Path, Path]:
    """Train `spec.method` on `spec.protocol` with the runner (evaluated and written to `results` like any run),
    then save its trunk (or, for a CLIP start, the whole CLIP) to `file`. Returns (file, result folder)."""
    from benchmark.results import read_run
    from benchmark.runner import RunSpec, parse_methods, run

    methods = parse_methods(spec.method)
    if len(methods) != 1:
        raise BenchmarkError(f"trunk {spec.name}: method {spec.method!r} must name exactly one method")
    folder, = run(RunSpec(protocol=spec.protocol, methods=methods, preset=preset, device=device, seed=spec.seed,
                          out=results, progress=progress))
    weights = read_run(folder / "result.json").result.method.weights
    if weights.source != "from-scratch" or weights.path is None or not Path(weights.path).is_file():
        raise BenchmarkError(f"trunk {spec.name}: {spec.method} left no trained state ({folder}); it must train "
                             "(from scratch or a trunk, not from weights=)")
    if spec.kind == "clip":  # the whole trained CLIP, both towers
        from methods.addressclip.weights import save_clip_start

        save_clip_start(Path(weights.path), file, spec.describe())
        return file, folder
    state = torch.load(weights.path, map_location="cpu", weights_only=True)
    trunk = None
    for prefix in ("backbone.model.", "backbone.", "encoder."):  # ResNetTrunk, dvgl / Nanne Sequential
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if "0.weight" in inner:  # a Sequential ResNet cut: back to torchvision names
            names = {str(i): name for name, i in SEQUENTIAL_INDEX.items()}
            inner = {f"{names[head]}.{rest}": v for k, v in inner.items()
                     for head, _, rest in [k.partition(".")] if head in names}
        if "conv1.weight" in inner:
            trunk = extract_trunk(inner, "", spec.cut)
            break
    if trunk is None:
        raise BenchmarkError(f"trunk {spec.name}: {spec.method} has no ResNet trunk to extract")
    save_trunk(trunk, file)
    return file, folder


class StartsFromTrunk:
    """Mixin for methods whose `init` option may name a pretrained trunk: that file joins `input_files`, so its
    sha256 is part of the training cache key (put it before the Method base in the class's bases)."""

    @classmethod
    def input_files(cls, options: Any) -> dict[str, Path]:
        """`weights` (from the Method base), and the pretrained trunk `init` names."""
        files = super().input_files(options)  # type: ignore[misc]
        init = trunk_file(getattr(options, "init", "scratch"))
        return files if init is None else {**files, "init": init}
