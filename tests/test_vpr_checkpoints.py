"""Official checkpoint layouts (tests/data/reference/checkpoints/*.json) load through the `weights` option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.method import RunContext, make_options
from benchmark.registry import METHODS
from methods.vpr.models import load_official, unwrap_state_dict

CHECKPOINTS = Path(__file__).resolve().parent / "data" / "reference" / "checkpoints"


def network(method: str, **overrides: str) -> torch.nn.Module:
    """A method's network at its paper (published) size, random weights."""
    cls = METHODS.get(method)
    ctx = RunContext(device=torch.device("cpu"), seed=0, preset="paper", cache_dir=Path("/nonexistent"))
    return cls(make_options(cls, "paper", overrides), ctx).build_network()


def reference_layout(name: str) -> dict[str, list[int]]:
    """key -> shape of an official full-model state_dict."""
    path = CHECKPOINTS / name
    assert path.is_file(), f"reference checkpoint layout {path} is missing (copied from the official implementations' tensors; see tests/data/reference/README.md)"
    return {t["key"]: t["shape"] for t in json.loads(path.read_text())["tensors"]}


CASES = [("netvlad_nanne_vgg16.json", "netvlad", {}),
         ("netvlad_nanne_vgg16.json", "sare", {}),
         ("cosplace_resnet18_512.json", "cosplace", {"backbone": "resnet18", "fc_dim": "512"}),
         ("cosplace_resnet50_2048.json", "cosplace", {}),
         ("eigenplaces_resnet50_2048.json", "eigenplaces", {}),
         ("mixvpr_resnet50_4096.json", "mixvpr", {}),
         ("salad_dinov2_vitb14.json", "salad", {})]


def _wrap(state: dict[str, torch.Tensor], layout: str) -> object:
    if layout == "plain":
        return state
    if layout == "nanne":  # main.py save_checkpoint, with nGPU > 1 (DataParallel on encoder and pool)
        prefixed = {k.replace("encoder.", "encoder.module.", 1).replace("pool.", "pool.module.", 1): v
                    for k, v in state.items()}
        return {"epoch": 3, "state_dict": prefixed, "recalls": {1: 0.5}, "best_score": 0.7, "optimizer": {},
                "parallel": True}
    if layout == "lightning":
        return {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6", "state_dict": state,
                "loops": {}, "hparams_name": "kwargs", "hyper_parameters": {"agg_arch": "x", "lr": 0.1}}
    if layout == "cosplace_last":
        return {"epoch_num": 1, "model_state_dict": state, "optimizer_state_dict": {},
                "classifiers_state_dict": [], "optimizers_state_dict": [], "best_val_recall1": 0.0}
    raise ValueError(layout)


LAYOUTS = {"netvlad": ["nanne"], "sare": ["nanne"], "cosplace": ["plain", "cosplace_last"],
           "eigenplaces": ["plain", "cosplace_last"],
           "mixvpr": ["plain", "lightning"], "salad": ["plain", "lightning"]}


@pytest.mark.parametrize("reference,method,overrides", CASES, ids=[f"{m}-{r}" for r, m, _ in CASES])
def test_published_size_has_the_official_keys_and_a_file_of_that_layout_loads(tmp_path, reference, method,
                                                                                overrides):
    model = network(method, **overrides)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference_layout(reference)
    source = dict(model.state_dict())
    marker = next(k for k, v in source.items() if v.is_floating_point())
    for layout in LAYOUTS[method]:
        source[marker] = torch.full_like(source[marker], float(len(layout)))  # proves this file was loaded
        path = tmp_path / f"{layout}.pth"
        torch.save(_wrap(source, layout), path)
        load_official(model, path)  # the published-size model itself (building ViT-B/14 again is slow)
        assert torch.equal(model.state_dict()[marker], source[marker])


def test_dvgl_gem_checkpoint_with_module_prefix_loads(tmp_path):
    model = network("gem")
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": state, "epoch_num": 2, "recalls": [1.0]}, tmp_path / "best_model.pth")
    load_official(network("gem"), tmp_path / "best_model.pth")


def test_a_mismatch_is_one_clear_error(tmp_path):
    model = network("cosplace", backbone="resnet18", fc_dim="512")
    state = dict(model.state_dict())
    state.pop("aggregation.1.p")
    state["aggregation.3.weight"] = torch.zeros(256, 512)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(BenchmarkError) as err:
        load_official(model, tmp_path / "bad.pth")
    message = str(err.value)
    assert "missing keys: aggregation.1.p" in message and "unexpected keys: extra.weight" in message
    assert "aggregation.3.weight (256, 512) vs (512, 512)" in message and "\n" not in message
    with pytest.raises(BenchmarkError, match="holds no state_dict"):
        unwrap_state_dict({"epoch": 1}, "x")
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_official(model, tmp_path / "absent.pth")
