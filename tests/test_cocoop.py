"""CoCoOp's prompt learner by hand: the meta-net's bias shifts every context vector, so the candidates' features
differ per image; with a zero bias they are CoOp's. (The end-to-end run on `tiny` is the registry's smoke test.)"""

from __future__ import annotations

import torch

from methods.addressclip.coop import ConditionalPrompts, PromptContext
from methods.addressclip.model import build_clip
from methods.addressclip.text import Tokenizer


def _setup():
    clip = build_clip("ial-tiny", False, seed=0).eval()
    width = clip.token_embedding.weight.shape[1]
    prompts = ConditionalPrompts(width, 4, seed=0, image_width=64)
    tokens = prompts.prompt_tokens(Tokenizer(77), ["Alpha Street, Town", "Beta Street, Town", "Gamma Road, Town"])
    return clip, prompts, tokens


def test_the_meta_net_is_published_shape_and_its_bias_makes_features_per_image():
    clip, prompts, tokens = _setup()
    assert [tuple(p.shape) for p in prompts.meta_net.parameters()] == [(4, 64), (4,), (64, 4), (64,)]  # 64 / 16
    images = torch.randn(2, 64)
    with torch.no_grad():
        features = prompts.conditional_features(clip, tokens, images)
    assert features.shape == (2, 3, 64)
    assert not torch.allclose(features[0], features[1])


def test_with_a_zero_bias_every_image_gets_coops_features():
    clip, prompts, tokens = _setup()
    with torch.no_grad():
        prompts.meta_net[2].weight.zero_()
        prompts.meta_net[2].bias.zero_()
        features = prompts.conditional_features(clip, tokens, torch.randn(3, 64))
        plain = PromptContext.text_features(prompts, clip, tokens)
    for row in features:
        assert torch.allclose(row, plain, atol=1e-5)


def test_the_context_can_start_from_given_word_embeddings():
    init = torch.arange(4 * 64, dtype=torch.float32).view(4, 64)
    prompts = ConditionalPrompts(64, 4, seed=0, image_width=64, init=init)
    assert torch.equal(prompts.context.data, init)
