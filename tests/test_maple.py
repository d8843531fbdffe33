"""MaPLe's prompt learner by hand: coupling shapes, deep prompts reaching both towers' outputs, the layer-0 context
in place of the first prompt words, and a clear error for a ResNet image tower. (The end-to-end run on `tiny` is
the registry's smoke test.)"""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.method import make_options
from benchmark.registry import METHODS
from methods.addressclip.maple import MultiModalPrompts
from methods.addressclip.model import build_clip
from methods.addressclip.text import Tokenizer, encode_tokens

ADDRESSES = ["Alpha Street, Town", "Beta Street, Town", "Gamma Road, Town"]


def _setup(depth: int = 2):
    clip = build_clip("ial-tiny", False, seed=0).eval()  # text and image towers: 2 layers, width 64
    prompts = MultiModalPrompts(64, clip.visual.transformer.width, n_ctx=2, depth=depth, seed=0)
    tokens = prompts.prompt_tokens(Tokenizer(77), "a photo of a", ADDRESSES)
    return clip, prompts, tokens


def test_couplings_map_each_layers_text_prompt_into_the_image_tower():
    clip, prompts, _ = _setup()
    vision = prompts.vision_prompts()
    assert [tuple(v.shape) for v in vision] == [(2, 64), (2, 64)]
    assert torch.allclose(vision[1], prompts.couplings[1](prompts.deep_text[0]))
    assert [tuple(c.weight.shape) for c in prompts.couplings] == [(64, 64), (64, 64)]


def test_deep_prompts_reach_both_towers_outputs():
    clip, prompts, tokens = _setup()
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        text, image = prompts.encode_text(clip, tokens), prompts.encode_image(clip, images)
        assert text.shape == (3, 64) and image.shape == (2, 64)
        prompts.deep_text[0].add_(1.0)  # the layer-1 text prompt, and through its coupling the image prompt
        assert not torch.allclose(prompts.encode_text(clip, tokens), text)
        assert not torch.allclose(prompts.encode_image(clip, images), image)


def test_with_the_context_set_to_the_first_words_and_depth_one_the_text_side_is_plain_clip():
    clip, _, tokens = _setup()
    words = clip.token_embedding(tokens[:, 1:3])[0].detach()  # "a photo"
    prompts = MultiModalPrompts(64, 64, n_ctx=2, depth=1, seed=0, init=words)
    with torch.no_grad():
        assert torch.allclose(prompts.encode_text(clip, tokens), encode_tokens(clip, tokens), atol=1e-5)


def test_a_resnet_image_tower_cannot_take_prompts():
    clip = build_clip("ial-r18-tiny", False, seed=0)
    prompts = MultiModalPrompts(64, 64, n_ctx=2, depth=1, seed=0)
    with pytest.raises(BenchmarkError, match="ViT image tower"):
        prompts.encode_image(clip, torch.randn(1, 3, 48, 64))


@pytest.mark.parametrize("preset", ["smoke", "default"])
def test_each_cpu_presets_prompt_depth_fits_its_model(preset):
    """A preset's prompt depth must not exceed its model's text layers (the CPU default once asked 9 of 3)."""
    cls = METHODS.get("maple")
    options = make_options(cls, preset, {})
    clip = build_clip(options.model, False, seed=0)
    assert 1 <= options.depth <= min(len(clip.transformer.resblocks), len(clip.visual.transformer.resblocks))


def test_layer_zero_image_prompts_pass_through_ln_pre_with_the_patches():
    """As the official VisionTransformer_MaPLe: [class, patches] + positions, then the coupled prompts appended,
    then ln_pre over the whole sequence (open_clip's `_embeds` would normalise the patches alone)."""
    clip, prompts, _ = _setup(depth=1)
    visual = clip.visual
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        visual.ln_pre.bias.fill_(0.5)  # a non-trivial ln_pre, so skipping it on the prompts would show
        patches = visual.conv1(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([visual.class_embedding.expand(2, 1, -1), patches], dim=1) + visual.positional_embedding
        x = visual.ln_pre(torch.cat([tokens, prompts.vision_prompts()[0].expand(2, -1, -1)], dim=1))
        for block in visual.transformer.resblocks:
            x = block(x)
        expected = visual.ln_post(x[:, 0]) @ visual.proj  # the class token, as MaPLe pools
        assert torch.allclose(prompts.encode_image(clip, images), expected, atol=1e-5)
