"""Pretrained trunks (`init=`): built by the runner, shipped, loaded into both ResNet layouts, keyed into the
cache, and every misuse is one clear error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.method import make_options
from benchmark.registry import METHODS
from benchmark.runner import training_cache_key
from methods.training.trunks import (
    SEQUENTIAL_INDEX,
    TRUNKS,
    TrunkSpec,
    apply_trunk,
    build_trunk,
    clip_start,
    load_trunk,
    save_trunk,
)
from methods.vpr.backbones import ResNetTrunk, resnet_sequential

TAKES_INIT = [name for name in METHODS.names()
              if "init" in {f.name for f in dataclasses.fields(METHODS.get(name).Options)}]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_dataset):
    """A trunk pretrained by the runner on `tiny` (mixvpr, 3 smoke steps), as `pretrain` builds one."""
    folder = tmp_path_factory.mktemp("trunk")
    spec = TrunkSpec("tiny-r18", "resnet18", "layer3", "tiny", "mixvpr:steps=3", 0, "unused.pt")
    file, run = build_trunk(spec, folder / "tiny-r18.pt", folder / "results", preset="smoke", progress=False)
    return file, run


def test_build_writes_a_half_precision_torchvision_trunk_and_the_run_that_trained_it(built):
    file, run = built
    state = torch.load(file, weights_only=True)
    assert (run / "result.json").is_file() and (run / "predictions.jsonl").is_file()
    assert {k.split(".")[0] for k in state} == {"conv1", "bn1", "layer1", "layer2", "layer3"}
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


def test_both_resnet_layouts_compute_the_same_features_from_one_trunk(built):
    trunk = load_trunk(str(built[0]))
    lightning = ResNetTrunk("resnet18", "layer3")
    sequential, _ = resnet_sequential("resnet18", "layer3")
    apply_trunk(lightning, trunk)
    apply_trunk(sequential, trunk)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        a, b = lightning.eval()(x), sequential.eval()(x)
    assert torch.equal(a, b)
    assert torch.equal(lightning.model.conv1.weight, trunk.state["conv1.weight"])


@pytest.mark.parametrize("name", TAKES_INIT)
def test_every_method_with_init_starts_from_the_trunk_or_refuses_clearly(built, tiny_dataset, tmp_path, name):
    from benchmark.method import RunContext

    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    overrides = {"init": str(built[0]), **{k: "1" for k in ("steps", "epochs") if k in fields}}
    options = make_options(cls, "smoke", overrides)
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="smoke", cache_dir=tmp_path, progress=False,
                     batch_size=8)
    method = cls(options, ctx)
    trunk = load_trunk(str(built[0]))
    try:
        method.prepare(tiny_dataset)
    except BenchmarkError as e:  # a ViT backbone (salad), or a ViT image tower
        assert "init=" in str(e) and "scratch" in str(e)
        return
    if cls.trains:
        assert trunk.source in method.training.backbone
    else:  # a training-free method on the trunk's features (anyloc): the trunk is its provenance
        assert method.provenance()["sha256"] == trunk.sha256


def test_the_shipped_trunks_load_into_the_default_presets():
    for spec in (s for s in TRUNKS.values() if s.kind == "trunk"):
        trunk = load_trunk(spec.name)
        assert trunk is not None and trunk.sha256
        module = ResNetTrunk(spec.backbone, spec.cut)
        apply_trunk(module, trunk)


def test_the_trunk_file_is_in_the_cache_key(built, tmp_path):
    cls = METHODS.get("mixvpr")
    options = make_options(cls, "smoke", {"init": str(built[0])})
    key = training_cache_key(cls, options, 0, "data")
    state = torch.load(built[0], weights_only=True)
    state["conv1.weight"] = state["conv1.weight"] + 1
    other = tmp_path / "other.pt"
    save_trunk(state, other)
    assert key != training_cache_key(cls, dataclasses.replace(options, init=str(other)), 0, "data")
    other.write_bytes(built[0].read_bytes())  # same content, another name: only the option differs
    assert training_cache_key(cls, dataclasses.replace(options, init=str(other)), 0, "data") != key


@pytest.mark.parametrize(("init", "message"), [
    ("kotka-r19", "neither scratch, a registered trunk"),
    ("/nowhere/trunk.pt", "neither scratch, a registered trunk"),
])
def test_an_unknown_init_is_one_clear_error(init, message):
    with pytest.raises(BenchmarkError, match=message):
        load_trunk(init)


def test_a_trunk_of_another_backbone_does_not_fit(built, tmp_path):
    big = ResNetTrunk("resnet50", "layer3")
    with pytest.raises(BenchmarkError, match=r"or init=scratch\) does not fit ResNet: missing keys"):
        apply_trunk(big, load_trunk(str(built[0])))
    junk = tmp_path / "junk.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(BenchmarkError, match="holds no state dict"):
        load_trunk(str(junk))


def test_init_and_weights_together_are_refused(built, tmp_path, tiny_dataset):
    from benchmark.method import RunContext

    cls = METHODS.get("mixvpr")
    options = make_options(cls, "smoke", {"init": str(built[0]), "weights": str(built[0])})
    method = cls(options, RunContext(device=torch.device("cpu"), seed=0, preset="smoke", cache_dir=tmp_path,
                                     progress=False))
    with pytest.raises(BenchmarkError, match="give one"):
        method.prepare(tiny_dataset)


def test_pretrain_cli_names_an_unknown_trunk(capsys):
    assert main(["pretrain", "kotka-r81"]) == 2
    assert "did you mean 'kotka-r18'" in capsys.readouterr().err


DEFAULT_STARTS_FROM_A_TRUNK = [name for name in TAKES_INIT
                               if make_options(METHODS.get(name), "default", {}).init in TRUNKS
                               and TRUNKS[make_options(METHODS.get(name), "default", {}).init].kind == "trunk"]
DEFAULT_STARTS_FROM_A_CLIP = [name for name in TAKES_INIT if clip_start(make_options(METHODS.get(name), "default",
                                                                                     {}).init) is not None]


def _one_default_step(name: str, dataset, cache_dir):
    """The method's default preset, prepared on `dataset` with (at most) one training step of 4 images."""
    from benchmark.method import RunContext

    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    overrides = {k: v for k, v in {"steps": "1", "epochs": "1", "batch": "4"}.items() if k in fields}
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="default", cache_dir=cache_dir, progress=False,
                     batch_size=8)
    method = cls(make_options(cls, "default", overrides), ctx)
    method.prepare(dataset)
    return cls, method


@pytest.mark.parametrize("name", DEFAULT_STARTS_FROM_A_TRUNK)
def test_every_default_preset_network_takes_its_shipped_trunk(tiny_dataset, tmp_path, name):
    """The default preset's network (its backbone and cut) must fit the trunk it starts from: one step on tiny."""
    cls, method = _one_default_step(name, tiny_dataset, tmp_path)
    trunk = load_trunk(method.options.init)
    if cls.trains:
        assert trunk.source in method.training.backbone
    else:  # training-free on the trunk's features (anyloc)
        assert method.provenance()["sha256"] == trunk.sha256


@pytest.mark.parametrize("cut", ["layer2", "layer4"])
def test_a_cut_at_another_stage_takes_the_trunks_stages_it_has_and_starts_the_rest_fresh(built, cut):
    trunk = load_trunk(str(built[0]))  # resnet18 cut at layer3
    module, _ = resnet_sequential("resnet18", cut)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    apply_trunk(module, trunk)
    stage = {str(i): name for name, i in SEQUENTIAL_INDEX.items()}
    for key, value in module.state_dict().items():
        head, _, rest = key.partition(".")
        if stage[head] == "layer4":
            assert torch.equal(value, before[key]), key  # past the trunk's cut: as initialised
        else:
            assert torch.equal(value, trunk.state[f"{stage[head]}.{rest}"]), key
    assert any(k.startswith("7.") for k in before) == (cut == "layer4")


@pytest.fixture(scope="module")
def built_clip(tmp_path_factory, tiny_dataset):
    """A CLIP start pretrained by the runner on `tiny` (clip-address, 2 smoke steps), as `pretrain` builds one."""
    folder = tmp_path_factory.mktemp("clip")
    spec = TrunkSpec("tiny-clip", "ial-r18-tiny", "layer3", "tiny", "clip-address:steps=2", 0, "unused.pt",
                     kind="clip")
    file, run = build_trunk(spec, folder / "tiny-clip.pt", folder / "results", preset="smoke", progress=False)
    return file, run


def test_a_clip_start_is_the_trained_clip_in_half_precision(built_clip):
    from benchmark.results import read_run
    from methods.addressclip.model import build_clip
    from methods.addressclip.weights import load_clip_state, read_weights, split_checkpoint

    file, run = built_clip
    state, context, trained = split_checkpoint(read_weights(file))
    assert trained and context is None
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())

    original = read_weights(read_run(run / "result.json").result.method.weights.path)["state_dict"]
    assert set(state) == set(original)
    assert all(torch.equal(state[k], original[k].half()) for k in state if state[k].is_floating_point())
    model = build_clip("ial-r18-tiny", False, seed=1)
    load_clip_state(model, state, str(file))  # strict: every key and shape


def test_the_shipped_clip_starts_load_into_their_models():
    from methods.addressclip.model import build_clip
    from methods.addressclip.weights import load_clip_state, read_weights, split_checkpoint

    starts = [spec for spec in TRUNKS.values() if spec.kind == "clip"]
    assert starts
    for spec in starts:
        state, _, _ = split_checkpoint(read_weights(spec.path))
        load_clip_state(build_clip(spec.backbone, False, seed=0), state, str(spec.path))


def test_a_clip_start_is_refused_where_a_trunk_is_meant():
    with pytest.raises(BenchmarkError, match="is a whole CLIP"):
        load_trunk("kotka-clip")


@pytest.mark.parametrize("name", DEFAULT_STARTS_FROM_A_CLIP)
def test_every_default_preset_that_starts_from_a_clip_loads_both_towers(tiny_dataset, tmp_path, name):
    """One step on tiny from the shipped CLIP: the model is the start's (before training), recorded as such."""
    from methods.addressclip.weights import read_weights, split_checkpoint

    cls, method = _one_default_step(name, tiny_dataset, tmp_path)
    start = clip_start(method.options.init)
    shipped, _, _ = split_checkpoint(read_weights(start.path))
    own = method.model.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in shipped.items() if v.is_floating_point())  # frozen
    assert method.provenance()["path"] == str(start.path)
    if cls.trains:
        assert start.describe() in method.training.backbone


def test_a_clip_start_needs_its_own_model_and_no_weights(tiny_dataset, tmp_path):
    from benchmark.method import RunContext

    cls = METHODS.get("coop")
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="default", cache_dir=tmp_path, progress=False)
    with pytest.raises(BenchmarkError, match="set model=ial-r18"):
        cls(make_options(cls, "default", {"model": "ial-r18-tiny"}), ctx).prepare(tiny_dataset)
    with pytest.raises(BenchmarkError, match="give one"):
        cls(make_options(cls, "default", {"weights": str(TRUNKS["kotka-clip"].path)}), ctx).prepare(tiny_dataset)
