"""AddressCLIP and the CLIP baselines end to end on the `tiny` protocol: training, cache, weights, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.errors import BenchmarkError
from benchmark.images import iterate_images
from benchmark.measure import StageClock
from benchmark.method import QueryBatch, RunContext, make_options
from benchmark.registry import METHODS
from benchmark.runner import RunSpec, run

pytestmark = pytest.mark.usefixtures("one_thread")


def make(name: str, cache: Path, **options):
    """A method on the smoke preset with options overridden, caching into `cache`."""
    cls = METHODS.get(name)
    opts = make_options(cls, "smoke", {k: str(v) for k, v in options.items()})
    return cls(opts, RunContext(torch.device("cpu"), seed=0, preset="smoke", cache_dir=cache, progress=False))


def predict_split(method, dataset, split: str) -> list[list[str]]:
    """Top-5 addresses for every image of a split."""
    out = []
    for images in iterate_images(dataset.paths(split), method.preprocess, 64):
        out += [p.topk for p in method.predict(QueryBatch(images, [], None), 5, StageClock())]
    return out


def losses(method) -> list[float]:
    """The total loss of every training step, from the loss log the method's training left in its cache."""
    log = Path(method.training.loss_log)
    return [json.loads(line)["total"] for line in log.read_text().splitlines()]


def no_training(*args, **kwargs):
    """Stands in for the training loop where none may run."""
    raise AssertionError("training ran although a trained model was available")


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """AddressCLIP (all three losses) trained for 10 epochs on tiny (~70 steps of 32), unaugmented."""
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("addressclip-model")
    method = make("addressclip", cache, epochs=10, augment=0)
    method.prepare(tiny_dataset)
    return method, cache


def test_training_lowers_the_loss_and_beats_chance(trained, tiny_dataset):
    method, _ = trained
    trace = losses(method)
    assert not method.training.cached and len(trace) == method.training.steps == 70
    assert sum(trace[-10:]) / 10 < 0.8 * sum(trace[:10]) / 10
    truth = list(tiny_dataset.splits["database"].address)  # locations never seen in training
    top1 = [topk[0] for topk in predict_split(method, tiny_dataset, "database")]
    accuracy = sum(p == t for p, t in zip(top1, truth)) / len(truth)
    assert accuracy > 2 / len(tiny_dataset.address_book)


def test_second_prepare_loads_the_cache_without_training(trained, tiny_dataset, monkeypatch):
    method, cache = trained
    monkeypatch.setattr("methods.addressclip.adapters.fit", no_training)
    again = make("addressclip", cache, epochs=10)
    again.prepare(tiny_dataset)
    assert again.training.cached and again.training.steps == method.training.steps
    assert predict_split(again, tiny_dataset, "queries") == predict_split(method, tiny_dataset, "queries")


def test_weights_option_evaluates_a_saved_checkpoint(trained, tiny_dataset, monkeypatch, tmp_path):
    method, cache = trained
    monkeypatch.setattr("methods.addressclip.adapters.fit", no_training)
    file = cache / "model.pt"
    given = make("addressclip", tmp_path / "other", epochs=10, weights=file)
    given.prepare(tiny_dataset)
    assert given.provenance()["source"] == "file" and len(given.provenance()["sha256"]) == 64
    assert predict_split(given, tiny_dataset, "queries") == predict_split(method, tiny_dataset, "queries")


def test_template_changes_the_candidate_texts(trained, tiny_dataset, tmp_path, monkeypatch):
    method, cache = trained
    monkeypatch.setattr("methods.addressclip.adapters.fit", no_training)
    file = cache / "model.pt"
    sentence = make("addressclip", tmp_path / "s", epochs=10, weights=file, template="sentence")
    sentence.prepare(tiny_dataset)
    assert not torch.allclose(sentence.candidate_features, method.candidate_features)
    sentence.options = method.options  # same model, raw template again: the same features
    torch.testing.assert_close(F.normalize(sentence.encode_candidates(sentence.candidates), dim=-1),
                               method.candidate_features)


def test_same_seed_same_losses_and_predictions(tiny_dataset, tmp_path):
    runs = []
    for name in ("a", "b"):
        method = make("addressclip", tmp_path / name, steps=6, geo="literal")
        method.prepare(tiny_dataset)
        runs.append((losses(method), predict_split(method, tiny_dataset, "queries")))
    assert len(runs[0][0]) == 6 and runs[0] == runs[1]


def test_coop_learns_only_the_context(tiny_dataset, tmp_path):
    method = make("coop", tmp_path / "coop", steps=8, n_ctx=4)
    method.prepare(tiny_dataset)
    fresh = make("clip-zeroshot", tmp_path / "zs")
    fresh.prepare(tiny_dataset)
    assert not method.training.cached and losses(method)[-1] < losses(method)[0]
    for key, value in fresh.model.state_dict().items():  # the same seed builds the same (frozen) towers
        assert torch.equal(value, method.model.state_dict()[key]), key
    assert method.prompts.context.abs().sum() > 0 and method.candidate_features.shape[0] == 24


def test_loss_options_are_checked(tiny_dataset, tmp_path):
    for losses, message in (("geography", "address or caption"), ("address+gps", "join terms")):
        with pytest.raises(BenchmarkError, match=message):
            make("addressclip", tmp_path / losses, losses=losses).prepare(tiny_dataset)
    with pytest.raises(BenchmarkError, match="fine-tunes official CLIP weights"):
        METHODS.get("addressclip")(make_options(METHODS.get("addressclip"), "paper", {}),
                                   RunContext(torch.device("cpu"), 0, "paper", tmp_path)).prepare(tiny_dataset)


def test_runner_records_family_footprint_and_weights(tiny_dataset, tmp_path):
    spec = RunSpec(protocol="tiny", preset="smoke", out=tmp_path, progress=False, n_boot=50, latency_queries=3,
                   methods=[("clip-address", {"steps": "2"}), ("clip-zeroshot", {})])
    folders = run(spec)
    results = [json.loads((folder / "result.json").read_text()) for folder in folders]
    for result in results:
        assert result["method"]["family"] == "ial" and result["metrics"]["median_error_m"] is None
        assert result["cost"]["storage_bytes"]["database"] == 24 * 64 * 4  # candidates × embed_dim × float32
        assert result["cost"]["search_bytes"] == 24 * 64 * 4  # the paper's Table 5 "Memory"
        assert 0 < result["cost"]["storage_bytes"]["model"] < 16_000_000  # ResNet-18 conv4 + GeM + projection
        weights = result["method"]["weights"]
        if result["method"]["name"] == "clip-zeroshot":  # nothing trained: a random CLIP
            assert weights == {"source": "from-scratch"}
        else:  # the trained state, as the VPR methods record theirs
            assert weights["source"] == "from-scratch" and weights["path"].endswith("model.pt")
            assert len(weights["sha256"]) == 64


@pytest.mark.parametrize("towers", ["image", "text"])
def test_one_tower_fine_tunes_while_the_other_stays_as_it_was(towers):
    from methods.addressclip.adapters import freeze_towers
    from methods.addressclip.model import build_clip

    model = build_clip("ial-r18-tiny", False, 0)
    freeze_towers(model, towers)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "logit_scale" in trainable
    assert all(n.startswith("visual.") == (towers == "image") for n in trainable - {"logit_scale"})
    assert any(n.startswith("visual.") for n in trainable) == (towers == "image")
    with pytest.raises(BenchmarkError, match="towers='none': use one of both, image, text"):
        freeze_towers(model, "none")
