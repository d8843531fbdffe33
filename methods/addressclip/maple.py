"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompt learning on frozen CLIP towers. The first `depth` layers
of the text tower get n_ctx learnable prompt tokens each (layer 0's sit after [SOS], initialised from the first
words of `ctx_init`; deeper ones replace those positions' outputs), and the same layers of the image tower get
n_ctx prompt tokens appended after the patches, each a linear coupling (text width -> image width) of the text
prompt of its layer. Needs a ViT image tower (a ResNet tower has no tokens to prompt)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import VisionTransformer, text_global_pool
from torch import Tensor, nn

from benchmark.errors import BenchmarkError
from methods.addressclip.text import Tokenizer, trim
from methods.training.checkpoints import check_state_dict
from methods.training.loop import TrainStep


def _run_blocks(transformer: nn.Module, x: Tensor, replace: list, mask: Tensor | None = None) -> Tensor:
    """Run an open_clip Transformer's blocks on batch-first x [B, L, W]; before block i (1 ≤ i ≤ len(replace)),
    `replace[i - 1]` rewrites the prompt positions of the batch-first activations."""
    batch_first = getattr(transformer, "batch_first", True)
    for i, block in enumerate(transformer.resblocks):
        if 1 <= i <= len(replace):
            x = replace[i - 1](x)
        x = block(x if batch_first else x.transpose(0, 1), attn_mask=mask)
        x = x if batch_first else x.transpose(0, 1)
    return x


def _patch_tokens(visual: VisionTransformer, images: Tensor) -> Tensor:
    """open_clip's `_embeds` without its final ln_pre: [class, patches] + positional embedding, [B, 1 + N, W]."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(len(x), 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.patch_dropout(x)


class MultiModalPrompts(nn.Module):
    """Text prompts for `depth` layers and their couplings into the image tower (MaPLe's prompt learner)."""

    def __init__(self, text_width: int, image_width: int, n_ctx: int, depth: int, seed: int,
                 init: Tensor | None = None):
        super().__init__()
        if n_ctx < 1 or depth < 1:
            raise BenchmarkError(f"maple: n_ctx ({n_ctx}) and depth ({depth}) must be at least 1")
        generator = torch.Generator().manual_seed(seed)
        self.n_ctx, self.depth = n_ctx, depth
        self.context = nn.Parameter(init.clone() if init is not None
                                    else torch.randn(n_ctx, text_width, generator=generator) * 0.02)
        self.deep_text = nn.ParameterList(nn.Parameter(torch.randn(n_ctx, text_width, generator=generator) * 0.02)
                                          for _ in range(depth - 1))
        self.couplings = nn.ModuleList(nn.Linear(text_width, image_width) for _ in range(depth))
        bound = 1 / text_width ** 0.5
        with torch.no_grad():  # nn.Linear's default init, from our own generator
            for layer in self.couplings:
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def load_official(self, saved: dict[str, Tensor], source: str) -> None:
        """An official MaPLe checkpoint's prompt learner, strictly: `ctx` and `proj` (layer 0),
        `compound_prompts_text.i` and `compound_prompt_projections.i` (layer i + 1)."""
        from methods.addressclip.coop import check_context

        check_context(saved["ctx"], self.n_ctx, self.context.shape[1], source)
        depth = 1 + len({k.split(".")[1] for k in saved if k.startswith("compound_prompts_text.")})
        if depth != self.depth:
            raise BenchmarkError(f"{source}: it prompts {depth} layers; set depth={depth}")

        def ours(key: str) -> str:
            head, _, rest = key.partition(".")
            if head == "ctx":
                return "context"
            if head == "proj":
                return f"couplings.0.{rest}"
            index, _, tail = rest.partition(".")
            if head == "compound_prompts_text":
                return f"deep_text.{index}"
            if head == "compound_prompt_projections":
                return f"couplings.{int(index) + 1}.{tail}"
            return key

        check_state_dict(self, {ours(k): v for k, v in saved.items()}, source)

    def prompt_tokens(self, tokenizer: Tokenizer, prefix: str, addresses: Sequence[str]) -> Tensor:
        """'[SOS] <prefix> <address>. [EOS]' ids; the first n_ctx tokens after [SOS] are the learned context."""
        return tokenizer([f"{prefix} {a}." for a in addresses])

    def vision_prompts(self) -> list[Tensor]:
        """The image tower's prompt tokens per prompted layer: couplings of the text prompts, [n_ctx, width]."""
        return [coupling(text) for coupling, text in zip(self.couplings, [self.context, *self.deep_text])]

    def encode_text(self, clip: CLIP, tokens: Tensor) -> Tensor:
        """Text features [C, D] with the deep text prompts (unnormalised)."""
        tokens = trim(tokens)
        n, length = self.n_ctx, tokens.shape[1]
        x = clip.token_embedding(tokens)
        x = torch.cat([x[:, :1], self.context.to(x.dtype).expand(len(x), -1, -1), x[:, 1 + n:]], dim=1)
        x = x + clip.positional_embedding[:length].to(x.dtype)
        mask = None if clip.attn_mask is None else clip.attn_mask[:length, :length]
        replace = [lambda h, p=p: torch.cat([h[:, :1], p.to(h.dtype).expand(len(h), -1, -1), h[:, 1 + n:]], dim=1)
                   for p in self.deep_text]
        x = clip.ln_final(_run_blocks(clip.transformer, x, replace, mask))
        x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        if isinstance(clip.text_projection, nn.Linear):
            return clip.text_projection(x)
        return x if clip.text_projection is None else x @ clip.text_projection

    def encode_image(self, clip: CLIP, images: Tensor) -> Tensor:
        """Image features [B, D] with the coupled vision prompts appended after the patches (unnormalised)."""
        visual = clip.visual
        if not isinstance(visual, VisionTransformer):
            raise BenchmarkError("maple: prompts enter a ViT image tower; this model's is a "
                                 f"{type(visual).__name__} (use model=ial-small, or ViT-B-16 with --weights)")
        prompts = self.vision_prompts()
        x = _patch_tokens(visual, images)
        # MaPLe appends the layer-0 prompts (no positional embedding) before ln_pre, so they are normalised too
        x = visual.ln_pre(torch.cat([x, prompts[0].to(x.dtype).expand(len(x), -1, -1)], dim=1))
        n = self.n_ctx
        replace = [lambda h, p=p: torch.cat([h[:, :-n], p.to(h.dtype).expand(len(h), -1, -1)], dim=1)
                   for p in prompts[1:]]
        x = _run_blocks(visual.transformer, x, replace)[:, :-n]  # prompts do not enter the pooling
        pooled, _ = visual._pool(x)
        return pooled @ visual.proj if visual.proj is not None else pooled


class MaPLeStep(TrainStep):
    """Cross-entropy over all candidates of prompted image and text features; only the prompts learn."""

    def __init__(self, clip: CLIP, prompts: MultiModalPrompts, tokens: Tensor, labels: Tensor,
                 normalize: Callable[[Tensor], Tensor]):
        super().__init__()
        self.clip, self.prompts, self.labels, self.normalize = clip, prompts, labels, normalize
        self.register_buffer("tokens", tokens, persistent=False)
        for p in clip.parameters():
            p.requires_grad_(False)

    def forward(self, images: Tensor, index: Tensor) -> dict[str, Tensor]:
        """Loss of a batch of uint8 training images given by their rows."""
        text = F.normalize(self.prompts.encode_text(self.clip, self.tokens), dim=-1)
        image = F.normalize(self.prompts.encode_image(self.clip, self.normalize(images)), dim=-1)
        logits = self.clip.logit_scale.exp() * image @ text.T
        loss = F.cross_entropy(logits, self.labels[index.cpu()].to(logits.device))
        return {"prompt": loss, "total": loss}
