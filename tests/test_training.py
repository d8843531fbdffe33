"""Shared training utilities: deterministic loaders, checkpoint store, weight-file errors."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.training import CheckpointStore, check_state_dict, load_weights_file, seeded_loader


def test_seeded_loader_order_depends_only_on_seed():
    data = list(range(20))
    first = [b.tolist() for b in seeded_loader(data, 4, seed=7)]
    again = [b.tolist() for b in seeded_loader(data, 4, seed=7)]
    other = [b.tolist() for b in seeded_loader(data, 4, seed=8)]
    assert first == again != other and sorted(sum(first, [])) == data


def test_checkpoint_store_round_trip(tmp_path):
    store = CheckpointStore(tmp_path / "m")
    assert not store.exists()
    store.save({"w": torch.arange(3)})
    assert store.exists() and store.load()["w"].tolist() == [0, 1, 2]
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["model.pt"]


def test_state_dict_mismatch_lists_keys_and_shapes():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(BenchmarkError) as err:
        check_state_dict(model, {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}, "ckpt.pt")
    text = str(err.value)
    assert "ckpt.pt" in text and "missing keys: bias" in text and "unexpected keys: extra" in text
    assert "weight (2, 4) vs (2, 3)" in text
    check_state_dict(model, {"weight": torch.ones(2, 3), "bias": torch.ones(2)}, "ok")
    assert model.weight.sum().item() == 6


def test_weights_file_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_weights_file(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(BenchmarkError, match="cannot be read"):
        load_weights_file(tmp_path / "bad.pt")
