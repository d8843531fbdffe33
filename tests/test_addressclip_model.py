"""AddressCLIP's model plumbing: text encoding, templates, weight files in OpenAI / open_clip / ialbench form."""

from __future__ import annotations

import pytest
import torch
from open_clip.model import CLIP, build_model_from_openai_state_dict

from benchmark.errors import BenchmarkError
from methods.addressclip.model import build_clip, image_size, model_config
from methods.addressclip.text import Tokenizer, address_text, caption_text, encode_tokens, trim
from methods.addressclip.weights import checkpoint, load_clip_state, read_weights, split_checkpoint
from methods.training.loop import cosine_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def square_openai_like() -> CLIP:
    """A small square-input CLIP whose state dict open_clip's OpenAI builder can parse (1 head of 64)."""
    torch.manual_seed(0)
    return CLIP(32, {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
                {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}, quick_gelu=True)


def test_trimmed_text_encoding_equals_open_clip():
    model = build_clip("ial-tiny", False, seed=0).eval()
    tokens = Tokenizer(77)(["Bulevardi, Keskusta (Fredrikinkatu, Keskusta)", "a"])
    assert trim(tokens).shape[1] < 77
    with torch.no_grad():
        torch.testing.assert_close(encode_tokens(model, tokens), model.encode_text(tokens), rtol=1e-5, atol=1e-5)


def test_configs_build_offline_and_report_their_size():
    assert image_size(build_clip("ial-tiny", False, 0)) == (48, 64)
    assert model_config("ViT-B-16")["vision_cfg"]["image_size"] == 224
    with pytest.raises(BenchmarkError, match="unknown model"):
        model_config("no-such-model")
    a, b = build_clip("ial-tiny", False, 1), build_clip("ial-tiny", False, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_templates():
    assert address_text("Bulevardi, Keskusta", "raw") == "Bulevardi, Keskusta"
    assert address_text("Bulevardi, Keskusta", "sentence") == "A street view photo taken on Bulevardi, Keskusta."
    assert caption_text("A street view of a tram. ", "Bulevardi, Keskusta") == "A street view of a tram. Bulevardi, Keskusta"
    with pytest.raises(BenchmarkError, match="template"):
        address_text("x", "poem")


def test_open_clip_checkpoint_round_trip(tmp_path):
    source = build_clip("ial-tiny", False, seed=3)
    # open_clip's training script saves {"epoch", "name", "state_dict" (DDP 'module.' keys), "optimizer"}.
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "run", "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "optimizer": {}}, path)
    state, context, trained = split_checkpoint(read_weights(path))
    assert context is None and not trained
    target = build_clip("ial-tiny", False, seed=4)
    load_clip_state(target, state, str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key
    torch.save(source.state_dict(), tmp_path / "plain.pt")  # a bare state dict works too
    load_clip_state(build_clip("ial-tiny", False, 5), split_checkpoint(read_weights(tmp_path / "plain.pt"))[0], "p")


def test_openai_layout_with_fp16_and_extras(tmp_path):
    source = square_openai_like()
    openai = {k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    openai.update(input_resolution=torch.tensor(32), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    # The layout is genuine: open_clip's own OpenAI loader builds a model from it.
    reference = build_model_from_openai_state_dict(dict(openai), quick_gelu=True, cast_dtype=None).float()
    path = tmp_path / "ViT-tiny-openai.pt"
    torch.save(openai, path)
    torch.manual_seed(9)
    target = CLIP(32, {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
                  {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}, quick_gelu=True)
    load_clip_state(target, split_checkpoint(read_weights(path))[0], str(path))
    images, tokens = torch.randn(2, 3, 32, 32), Tokenizer(77)(["Bulevardi, Keskusta", "Mannerheimintie"])
    with torch.no_grad():
        torch.testing.assert_close(target.encode_image(images), reference.encode_image(images))
        torch.testing.assert_close(encode_tokens(target, tokens), reference.encode_text(tokens))


def test_torchscript_archive_is_read_as_a_state_dict(tmp_path):
    module = torch.jit.trace(torch.nn.Linear(2, 3), torch.zeros(1, 2))
    module.save(str(tmp_path / "jit.pt"))
    assert set(read_weights(tmp_path / "jit.pt")) == {"weight", "bias"}


def test_key_mismatch_is_one_error_listing_keys(tmp_path):
    state = build_clip("ial-tiny", False, 0).state_dict()
    del state["ln_final.weight"]
    state["visual.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(BenchmarkError) as error:
        load_clip_state(build_clip("ial-tiny", False, 0), state, "bad.pt")
    text = str(error.value)
    assert "missing keys: ln_final.weight" in text and "unexpected keys: visual.extra_head.weight" in text
    with pytest.raises(BenchmarkError, match="shape mismatch"):
        load_clip_state(build_clip("ial-small", False, 0), build_clip("ial-tiny", False, 0).state_dict(), "x.pt")


def test_ialbench_checkpoint_carries_context_and_flag():
    state = build_clip("ial-tiny", False, 0).state_dict()
    got, context, trained = split_checkpoint(checkpoint(state, torch.ones(4, 64), {"method": "coop"}))
    assert trained and torch.equal(context, torch.ones(4, 64)) and set(got) == set(state)


def test_cosine_schedule_runs_from_lr_to_lr_min():
    assert cosine_factor(0, 100, 2.4e-5, 2.4e-8, 0) == pytest.approx(1.0)
    assert cosine_factor(99, 100, 2.4e-5, 2.4e-8, 0) == pytest.approx(1e-3)
    assert cosine_factor(4, 100, 1e-3, 1e-6, 10) == pytest.approx(0.5)
