"""Shared pieces of the denoisers: level / position / condition embeddings and input checks.

Noise levels are per token, so the level embedding is per token too ([B, T, E]); the condition
is per sample ([B, E]) and carries a learned null vector so classifier-free guidance can ask
the same network for an unconditional prediction.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from trajdiff.errors import ConfigError, ShapeError

LEVEL_SCALE = 1000.0
"""Levels in [0, 1] are multiplied by this before the sinusoids, like DDPM's integer timesteps,
so that nearby levels get clearly different embeddings."""


def sinusoidal(values: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sin/cos features of ``values`` ([...]) -> [..., dim].

    Used for scaled noise levels and for token positions; works for any value, so there is no
    maximum sequence length.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / max(half, 1)
    )
    args = values.to(torch.float32).unsqueeze(-1) * freqs
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


def distinct_levels(k: Tensor, *, per_sample_condition: bool, along_time: bool = True) -> Tensor:
    """``k [B, T]`` reduced to ``[1, T]`` when every sequence has the same levels (a sampler's step) and
    to ``[B|1, 1]`` when every token of a sequence has the same level (one noise level per window;
    only with ``along_time``, for networks whose embeddings broadcast over time).

    Why: the level embedding and every block's modulation are then computed once and broadcast,
    instead of once per token; the result is the same. A per-sample condition keeps the batch axis.
    """
    if k.shape[0] > 1 and not per_sample_condition and bool((k == k[:1]).all()):
        k = k[:1]
    if along_time and k.shape[1] > 1 and bool((k == k[:, :1]).all()):
        k = k[:, :1]
    return k


class LevelEmbedding(nn.Module):
    """Per-token noise level [B, T] in [0, 1] -> [B, T, emb_dim] (sinusoids, then a Mish MLP)."""

    def __init__(self, emb_dim: int, hidden_mult: int = 4) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.mlp = nn.Sequential(
            nn.Linear(emb_dim, emb_dim * hidden_mult),
            nn.Mish(),
            nn.Linear(emb_dim * hidden_mult, emb_dim),
        )

    def forward(self, k: Tensor) -> Tensor:
        feats = sinusoidal(k * LEVEL_SCALE, self.emb_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(feats)


class ConditionEmbedding(nn.Module):
    """Per-sample condition [B, C] -> [B, emb_dim], with a learned null embedding.

    ``cond=None`` gives the null embedding for the whole batch; ``cond_drop[b]=True`` swaps
    sample b's embedding for it (classifier-free guidance dropout). With ``cond_dim=0`` only
    the null embedding exists.
    """

    def __init__(self, cond_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.proj = nn.Linear(cond_dim, emb_dim) if cond_dim > 0 else None
        self.null = nn.Parameter(torch.randn(emb_dim) * 0.02)

    def forward(self, cond: Tensor | None, batch: int, cond_drop: Tensor | None = None) -> Tensor:
        null = self.null.unsqueeze(0).expand(batch, -1)
        if cond is None or self.proj is None:
            return null
        emb = self.proj(cond.to(self.proj.weight.dtype))
        if cond_drop is not None:
            emb = torch.where(cond_drop.to(emb.device).unsqueeze(-1), null, emb)
        return emb


def check_inputs(
    x: Tensor,
    k: Tensor,
    cond: Tensor | None,
    cond_drop: Tensor | None,
    dim: int,
    cond_dim: int,
) -> None:
    """Raise ShapeError, saying expected vs got and how to fix it, for malformed network inputs."""
    if not isinstance(x, Tensor) or x.dim() != 3:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(
            f"x must have shape [batch, time, {dim}], got {got}; "
            "add a batch axis with x.unsqueeze(0) or reshape to [B, T, D]."
        )
    batch, length, width = x.shape
    if width != dim:
        raise ShapeError(
            f"x has {width} features per token but the network was built with dim={dim}; "
            f"pass x of shape [{batch}, {length}, {dim}] or build the network with dim={width}."
        )
    if not x.is_floating_point():
        raise ShapeError(f"x must be a floating-point tensor, got dtype {x.dtype}; convert with x.float().")
    if not isinstance(k, Tensor) or tuple(k.shape) != (batch, length):
        got = tuple(k.shape) if isinstance(k, Tensor) else type(k).__name__
        raise ShapeError(
            f"k (per-token noise level) must have shape [{batch}, {length}] to match x, got {got}; "
            "give one level per token, e.g. k.expand(B, T) for a shared level."
        )
    if not k.is_floating_point():
        raise ShapeError(
            f"k must be a floating-point tensor of levels in [0, 1], got dtype {k.dtype}; "
            "convert with k.float() (and divide integer timesteps by their maximum)."
        )
    if cond is not None:
        if cond_dim == 0:
            raise ShapeError(
                "a cond was given but the network was built with cond_dim=0 (unconditional); "
                "pass cond=None or build the network with cond_dim=<condition width>."
            )
        if not isinstance(cond, Tensor) or tuple(cond.shape) != (batch, cond_dim):
            got = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
            raise ShapeError(
                f"cond must have shape [{batch}, {cond_dim}] (batch, cond_dim), got {got}; "
                "pass one condition vector per sample."
            )
        if not cond.is_floating_point():
            raise ShapeError(
                f"cond must be floating-point, got dtype {cond.dtype}; convert with cond.float()."
            )
    if cond_drop is not None:
        if not isinstance(cond_drop, Tensor) or tuple(cond_drop.shape) != (batch,):
            got = tuple(cond_drop.shape) if isinstance(cond_drop, Tensor) else type(cond_drop).__name__
            raise ShapeError(f"cond_drop must have shape [{batch}] (one flag per sample), got {got}.")
        if cond_drop.dtype != torch.bool:
            raise ShapeError(
                f"cond_drop must be a bool tensor, got dtype {cond_drop.dtype}; "
                "build it with e.g. torch.rand(B) < p_uncond."
            )


def check_positive_int(name: str, value: object) -> int:
    """Raise ConfigError unless ``value`` is a positive int (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return value
