"""`cache_frozen`: the frozen stages run once; training the rest on their cached output gives the gradients of
the full trunk (frozen batch norms in eval mode), leaves the frozen stages untouched, and every misuse is one
clear error."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.method import RunContext, make_options
from benchmark.registry import METHODS
from methods.training.frozen import check_cache, prefix_features, rest_only, split_trunk
from methods.training.trunks import SEQUENTIAL_INDEX
from methods.vpr.backbones import DinoV2, ResNetTrunk, resnet_sequential, vgg16_encoder

TAKES_CACHE = [name for name in METHODS.names()
               if "cache_frozen" in {f.name for f in dataclasses.fields(METHODS.get(name).Options)}]


def _trunks() -> list[tuple[str, torch.nn.Module]]:
    torch.manual_seed(0)
    return [("sequential", resnet_sequential("resnet18", "layer3")[0]), ("lightning", ResNetTrunk("resnet18", "layer3"))]


@pytest.mark.parametrize(("layout", "trunk"), _trunks())
@pytest.mark.parametrize("frozen", [1, 2, 3])
def test_the_rest_on_the_prefix_output_is_the_whole_trunk(layout, trunk, frozen):
    trunk.eval()
    prefix, rest = split_trunk(trunk, frozen)
    x = torch.randn(3, 3, 48, 64)
    with torch.no_grad():
        whole = trunk(x)
        cached = prefix(x)
        assert torch.equal(rest(cached), whole)
        with rest_only(trunk, rest):
            assert torch.equal(trunk(cached), whole)
        assert torch.equal(trunk(x), whole)  # the trunk's own forward is back after the block


def test_training_on_cached_features_gives_the_full_trunks_gradients():
    torch.manual_seed(0)
    trunk, _ = resnet_sequential("resnet18", "layer3", frozen=2)
    images = torch.randint(0, 256, (6, 3, 48, 64), dtype=torch.uint8)
    normalise = lambda u: u.float() / 255.0 - 0.5  # noqa: E731
    prefix, rest = split_trunk(trunk, 2)
    features = prefix_features(prefix, images, normalise, 4, torch.device("cpu"))
    assert features.dtype == torch.float32 and features.shape == (6, 128, 6, 8)

    def grads(run) -> list[torch.Tensor]:
        trunk.zero_grad(set_to_none=True)
        run().pow(2).mean().backward()
        return [p.grad.clone() for p in rest.parameters()]

    trunk.train()
    prefix.eval()  # the cache ran the frozen stages in eval mode
    full = grads(lambda: trunk(normalise(images)))
    with rest_only(trunk, rest):
        cached = grads(lambda: trunk(features.float()))
    for a, b in zip(full, cached):
        torch.testing.assert_close(b, a)
    assert all(p.grad is None for p in prefix.parameters())


@pytest.mark.parametrize(("frozen", "augment", "message"), [
    (0, 0.0, "set frozen=1"),
    (2, 0.5, "needs augment=0"),
])
def test_a_cache_that_would_change_training_is_refused(frozen, augment, message):
    with pytest.raises(BenchmarkError, match=message):
        check_cache("m", frozen, True, augment)
    check_cache("m", frozen, False, augment)  # off: nothing to check


@pytest.mark.parametrize("trunk", [vgg16_encoder()[0], DinoV2(embed_dim=32, depth=2, num_heads=2, grid=4)])
def test_only_resnet_trunks_are_cached(trunk):
    with pytest.raises(BenchmarkError, match="ResNet trunks only"):
        split_trunk(trunk, 1)


def _frozen_keys(state: dict[str, torch.Tensor], frozen: int) -> dict[str, torch.Tensor]:
    """The stem's and the first `frozen` stages' tensors of a saved model, in either ResNet layout."""
    heads = ["conv1", "bn1", *(f"layer{i}" for i in range(1, frozen + 1))]
    index = "|".join(str(SEQUENTIAL_INDEX[h]) for h in heads)
    pattern = re.compile(rf"(^|\.)(trunk|encoder|backbone)\.({index})\.|(^|\.)model\.({'|'.join(heads)})\.")
    return {k: v for k, v in state.items() if pattern.search(k)}


@pytest.mark.parametrize("name", TAKES_CACHE)
def test_every_method_with_a_resnet_trunk_trains_from_the_cache_or_refuses_clearly(tiny_dataset, tmp_path, name):
    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    overrides = {"frozen": "1", "cache_frozen": "true", "augment": "0",
                 **{k: "2" for k in ("steps",) if k in fields}, **{k: "1" for k in ("epochs",) if k in fields}}
    options = make_options(cls, "smoke", overrides)
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="smoke", cache_dir=tmp_path, progress=False,
                     batch_size=8)
    method = cls(options, ctx)
    torch.manual_seed(0)
    try:
        method.prepare(tiny_dataset)
    except BenchmarkError as e:  # ViT towers and backbones, prompt learners with frozen towers
        assert "frozen" in str(e) or "ResNet" in str(e), str(e)
        return
    assert method.training.steps >= 1
    saved = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)
    state = saved.get("state_dict", saved)
    frozen = _frozen_keys(state, 1)
    assert frozen, sorted(state)[:10]
    # The frozen stages were never run in train mode: their batch-norm statistics are still the initial ones.
    means = [v for k, v in frozen.items() if k.endswith("running_mean")]
    assert means and all(torch.count_nonzero(m) == 0 for m in means)


def test_the_next_method_with_the_same_frozen_stages_reuses_the_features():
    torch.manual_seed(0)
    trunk, _ = resnet_sequential("resnet18", "layer3", frozen=1)
    prefix, _ = split_trunk(trunk, 1)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    plain = lambda u: u.float() / 255.0  # noqa: E731
    first = prefix_features(prefix, images, plain, 2, torch.device("cpu"))
    assert prefix_features(prefix, images, lambda u: u.float() / 255.0, 2, torch.device("cpu")) is first
    assert prefix_features(prefix, images.clone(), plain, 2, torch.device("cpu")) is not first  # other images
    other = prefix_features(prefix, images, lambda u: u.float() / 127.5 - 1.0, 2, torch.device("cpu"))
    assert not torch.equal(other, first)  # another normalisation
    with torch.no_grad():
        prefix[0].weight.add_(1.0)
    assert not torch.equal(prefix_features(prefix, images, plain, 2, torch.device("cpu")), first)  # other weights


def test_a_split_is_decoded_once_per_preprocessing(tiny_dataset, monkeypatch):
    from benchmark import images as module

    calls = []
    real = module.map_images
    monkeypatch.setattr(module, "map_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    paths = tiny_dataset.paths("train")[:5]
    to_uint8 = lambda im: torch.tensor(np.asarray(im.resize((8, 6)))).permute(2, 0, 1)  # noqa: E731
    a = module.decoded_once(("test", 6, 8), paths, to_uint8, 4)
    assert module.decoded_once(("test", 6, 8), paths, to_uint8, 4) is a and len(calls) == 1
    module.decoded_once(("test", 12, 16), paths, to_uint8, 4)
    assert len(calls) == 2
