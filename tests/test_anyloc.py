"""AnyLoc's parts: official DINOv2 layouts load (ViT-G's SwiGLU keys included), facets by hand, the trunk's dense
map, bad options. (The end-to-end run on `tiny` is the registry's smoke test.)"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from benchmark.errors import BenchmarkError
from methods.anyloc import TrunkFeatures, ViTFacet, load_dinov2
from methods.vpr.backbones import resnet_sequential

SMALL = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def _vit(name: str = "vit_small_patch14_dinov2") -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=0, img_size=518, dynamic_img_size=True, **SMALL)


@pytest.mark.parametrize("name", ["vit_small_patch14_dinov2", "vit_giant_patch14_dinov2"])
def test_an_official_hub_layout_loads_strictly(tmp_path, name):
    hub = {k: v.clone() for k, v in _vit(name).state_dict().items()}
    if "giant" in name:  # the hub names ViT-G's fused SwiGLU layers w12 / w3
        hub = {k.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3."): v for k, v in hub.items()}
        assert any(".mlp.w12." in k for k in hub)
    hub["mask_token"] = torch.zeros(1, 32)
    torch.save(hub, tmp_path / "hub.pth")
    fresh = timm.create_model(name, pretrained=False, num_classes=0, img_size=518, dynamic_img_size=True, **SMALL)
    load_dinov2(fresh, tmp_path / "hub.pth")
    assert torch.equal(fresh.blocks[1].attn.qkv.weight, hub["blocks.1.attn.qkv.weight"])
    torch.save({"blocks.0.norm1.weight": torch.ones(32)}, tmp_path / "bad.pth")
    with pytest.raises(BenchmarkError, match="missing"):
        load_dinov2(fresh, tmp_path / "bad.pth")


def test_facets_by_hand():
    vit = _vit().eval()
    images = torch.randn(2, 3, 28, 42)  # 2 x 3 patches of 14 px
    with torch.no_grad():
        value = ViTFacet(vit, 1, "value")(images)
        token = ViTFacet(vit, 0, "token")(images)
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
        expected = vit.blocks[0](x)[:, 1:]
        qkv = vit.blocks[1].attn.qkv(vit.blocks[1].norm1(vit.blocks[0](x)))[:, 1:]
    assert value.shape == token.shape == (2, 6, 32)
    assert torch.allclose(token, F.normalize(expected, dim=-1), atol=1e-5)
    assert torch.allclose(value, F.normalize(qkv[..., 64:], dim=-1), atol=1e-5)
    with pytest.raises(BenchmarkError, match="facet"):
        ViTFacet(vit, 0, "attention")
    with pytest.raises(BenchmarkError, match="layer=2"):
        ViTFacet(vit, 2, "value")


def test_the_trunk_map_as_dense_descriptors():
    trunk, channels = resnet_sequential("resnet18", "layer3")
    with torch.no_grad():
        out = TrunkFeatures(trunk.eval())(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 4 * 6, channels) and torch.allclose(out.norm(dim=-1), torch.ones(2, 24))
