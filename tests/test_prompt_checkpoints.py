"""Official prompt-learner checkpoints (`prompts=`): CoOp's, CoCoOp's and MaPLe's Dassl files, built here at the
published ViT-B/16 sizes with the pickled optimiser and scheduler objects Dassl saves beside them, load strictly
into ialbench's prompt learners; every mismatch is one clear error; on `tiny` a loaded file replaces training."""

from __future__ import annotations

import sys
import types
from collections import OrderedDict

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.method import RunContext, make_options
from benchmark.registry import METHODS
from methods.addressclip.coop import ConditionalPrompts, PromptContext
from methods.addressclip.maple import MultiModalPrompts
from methods.addressclip.weights import read_prompt_checkpoint


def _half(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).half()  # Dassl trains CLIP in fp16


def _save_dassl(path, state: dict[str, torch.Tensor], classes: int = 10) -> None:
    """As Dassl's save_model: the model's state dict (with the class names' fixed token_prefix/suffix), the epoch,
    the optimiser's state and a scheduler state holding its successor *object* (ConstantWarmupScheduler), and an
    object of a module that is not installed here (dassl's own)."""
    width = state["ctx"].shape[-1] if "ctx" in state else 512
    full = OrderedDict(state)
    full["token_prefix"] = torch.zeros(classes, 1, width).half()
    full["token_suffix"] = torch.zeros(classes, 60, width).half()
    param = torch.nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD([param], lr=0.002, momentum=0.9)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=50)
    module = types.ModuleType("dassl_stand_in")  # a module that is not installed at load time

    class ConstantWarmupScheduler:
        pass

    ConstantWarmupScheduler.__module__ = module.__name__
    ConstantWarmupScheduler.__qualname__ = "ConstantWarmupScheduler"
    module.ConstantWarmupScheduler = ConstantWarmupScheduler
    sys.modules[module.__name__] = module
    try:
        warmup = ConstantWarmupScheduler()
        warmup.successor = cosine
        torch.save({"state_dict": full, "epoch": 50, "optimizer": sgd.state_dict(),
                    "scheduler": {"successor": cosine, "warmup_epoch": 1, "last_epoch": 50, "self": warmup},
                    "val_result": None}, path)
    finally:
        del sys.modules[module.__name__]


def _maple_state(depth: int = 9, n_ctx: int = 2, prefix: str = "prompt_learner.") -> dict[str, torch.Tensor]:
    """MaPLe's ViT-B/16 prompt learner (text 512, vision 768) inside its whole saved model."""
    state = {f"{prefix}ctx": _half(n_ctx, 512, seed=0), f"{prefix}proj.weight": _half(768, 512, seed=1),
             f"{prefix}proj.bias": _half(768, seed=2),
             "image_encoder.conv1.weight": _half(768, 3, 16, 16, seed=3),  # the frozen CLIP it also saves
             "text_encoder.positional_embedding": _half(77, 512, seed=4), "logit_scale": torch.tensor(4.6)}
    for i in range(depth - 1):
        state[f"{prefix}compound_prompts_text.{i}"] = _half(n_ctx, 512, seed=10 + i)
        state[f"{prefix}compound_prompt_projections.{i}.weight"] = _half(768, 512, seed=30 + i)
        state[f"{prefix}compound_prompt_projections.{i}.bias"] = _half(768, seed=50 + i)
    return state


def test_coops_published_context_loads(tmp_path):
    ctx = _half(16, 512, seed=0)  # ViT-B/16, M = 16
    _save_dassl(tmp_path / "model.pth.tar-50", {"ctx": ctx})
    prompts = PromptContext(512, 16, seed=0)
    prompts.load_official(read_prompt_checkpoint(tmp_path / "model.pth.tar-50"), "coop file")
    assert torch.equal(prompts.context.data, ctx.float())


def test_cocoops_context_and_meta_net_load(tmp_path):
    state = {"ctx": _half(4, 512, seed=0), "meta_net.linear1.weight": _half(32, 512, seed=1),
             "meta_net.linear1.bias": _half(32, seed=2), "meta_net.linear2.weight": _half(512, 32, seed=3),
             "meta_net.linear2.bias": _half(512, seed=4)}
    _save_dassl(tmp_path / "model.pth.tar-10", state)
    prompts = ConditionalPrompts(512, 4, seed=0, image_width=512)  # ViT-B/16: hidden 512 / 16 = 32
    prompts.load_official(read_prompt_checkpoint(tmp_path / "model.pth.tar-10"), "cocoop file")
    assert torch.equal(prompts.context.data, state["ctx"].float())
    assert torch.equal(prompts.meta_net[0].weight.data, state["meta_net.linear1.weight"].float())
    assert torch.equal(prompts.meta_net[2].bias.data, state["meta_net.linear2.bias"].float())


def test_maples_published_prompt_learner_loads_and_couples_as_saved(tmp_path):
    state = _maple_state()
    _save_dassl(tmp_path / "model.pth.tar-5", state)
    prompts = MultiModalPrompts(512, 768, n_ctx=2, depth=9, seed=0)
    prompts.load_official(read_prompt_checkpoint(tmp_path / "model.pth.tar-5"), "maple file")
    p = "prompt_learner."
    assert torch.equal(prompts.context.data, state[f"{p}ctx"].float())
    assert torch.equal(prompts.deep_text[7].data, state[f"{p}compound_prompts_text.7"].float())
    with torch.no_grad():
        vision = prompts.vision_prompts()
    assert len(vision) == 9 and vision[0].shape == (2, 768)
    expected = state[f"{p}ctx"].float() @ state[f"{p}proj.weight"].float().T + state[f"{p}proj.bias"].float()
    assert torch.allclose(vision[0], expected, atol=1e-4)
    layer3 = (state[f"{p}compound_prompts_text.2"].float() @ state[f"{p}compound_prompt_projections.2.weight"].float().T
              + state[f"{p}compound_prompt_projections.2.bias"].float())
    assert torch.allclose(vision[3], layer3, atol=1e-4)


@pytest.mark.parametrize(("build", "state", "message"), [
    (lambda: PromptContext(512, 16, seed=0), {"ctx": _half(4, 512, seed=0)}, "set n_ctx=4"),
    (lambda: PromptContext(64, 16, seed=0), {"ctx": _half(16, 512, seed=0)}, "pass that CLIP with weights="),
    (lambda: PromptContext(512, 16, seed=0), {"ctx": _half(100, 16, 512, seed=0)}, "class-specific contexts"),
    (lambda: MultiModalPrompts(512, 768, n_ctx=2, depth=3, seed=0), _maple_state(), "set depth=9"),
    (lambda: ConditionalPrompts(512, 4, seed=0, image_width=512), {"ctx": _half(4, 512, seed=0)},
     "missing keys: meta_net.0.bias"),
])
def test_a_checkpoint_that_does_not_fit_is_one_clear_error(tmp_path, build, state, message):
    _save_dassl(tmp_path / "model.pth.tar-1", state)
    with pytest.raises(BenchmarkError, match=message):
        build().load_official(read_prompt_checkpoint(tmp_path / "model.pth.tar-1"), "the file")


def test_files_without_prompts_are_one_clear_error(tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist; pass prompts=PATH"):
        read_prompt_checkpoint(tmp_path / "nowhere.pth.tar-5")
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchmarkError, match="cannot be read"):
        read_prompt_checkpoint(tmp_path / "junk")
    torch.save({"state_dict": {"visual.proj": torch.zeros(2)}}, tmp_path / "clip.pt")
    with pytest.raises(BenchmarkError, match="no prompt context"):
        read_prompt_checkpoint(tmp_path / "clip.pt")


@pytest.mark.parametrize(("name", "state"), [
    ("coop", {"ctx": _half(16, 64, seed=0)}),  # smoke: ial-r18-tiny, text width 64
    ("maple", {k.removeprefix("prompt_learner."): v for k, v in
               {"ctx": _half(2, 64, seed=0), "proj.weight": _half(64, 64, seed=1), "proj.bias": _half(64, seed=2),
                "compound_prompts_text.0": _half(2, 64, seed=3),
                "compound_prompt_projections.0.weight": _half(64, 64, seed=4),
                "compound_prompt_projections.0.bias": _half(64, seed=5)}.items()}),  # smoke: ial-tiny, depth 2
])
def test_on_tiny_a_given_prompt_checkpoint_is_evaluated_instead_of_trained(tmp_path, tiny_dataset, name, state):
    _save_dassl(tmp_path / "model.pth.tar-5", state)
    cls = METHODS.get(name)
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="smoke", cache_dir=tmp_path / "cache",
                     progress=False, batch_size=8)
    method = cls(make_options(cls, "smoke", {"prompts": str(tmp_path / "model.pth.tar-5")}), ctx)
    method.prepare(tiny_dataset)
    assert torch.equal(method.prompts.context.data, state["ctx"].float())
    assert getattr(method, "training", None) is None  # nothing trained, nothing cached
    assert not (tmp_path / "cache" / "model.pt").exists()
