"""Window MLP denoiser: one MLP over a whole window of fixed length, for domains with one noise level per window.

Why: a transformer spends ``width^2`` per token and block, so its cost grows with the tokens of a window; short
windows of a few features each (ETH/UCY: 20 tokens of 22 features) leave most of that work to small matrix
products. This network flattens the window (``length * dim`` values) into one vector, so one forward pass costs
``(length * dim) * width`` twice (in and out) plus ``2 * width^2`` per block, in large matrix products: only the
two projections grow with the tokens, and only with their values, not with ``width^2``.

It suits a model trained and sampled with one noise level per window (``noise="shared"``, full-sequence plans):
the blocks are modulated (adaLN-Zero, as DiT) by the embedding of the window's level, the highest level of its
tokens. Every token's own level also enters the first layer, so tokens held clean (a history at level 0) are told
apart from noisy ones, and per-token levels change the output; but only the window's level steers the blocks, so
plans that give the unknown tokens different levels (autoregressive, pyramid) are outside what it was built for.

Train it to predict the clean window (parametrization ``x0``, as the domains' ``window-mlp`` recipes do): its
``width`` is a bottleneck narrower than the window, which the data (smooth, low-dimensional) pass but the noise
does not, so a target that carries the noise (``v``, ``eps``) comes out as a projection and leaves part of it in
the samples (on ETH/UCY a ``v`` model's sampled paths jittered from step to step).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from trajdiff.core.networks.embeddings import (
    ConditionEmbedding,
    LevelEmbedding,
    check_inputs,
    check_positive_int,
    distinct_levels,
)
from trajdiff.errors import ConfigError, ShapeError


class Block(nn.Module):
    """Pre-LN residual MLP block, shifted, scaled and gated by the level + condition embedding (zero-initialised
    gate and modulation, so a fresh block is the identity)."""

    def __init__(self, width: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 3 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h: [B, W], c: [B|1, E] (broadcast over the batch when every window has the same level)."""
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class WindowMLP(nn.Module):
    """MLP denoiser over a window: ``forward(x [B,T,D], k [B,T], cond [B,C] | None, cond_drop [B] | None)`` with
    ``T == length``. The output projection is zero-initialised, so a fresh network outputs 0."""

    kind = "window_mlp"

    def __init__(
        self,
        dim: int,
        length: int,
        cond_dim: int = 0,
        width: int = 256,
        depth: int = 3,
        emb_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("length", length)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        check_positive_int("emb_dim", emb_dim)
        if isinstance(cond_dim, bool) or not isinstance(cond_dim, int) or cond_dim < 0:
            raise ConfigError(f"cond_dim must be an integer >= 0 (0 = unconditional), got {cond_dim!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}.")
        self.dim, self.length, self.cond_dim = dim, length, cond_dim
        self.width, self.depth, self.emb_dim, self.dropout = width, depth, emb_dim, float(dropout)

        self.in_proj = nn.Linear(length * dim, width)
        self.token_levels = nn.Linear(length, width, bias=False)
        self.level_emb = LevelEmbedding(emb_dim)
        self.cond_emb = ConditionEmbedding(cond_dim, emb_dim)
        self.blocks = nn.ModuleList(Block(width, emb_dim, self.dropout) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * width))
        nn.init.zeros_(self.final_ada[1].weight)
        nn.init.zeros_(self.final_ada[1].bias)
        self.out_proj = nn.Linear(width, length * dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serializable dict that rebuilds this architecture with ``build_network``."""
        return {
            "kind": self.kind,
            "dim": self.dim,
            "length": self.length,
            "cond_dim": self.cond_dim,
            "width": self.width,
            "depth": self.depth,
            "emb_dim": self.emb_dim,
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
        if length != self.length:
            raise ShapeError(
                f"x has {length} tokens but this window MLP was built for windows of {self.length}; "
                f"pass windows of {self.length} tokens or train a network with length={length}."
            )
        k = distinct_levels(k, per_sample_condition=cond is not None)  # [B|1, T|1]
        levels = k.expand(k.shape[0], length).to(x.dtype)
        c = self.level_emb(k.amax(dim=1)) + self.cond_emb(cond, k.shape[0], cond_drop)  # [B|1, E]
        h = self.in_proj(x.reshape(batch, length * self.dim)) + self.token_levels(levels)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        out = self.out_proj(self.final_norm(h) * (1 + scale) + shift)
        return out.reshape(batch, length, self.dim)
