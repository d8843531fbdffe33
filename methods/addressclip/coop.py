"""CoOp (Zhou et al. 2022): M learnable context vectors before each address, both CLIP towers frozen."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import nn

from benchmark.errors import BenchmarkError
from methods.addressclip.text import Tokenizer, encode_embedded, trim
from methods.training.checkpoints import check_state_dict
from methods.training.loop import TrainStep


def check_context(ctx: torch.Tensor, n_ctx: int, width: int, source: str) -> None:
    """An official context must be unified ([n_ctx, width]) and as long and wide as this learner's."""
    if ctx.dim() == 3:
        raise BenchmarkError(f"{source}: class-specific contexts (CoOp's CSC, one per ImageNet class) cannot "
                             "prompt other classes; use a unified-context checkpoint")
    if ctx.dim() != 2 or ctx.shape[1] != width:
        raise BenchmarkError(f"{source}: its context has shape {tuple(ctx.shape)}, this model's text tower is "
                             f"{width} wide (official prompts go with the CLIP they were trained on, e.g. "
                             "ViT-B/16: 512; pass that CLIP with weights=)")
    if ctx.shape[0] != n_ctx:
        raise BenchmarkError(f"{source}: it holds {ctx.shape[0]} context vectors; set n_ctx={ctx.shape[0]}")


class PromptContext(nn.Module):
    """Prompts '[SOS] v_1 … v_M <address>. [EOS]' with v shared by every address (CoOp's unified context)."""

    def __init__(self, width: int, n_ctx: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.n_ctx = n_ctx
        self.context = nn.Parameter(torch.randn(n_ctx, width, generator=generator) * 0.02)

    def load_official(self, saved: dict[str, torch.Tensor], source: str) -> None:
        """The context of an official CoOp checkpoint (`ctx`), strictly."""
        check_context(saved["ctx"], self.n_ctx, self.context.shape[1], source)
        check_state_dict(self, {"context": saved["ctx"], **{k: v for k, v in saved.items() if k != "ctx"}}, source)

    def prompt_tokens(self, tokenizer: Tokenizer, addresses: Sequence[str]) -> torch.Tensor:
        """Token ids with M placeholder tokens where the context vectors go."""
        return tokenizer([" ".join(["X"] * self.n_ctx) + f" {a}." for a in addresses])

    def text_features(self, clip: CLIP, tokens: torch.Tensor) -> torch.Tensor:
        """Features of the prompts: placeholder embeddings replaced by the learned context."""
        tokens = trim(tokens)
        embedded = clip.token_embedding(tokens)
        context = self.context.to(embedded.dtype).unsqueeze(0).expand(len(tokens), -1, -1)
        embedded = torch.cat([embedded[:, :1], context, embedded[:, 1 + self.n_ctx:]], dim=1)
        return encode_embedded(clip, embedded, tokens)


class CoOpStep(TrainStep):
    """Cross-entropy over all candidate addresses, as CoOp trains; only the context vectors learn."""

    def __init__(self, clip: CLIP, prompts: PromptContext, tokens: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.clip = clip
        self.prompts = prompts
        self.register_buffer("tokens", tokens, persistent=False)
        self.labels = labels
        for p in clip.parameters():
            p.requires_grad_(False)

    def forward(self, image_features: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss for a batch of frozen image features given by their rows in the train split."""
        text = F.normalize(self.prompts.text_features(self.clip, self.tokens), dim=-1)
        logits = self.clip.logit_scale.exp() * F.normalize(image_features, dim=-1) @ text.T
        loss = F.cross_entropy(logits, self.labels[index.cpu()].to(logits.device))
        return {"prompt": loss, "total": loss}


class ConditionalPrompts(PromptContext):
    """CoCoOp (Zhou et al. 2022b): CoOp's context plus a meta-net (Linear-ReLU-Linear, hidden = image width / 16)
    on the L2-normalised image feature, whose output shifts every context vector alike, so each image gets its
    own candidate features."""

    def __init__(self, width: int, n_ctx: int, seed: int, image_width: int, init: torch.Tensor | None = None):
        super().__init__(width, n_ctx, seed)
        if init is not None:
            self.context.data.copy_(init)
        hidden = max(1, image_width // 16)
        generator = torch.Generator().manual_seed(seed + 1)
        self.meta_net = nn.Sequential(nn.Linear(image_width, hidden), nn.ReLU(), nn.Linear(hidden, width))
        for layer in (self.meta_net[0], self.meta_net[2]):  # nn.Linear's default init, from our own generator
            bound = 1 / layer.in_features ** 0.5
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def load_official(self, saved: dict[str, torch.Tensor], source: str) -> None:
        """Context and meta-net of an official CoCoOp checkpoint (`ctx`, `meta_net.linear1/2`), strictly."""
        check_context(saved["ctx"], self.n_ctx, self.context.shape[1], source)
        names = {"ctx": "context", "meta_net.linear1.weight": "meta_net.0.weight",
                 "meta_net.linear1.bias": "meta_net.0.bias", "meta_net.linear2.weight": "meta_net.2.weight",
                 "meta_net.linear2.bias": "meta_net.2.bias"}
        check_state_dict(self, {names.get(k, k): v for k, v in saved.items()}, source)

    def conditional_features(self, clip: CLIP, tokens: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """Text features [B, C, D] of the C prompts for each of B images (unnormalised)."""
        tokens = trim(tokens)
        embedded = clip.token_embedding(tokens)  # [C, L, W]
        bias = self.meta_net(F.normalize(image_features.float(), dim=-1)).to(embedded.dtype)  # [B, W]
        context = self.context.to(embedded.dtype)[None] + bias[:, None]  # [B, M, W]
        b, c = len(bias), len(tokens)
        full = torch.cat([embedded[None, :, :1].expand(b, -1, -1, -1),
                          context[:, None].expand(-1, c, -1, -1),
                          embedded[None, :, 1 + self.n_ctx:].expand(b, -1, -1, -1)], dim=2)
        return encode_embedded(clip, full.flatten(0, 1), tokens.repeat(b, 1)).view(b, c, -1)


class CoCoOpStep(CoOpStep):
    """Cross-entropy over all candidates with image-conditioned prompts: B x C text passes per step."""

    def forward(self, image_features: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss for a batch of frozen image features given by their rows in the train split."""
        text = F.normalize(self.prompts.conditional_features(self.clip, self.tokens, image_features), dim=-1)
        image = F.normalize(image_features, dim=-1)
        logits = self.clip.logit_scale.exp() * torch.einsum("bd,bcd->bc", image, text)
        loss = F.cross_entropy(logits, self.labels[index.cpu()].to(logits.device))
        return {"prompt": loss, "total": loss}
