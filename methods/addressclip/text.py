"""Address and caption texts: templates, CLIP's BPE tokenizer, and text encoding cut to the longest prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import text_global_pool

from benchmark.errors import BenchmarkError

TEMPLATES = {
    "raw": "{address}",
    "sentence": "A street view photo taken on {address}.",
}


def address_text(address: str, template: str) -> str:
    """The text an address is encoded as: the raw string or a sentence around it."""
    if template not in TEMPLATES:
        raise BenchmarkError(f"template {template!r}: choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[template].format(address=address)


def caption_text(caption: str, address: str) -> str:
    """T^C's input: the caption with the (raw) address appended, as in the paper."""
    return f"{caption.rstrip()} {address}"


class Tokenizer:
    """CLIP's BPE tokenizer (vocabulary shipped in open_clip) for a model's context length."""

    def __init__(self, context_length: int):
        self._tokenizer = SimpleTokenizer(context_length=context_length)
        self.context_length = context_length

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, context_length] token ids, start and end tokens included, truncated to fit."""
        return self._tokenizer(list(texts))

    def tokens(self, text: str) -> list[int]:
        """BPE ids of a text without start/end tokens (for CoOp prompts)."""
        return self._tokenizer.encode(text)


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-padding columns: with a causal mask the pooled end token does not change."""
    used = int((tokens != 0).sum(dim=1).max()) if len(tokens) else 1
    return tokens[:, :max(used, 1)]


def encode_embedded(model: CLIP, embedded: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP.encode_text from token embeddings [N, L, D] (L ≤ context), pooled at `tokens`' end token."""
    length = embedded.shape[1]
    x = embedded + model.positional_embedding[:length].to(embedded.dtype)
    mask = None if model.attn_mask is None else model.attn_mask[:length, :length]
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x if model.text_projection is None else x @ model.text_projection


def encode_tokens(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """Text features (unnormalised) of token ids, computed on the used prefix only when that is exact."""
    return encode_token_groups(model, [tokens])[0]


def encode_token_groups(model: CLIP, groups: list[torch.Tensor]) -> list[torch.Tensor]:
    """encode_tokens of several batches (e.g. addresses and captions) through one token-embedding lookup, each
    batch on its own used prefix. One lookup means one dense gradient of the 49,408-row table per step."""
    exact = model.attn_mask is not None and model.text_pool_type in ("argmax", "eos")
    groups = [trim(g) if exact else g for g in groups]
    width = max(g.shape[1] for g in groups)
    padded = torch.cat([torch.nn.functional.pad(g, (0, width - g.shape[1])) for g in groups])
    embedded = model.token_embedding(padded).split([len(g) for g in groups])
    return [encode_embedded(model, e[:, :g.shape[1]], g) for e, g in zip(embedded, groups)]
