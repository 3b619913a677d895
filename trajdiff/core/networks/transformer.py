"""Temporal transformer denoiser with per-token noise levels and adaLN modulation.

Tokens are the linearly projected x plus sinusoidal positions (any length), the per-token
level embedding and the condition embedding. Each pre-LN block is additionally modulated
(shift/scale after LayerNorm, DiT-style) by the per-token level + condition embedding, so the
noise level of every token steers its own computation. ``causal=True`` lets token t attend only
to tokens <= t, which rolling / autoregressive generation needs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trajdiff.core.networks.embeddings import (
    ConditionEmbedding,
    LevelEmbedding,
    check_inputs,
    check_positive_int,
    distinct_levels,
    sinusoidal,
)
from trajdiff.errors import ConfigError


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale) + shift


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """Bool attention mask [T, T]; True where attention is allowed (key index <= query index)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class Block(nn.Module):
    """Pre-LN self-attention + MLP block with per-token adaLN shift/scale (zero-initialised)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * width, width),
        )
        self.resid_drop = nn.Dropout(dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 4 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, h: Tensor, c: Tensor, mask: Tensor | None) -> Tensor:
        """h: [B, T, W] tokens, c: [B|1, T|1, W] modulation signal (broadcast), mask: [T, T] bool or None."""
        shift1, scale1, shift2, scale2 = self.ada(c).chunk(4, dim=-1)
        batch, length, width = h.shape
        qkv = self.qkv(_modulate(self.norm1(h), shift1, scale1))
        q, k, v = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        attn = attn.transpose(1, 2).reshape(batch, length, width)
        h = h + self.resid_drop(self.attn_out(attn))
        return h + self.resid_drop(self.mlp(_modulate(self.norm2(h), shift2, scale2)))


class TemporalTransformer(nn.Module):
    """Transformer denoiser: ``forward(x [B,T,D], k [B,T], cond [B,C] | None, cond_drop [B] | None)``.

    No maximum length (positions are computed on the fly). The output projection is
    zero-initialised, so a fresh network outputs 0.
    """

    kind = "transformer"

    def __init__(
        self,
        dim: int,
        cond_dim: int = 0,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        causal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        check_positive_int("heads", heads)
        if isinstance(cond_dim, bool) or not isinstance(cond_dim, int) or cond_dim < 0:
            raise ConfigError(f"cond_dim must be an integer >= 0 (0 = unconditional), got {cond_dim!r}.")
        if width % heads:
            raise ConfigError(
                f"width ({width}) must be divisible by heads ({heads}); "
                f"e.g. width={heads * (width // heads + 1)}."
            )
        if not isinstance(causal, bool):
            raise ConfigError(f"causal must be true or false, got {causal!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}.")
        self.dim, self.cond_dim, self.width, self.depth = dim, cond_dim, width, depth
        self.heads, self.causal, self.dropout = heads, causal, float(dropout)

        self.in_proj = nn.Linear(dim, width)
        self.level_emb = LevelEmbedding(width)
        self.cond_emb = ConditionEmbedding(cond_dim, width)
        self.blocks = nn.ModuleList(Block(width, heads, self.dropout) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        nn.init.zeros_(self.final_ada[1].weight)
        nn.init.zeros_(self.final_ada[1].bias)
        self.out_proj = nn.Linear(width, dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serializable dict that rebuilds this architecture with ``build_network``."""
        return {
            "kind": self.kind,
            "dim": self.dim,
            "cond_dim": self.cond_dim,
            "width": self.width,
            "depth": self.depth,
            "heads": self.heads,
            "causal": self.causal,
            "dropout": self.dropout,
        }

    def forward(
        self,
        x: Tensor,
        k: Tensor,
        cond: Tensor | None = None,
        cond_drop: Tensor | None = None,
    ) -> Tensor:
        """Denoiser output [B, T, D] for noisy tokens x at per-token levels k."""
        check_inputs(x, k, cond, cond_drop, self.dim, self.cond_dim)
        batch, length, _ = x.shape
        h = self.in_proj(x)
        k = distinct_levels(k, per_sample_condition=cond is not None)
        c = self.level_emb(k) + self.cond_emb(cond, k.shape[0], cond_drop).unsqueeze(1)  # [B|1, T|1, W]
        pos = sinusoidal(torch.arange(length, device=x.device), self.width).to(h.dtype)
        h = h + pos + c
        mask = causal_mask(length, x.device) if self.causal else None
        for block in self.blocks:
            h = block(h, c, mask)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out_proj(_modulate(self.final_norm(h), shift, scale))
