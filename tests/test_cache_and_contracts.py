"""The runner's one cache key (seed, training options, data, weights), methods that cannot see the answers,
and the smallest new methods the base classes allow (each a class in one module)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from benchmark.dataset import Dataset
from benchmark.measure import StageClock
from benchmark.method import Footprint, Method, Prediction, QueryBatch, cache_key, make_options
from benchmark.protocol import cache_root
from benchmark.registry import METHODS, PROTOCOLS
from benchmark.runner import RunSpec, run, run_method
from methods.ial import IALMethod
from methods.vpr import recipes
from methods.vpr.adapters import VPRMethod
from methods.vpr.backbones import resnet_sequential
from methods.vpr.heads import L2Norm
from methods.vpr.models import DVGL, VPRNet
from methods.vpr.options import PlaceOptions

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(tmp_path: Path, methods: str, seed: int = 0) -> RunSpec:
    """A quick smoke run on tiny."""
    from benchmark.runner import parse_methods

    return RunSpec(protocol="tiny", methods=parse_methods(methods), preset="smoke", seed=seed, out=tmp_path,
                   progress=False, n_boot=20, latency_queries=1, warmup=0)


def results(folders: list[Path]) -> dict[str, dict]:
    """result.json of each folder by method label (name plus given options)."""
    out = {}
    for folder in folders:
        r = json.loads((folder / "result.json").read_text())
        label = r["method"]["name"] + "".join(f",{k}={v}" for k, v in sorted(r["method"]["overrides"].items()))
        r["_scores"] = [json.loads(line)["scores"] for line in (folder / "predictions.jsonl").open()]
        out[label] = r
    return out


def model_entries() -> set[str]:
    """Folders under the cache's models/."""
    folder = cache_root() / "models"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_two_seeds_train_two_models_and_score_differently(tiny_dataset, tmp_path):
    methods = "addressclip:steps=3,coop:steps=3,gem:steps=2"
    before = model_entries()
    zero = results(run(spec(tmp_path / "s0", methods, seed=0)))
    after_zero = model_entries()
    one = results(run(spec(tmp_path / "s1", methods, seed=1)))
    after_one = model_entries()
    assert len(after_zero - before) == 3 and len(after_one - after_zero) == 3  # one new entry per method and seed
    for label in zero:
        a, b = zero[label], one[label]
        assert a["training"]["seed"] == 0 and b["training"]["seed"] == 1 and b["seed"] == 1
        assert a["method"]["cache_key"] != b["method"]["cache_key"]
        assert a["training"]["cache_key"] == a["method"]["cache_key"] and not b["training"]["cached"]
        assert a["_scores"] != b["_scores"], label


def test_pipeline_options_hit_the_cache_and_training_options_miss_it(tiny_dataset, tmp_path):
    first = results(run(spec(tmp_path / "a", "gem:steps=2")))["gem,steps=2"]
    again = results(run(spec(tmp_path / "b", "gem:steps=2,search_depth=20,gem:steps=2,index=ivfpq")))
    for label, r in again.items():
        assert r["training"]["cached"] and r["method"]["cache_key"] == first["method"]["cache_key"], label
        assert r["method"]["config_hash"] != first["method"]["config_hash"]  # still its own run
    changed = results(run(spec(tmp_path / "c", "gem:steps=2,lr=0.001")))["gem,lr=0.001,steps=2"]
    assert not changed["training"]["cached"] and changed["method"]["cache_key"] != first["method"]["cache_key"]


def test_the_key_covers_seed_data_and_input_files_but_not_pipeline_options():
    gem = METHODS.get("gem")
    options = make_options(gem, "smoke", {})
    key = cache_key(gem, options, 0, "data")
    assert key == cache_key(gem, replace(options, geocoder="streetmap", index="ivfpq", search_depth=99), 0,
                            "data", {})
    assert len({key, cache_key(gem, options, 1, "data"), cache_key(gem, options, 0, "other"),
                cache_key(gem, options, 0, "data", {"weights": "ab" * 32}),
                cache_key(gem, options, 0, "data", {"init": "ab" * 32}),
                cache_key(gem, replace(options, lr=1.0), 0, "data")}) == 6
    assert not METHODS.get("tiny-images").trains and not METHODS.get("clip-zeroshot").trains


class Peeker(Method):
    """A method that tries to read the queries' answers while preparing (it must fail)."""

    name = "peeker"
    family = "reference"
    needs_images = False
    reads = "address"

    def prepare(self, dataset: Dataset) -> None:
        """Reach for the answers."""
        if self.reads == "address":
            dataset.splits["queries"].address  # noqa: B018
        else:
            dataset.utm("queries")

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Never reached."""
        raise AssertionError

    def footprint(self) -> Footprint:
        """Nothing."""
        return Footprint()


class Recorder(Peeker):
    """Prepares honestly and records what each query batch carries."""

    def prepare(self, dataset: Dataset) -> None:
        """Nothing to prepare; the candidates are visible."""
        self.first = dataset.address_book.addresses[0]
        self.seen: list[object] = []

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """The same guess for everyone; remember whether the truth came along."""
        self.seen.append(batch.true_utm)
        return [Prediction([self.first], [1.0]) for _ in batch.paths]


@pytest.mark.parametrize("reads, error", [("address", AttributeError), ("utm", PermissionError)])
def test_methods_cannot_read_the_queries_answers(tiny_dataset, tmp_path, reads, error):
    cls = type("Peek", (Peeker,), {"reads": reads})
    with pytest.raises(error):
        run_method(PROTOCOLS.get("tiny"), tiny_dataset, cls, cls.Options(), spec(tmp_path, "prior"),
                   torch.device("cpu"))
    assert not any(tmp_path.rglob("result.json"))


def test_only_declared_methods_get_the_true_coordinates(tiny_dataset, tmp_path, monkeypatch):
    made: list[Recorder] = []
    monkeypatch.setattr(Recorder, "__init__", lambda self, o, c: (Method.__init__(self, o, c), made.append(self))[0])
    run_method(PROTOCOLS.get("tiny"), tiny_dataset, Recorder, Recorder.Options(), spec(tmp_path, "prior"),
               torch.device("cpu"))
    assert made[0].seen and all(t is None for t in made[0].seen)
    assert METHODS.get("oracle-gps").sees_true_coordinates


# --- the smallest new methods: a class each, nothing else touched ------------------------------------------


class AvgPool(VPRMethod):
    """A trained retrieval method: ResNet-18 conv4, average pooling, MultiSimilarity (12 lines)."""

    name = "avgpool"
    Options = PlaceOptions
    PRESETS = {"smoke": {"steps": 2, "batch": 4, "image_h": 48, "image_w": 64}}

    def build_network(self) -> VPRNet:
        """Trunk + global average pooling + L2."""
        trunk, _ = resnet_sequential("resnet18", "layer3", frozen=2)
        return VPRNet(DVGL, trunk, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), L2Norm(1)))

    def train(self, model: VPRNet, data: recipes.TrainSplit, rng: np.random.Generator) -> recipes.TrainLog:
        """The shared MultiSimilarity recipe."""
        return recipes.train_multisimilarity(model, data, self.options, rng, self.ctx.device, False, "avgpool")


class Prototypes(IALMethod):
    """A non-CLIP IAL method: each candidate is the mean 8×8 thumbnail of its training images (15 lines)."""

    name = "prototypes"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An 8×8 colour thumbnail, flattened."""
        return torch.from_numpy(np.asarray(image.resize((8, 8)), np.float32).reshape(-1) / 255.0)

    def fit(self, dataset: Dataset) -> None:
        """Mean thumbnail per training address."""
        table = dataset.splits["train"]
        images = torch.stack([self.preprocess(Image.open(p)) for p in dataset.paths("train")])
        self.means = {a: images[torch.tensor((table.address == a).to_numpy())].mean(0) for a in set(table.address)}

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """The thumbnail itself."""
        return images - 0.5

    def encode_candidates(self, addresses: list[str]) -> torch.Tensor:
        """Each address's mean thumbnail (zeros for database-only addresses)."""
        return torch.stack([self.means.get(a, torch.full((192,), 0.5)) for a in addresses]) - 0.5

    def image_encoder(self) -> nn.Module:
        """No weights."""
        return nn.Identity()


@pytest.mark.parametrize("cls", [AvgPool, Prototypes])
def test_a_new_method_is_one_class_on_the_shared_bases(tiny_dataset, tmp_path, cls):
    options = make_options(cls, "smoke", {})
    folder = run_method(PROTOCOLS.get("tiny"), tiny_dataset, cls, options, spec(tmp_path, "prior"),
                        torch.device("cpu"))
    result = json.loads((folder / "result.json").read_text())
    assert result["method"]["family"] == cls.family and 0 <= result["metrics"]["ssa@1"] <= 100
    assert (result["training"] is not None) == cls.trains
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
    assert len(rows) == len(tiny_dataset.splits["queries"]) and all(len(set(r["topk"])) == RunSpec.k for r in rows)
