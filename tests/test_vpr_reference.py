"""Equivalence contract: the re-implemented VPR heads and losses against tensors from the official repos.

Fixtures and tolerances: tests/data/reference/README.md (golden tensors from the official implementations).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.vpr.heads import SALAD, CosPlaceHead, GeM, MixVPR, NetVLAD, log_optimal_transport
from methods.vpr.losses import (
    MarginCosineProduct,
    batch_loss,
    multisimilarity,
    sare_ind,
    sare_joint,
    split_tuples,
)

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
HEAD_ATOL = 1e-5  # README: heads < 1e-5 always (≲ 1e-6 expected)
LOSS_ATOL = 1e-6  # README: SARE / triplet ≲ 1e-6
LOGIT_ATOL = 1e-4  # README: CosFace logits are scaled by s=30


def load(relative: str) -> dict[str, Any]:
    """Load one reference fixture (tests/data/reference), failing with a clear message when it is missing."""
    path = REFERENCE / relative
    assert path.is_file(), f"reference fixture {path} is missing (copied from the official implementations' tensors; see tests/data/reference/README.md)"
    return torch.load(path, weights_only=True)


def _nanne_netvlad(a: dict[str, Any]) -> nn.Module:
    return NetVLAD(a["num_clusters"], a["dim"], a["normalize_input"], vladv2=a["vladv2"])


def _dvgl_netvlad(a: dict[str, Any]) -> nn.Module:
    return NetVLAD(a["clusters_num"], a["dim"], a["normalize_input"], work_with_tokens=a["work_with_tokens"])


HEADS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "netvlad_nanne.pt": _nanne_netvlad,
    "netvlad_nanne_vladv2.pt": _nanne_netvlad,
    "netvlad_dvgl.pt": _dvgl_netvlad,
    "netvlad_dvgl_tokens.pt": _dvgl_netvlad,
    "gem_cosplace.pt": lambda a: CosPlaceHead(a["features_dim"], a["fc_output_dim"]),
    "mixvpr.pt": lambda a: MixVPR(**a),
    "salad.pt": lambda a: SALAD(**a),
}


def _loaded_head(name: str) -> tuple[nn.Module, dict[str, Any]]:
    fixture = load(f"heads/{name}")
    head = HEADS[name](fixture["init_args"])
    assert list(head.state_dict()) == list(fixture["state_dict"])  # official key names, official order
    head.load_state_dict(fixture["state_dict"], strict=True)
    return head.eval(), fixture


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_reproduces_official_output(name: str) -> None:
    head, fixture = _loaded_head(name)
    with torch.no_grad():
        out = head(*fixture["inputs"])
    torch.testing.assert_close(out, fixture["outputs"], atol=HEAD_ATOL, rtol=0)


# Heads at the published sizes must carry exactly the keys and shapes of the official full checkpoints.
PUBLISHED: list[tuple[str, str, Callable[[], nn.Module]]] = [
    ("netvlad_nanne_vgg16.json", "pool.", lambda: NetVLAD(64, 512)),
    ("cosplace_resnet18_512.json", "aggregation.", lambda: CosPlaceHead(512, 512)),
    ("cosplace_resnet50_2048.json", "aggregation.", lambda: CosPlaceHead(2048, 2048)),
    ("eigenplaces_resnet50_2048.json", "aggregation.", lambda: CosPlaceHead(2048, 2048)),
    ("mixvpr_resnet50_4096.json", "aggregator.",
     lambda: MixVPR(in_channels=1024, in_h=20, in_w=20, out_channels=1024, mix_depth=4, out_rows=4)),
    ("salad_dinov2_vitb14.json", "aggregator.", lambda: SALAD(768, 64, 128, 256, dropout=0.3)),
]


@pytest.mark.parametrize(("checkpoint", "prefix", "build"), PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_head_matches_checkpoint_layout(checkpoint: str, prefix: str,
                                                  build: Callable[[], nn.Module]) -> None:
    layout = json.loads((REFERENCE / "checkpoints" / checkpoint).read_text())
    expected = [(t["key"], t["shape"]) for t in layout["tensors"] if t["key"].startswith(prefix)]
    assert [(prefix + k, list(v.shape)) for k, v in build().state_dict().items()] == expected


def test_salad_batch_of_one_matches_batched() -> None:
    head, fixture = _loaded_head("salad.pt")
    features, token = fixture["inputs"][0]
    with torch.no_grad():
        batched = head((features, token))
        single = torch.cat([head((features[i:i + 1], token[i:i + 1])) for i in range(len(token))])
    torch.testing.assert_close(single, batched, atol=1e-6, rtol=0)
    torch.testing.assert_close(single, fixture["outputs"], atol=HEAD_ATOL, rtol=0)


def test_salad_sinkhorn_columns_hold_unit_mass_and_dust_bin_is_learnable() -> None:
    head, fixture = _loaded_head("salad.pt")
    features = fixture["inputs"][0][0]
    with torch.no_grad():
        transport = log_optimal_transport(head.score(features).flatten(2), head.dust_bin, 3).exp()
    # v is updated last, so every location's mass (dustbin row included) is exactly 1 after scaling by n+m.
    torch.testing.assert_close(transport.sum(dim=1), torch.ones(transport.shape[0], transport.shape[2]))
    assert head.dust_bin.requires_grad and head.dust_bin.shape == torch.Size([])
    with pytest.raises(ValueError):
        log_optimal_transport(torch.zeros(1, 8, 8), head.dust_bin, 3)


def test_gem_and_mixvpr_parameters_follow_upstream() -> None:
    gem = GeM()
    assert gem.p.shape == torch.Size([1]) and gem.p.item() == 3.0 and gem.eps == 1e-6
    mixer = MixVPR(in_channels=8, in_h=4, in_w=5, out_channels=6, mix_depth=2, out_rows=3).mix[0].mix
    for linear in (mixer[1], mixer[3]):
        assert torch.count_nonzero(linear.bias) == 0 and 0.01 < linear.weight.std().item() < 0.03
    with pytest.raises(ValueError):
        MixVPR(in_channels=8, in_h=4, in_w=5, out_channels=6)(torch.zeros(1, 8, 5, 4))


@pytest.fixture(scope="module")
def blobs() -> torch.Tensor:
    """2560 local descriptors (dim 32) in 64 well-separated clusters, fixed seed."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(64, 32, generator=generator)
    return centres.repeat_interleave(40, dim=0) + 0.2 * torch.randn(64 * 40, 32, generator=generator)


@pytest.mark.parametrize("vladv2", [False, True])
def test_netvlad_init_is_deterministic_and_sharpens_assignments(blobs: torch.Tensor, vladv2: bool) -> None:
    first, second = NetVLAD(64, 32, vladv2=vladv2), NetVLAD(64, 32, vladv2=vladv2)
    alpha = first.init_from_descriptors(blobs)
    assert second.init_from_descriptors(blobs) == alpha == first.alpha and alpha > 0
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    expected = {"centroids": (64, 32), "conv.weight": (64, 32, 1, 1)}
    if vladv2:
        expected["conv.bias"] = (64,)
    assert {k: tuple(v.shape) for k, v in first.state_dict().items()} == expected

    x = F.normalize(blobs, dim=1).T.reshape(1, 32, -1, 1)
    with torch.no_grad():
        sharp = first.conv(x).flatten(2).softmax(dim=1).amax(dim=1).mean().item()
        blurred = NetVLAD(64, 32, vladv2=vladv2).conv(x).flatten(2).softmax(dim=1).amax(dim=1).mean().item()
    assert sharp > 0.8 and blurred < 0.1


def test_netvlad_init_alpha_follows_dvgl_and_nanne_rule(blobs: torch.Tensor) -> None:
    head = NetVLAD(64, 32, work_with_tokens=True)
    alpha = head.init_from_descriptors(blobs)
    unit = F.normalize(head.centroids.detach(), dim=1)
    top2 = (unit @ F.normalize(blobs, dim=1).T).topk(2, dim=0).values
    # alpha is chosen so that on average the best cluster is 100x as likely as the runner-up
    assert math.isclose(alpha * (top2[0] - top2[1]).mean().item(), -math.log(0.01), rel_tol=1e-5)
    torch.testing.assert_close(head.conv.weight.detach(), (alpha * unit).unsqueeze(2))
    assert head(torch.randn(2, 7, 32)).shape == (2, 64 * 32)


def test_sare_per_triplet_and_per_query() -> None:
    fixture = load("losses/sare.pt")
    inputs, dvgl = fixture["inputs"], fixture["dvgl"]
    query, positive, negatives = split_tuples(inputs["features"], inputs["negs_num_per_query"])
    # the split matches dvgl's own collate_fn triplet indexes
    rows = torch.arange(len(inputs["features"])).view(-1, 12)
    triplets = torch.stack([rows[:, :1].expand(-1, 10), rows[:, 1:2].expand(-1, 10), rows[:, 2:]], -1)
    assert torch.equal(triplets.reshape(-1, 3), inputs["triplets_local_indexes"])
    torch.testing.assert_close(sare_ind(query, positive, negatives).reshape(-1), dvgl["sare_ind_per_triplet"],
                               atol=LOSS_ATOL, rtol=0)
    torch.testing.assert_close(sare_joint(query, positive, negatives), dvgl["sare_joint_per_query"],
                               atol=LOSS_ATOL, rtol=0)


@pytest.mark.parametrize("loss", ["triplet", "sare_ind", "sare_joint"])
@pytest.mark.parametrize(("convention", "key"), [("dvgl", "batch_loss"), ("openibl", "loss")])
def test_batch_loss_matches_training_loops(convention: str, key: str, loss: str) -> None:
    fixture = load("losses/sare.pt")
    features, negs = fixture["inputs"]["features"], fixture["inputs"]["negs_num_per_query"]
    value = batch_loss(features, loss, convention, negs_num_per_query=negs)
    torch.testing.assert_close(value, fixture[convention][key][loss], atol=LOSS_ATOL, rtol=0)


def test_batch_loss_matches_nanne_triplet_loop() -> None:
    fixture = load("losses/sare.pt")
    value = batch_loss(fixture["inputs"]["features"], "triplet", "nanne")
    torch.testing.assert_close(value, fixture["nanne"]["triplet_batch_loss"], atol=LOSS_ATOL, rtol=0)
    with pytest.raises(ValueError):
        batch_loss(fixture["inputs"]["features"], "sare_ind", "nanne")


def test_cosface_logits_and_cross_entropy() -> None:
    fixture = load("losses/cosface.pt")
    inputs, outputs = fixture["inputs"], fixture["outputs"]
    head = MarginCosineProduct(**fixture["init_args"])
    assert list(head.state_dict()) == ["weight"]
    head.load_state_dict(fixture["state_dict"], strict=True)
    with torch.no_grad():
        logits = head(inputs["embeddings"], inputs["labels"])
        logits_raw = head(inputs["embeddings_unnormalised"], inputs["labels"])
    torch.testing.assert_close(logits, outputs["logits"], atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(logits_raw, outputs["logits_unnormalised"], atol=LOGIT_ATOL, rtol=0)
    cross_entropy = nn.CrossEntropyLoss()(logits, inputs["labels"])
    reference = torch.as_tensor(outputs["cross_entropy"])
    torch.testing.assert_close(cross_entropy, reference, atol=LOGIT_ATOL, rtol=0)


def test_multisimilarity_is_configured_as_mixvpr_and_salad() -> None:
    from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
    from pytorch_metric_learning.losses import MultiSimilarityLoss
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    loss, miner = multisimilarity()
    assert isinstance(loss, MultiSimilarityLoss) and isinstance(loss.distance, DotProductSimilarity)
    assert (loss.alpha, loss.beta, loss.base) == (1.0, 50, 0.0)
    assert isinstance(miner, MultiSimilarityMiner) and isinstance(miner.distance, CosineSimilarity)
    assert miner.epsilon == 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_runs_on_cuda(name: str) -> None:
    head, fixture = _loaded_head(name)
    inputs = [tuple(t.cuda() for t in x) if isinstance(x, (list, tuple)) else x.cuda()
              for x in fixture["inputs"]]
    with torch.no_grad():
        out = head.cuda()(*inputs)
    torch.testing.assert_close(out.cpu(), fixture["outputs"], atol=HEAD_ATOL, rtol=0)
