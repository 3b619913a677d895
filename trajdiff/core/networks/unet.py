"""Diffuser-style temporal 1-D U-Net denoiser with per-token noise levels.

Convolutions over time with residual blocks, halving the length at each level and mirroring
back up with skip connections. The level embedding is per token ([B, E, T]), so it is
average-pooled to each resolution and added per position instead of once per sample.
"""

from __future__ import annotations

import math
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
)
from trajdiff.errors import ConfigError


def _groups(channels: int) -> int:
    """GroupNorm group count: 8 like Diffuser, or the largest divisor of ``channels`` below it."""
    return math.gcd(8, channels)


class ConvBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length-preserving."""

    def __init__(self, cin: int, cout: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(_groups(cout), cout),
            nn.Mish(),
        )


class ResidualBlock(nn.Module):
    """Two ConvBlocks with the per-position embedding added in between, plus a 1x1 residual."""

    def __init__(self, cin: int, cout: int, emb_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.block1 = ConvBlock(cin, cout, kernel_size)
        self.emb_proj = nn.Sequential(nn.Mish(), nn.Conv1d(emb_dim, cout, 1))
        self.block2 = ConvBlock(cout, cout, kernel_size)
        self.residual = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x: [B, cin, T], emb: [B, E, T] -> [B, cout, T]."""
        h = self.block1(x) + self.emb_proj(emb)
        return self.block2(h) + self.residual(x)


class TemporalUNet(nn.Module):
    """1-D U-Net denoiser: ``forward(x [B,T,D], k [B,T], cond [B,C] | None, cond_drop [B] | None)``.

    Works for any length T: the input is replicate-padded to a multiple of ``2 ** (len(mults) - 1)``
    and the output cropped back. The final conv is zero-initialised, so a fresh network outputs 0.
    """

    kind = "unet"

    def __init__(
        self,
        dim: int,
        cond_dim: int = 0,
        width: int = 64,
        mults: tuple[int, ...] | list[int] = (1, 2, 4),
        kernel_size: int = 5,
        emb_dim: int = 128,
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("width", width)
        check_positive_int("emb_dim", emb_dim)
        check_positive_int("kernel_size", kernel_size)
        if isinstance(cond_dim, bool) or not isinstance(cond_dim, int) or cond_dim < 0:
            raise ConfigError(f"cond_dim must be an integer >= 0 (0 = unconditional), got {cond_dim!r}.")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd so convolutions keep the length, got {kernel_size}.")
        if not isinstance(mults, (tuple, list)) or not mults:
            raise ConfigError(f"mults must be a non-empty list of positive integers, got {mults!r}.")
        for m in mults:
            check_positive_int("each entry of mults", m)
        self.dim, self.cond_dim, self.width = dim, cond_dim, width
        self.mults, self.kernel_size, self.emb_dim = tuple(mults), kernel_size, emb_dim
        self.n_down = len(self.mults) - 1

        self.level_emb = LevelEmbedding(emb_dim)
        self.cond_emb = ConditionEmbedding(cond_dim, emb_dim)

        chans = [dim] + [width * m for m in self.mults]
        pairs = list(zip(chans[:-1], chans[1:], strict=True))
        self.downs = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.downs.append(
                nn.ModuleList(
                    [
                        ResidualBlock(cin, cout, emb_dim, kernel_size),
                        ResidualBlock(cout, cout, emb_dim, kernel_size),
                        nn.Identity() if last else nn.Conv1d(cout, cout, 3, stride=2, padding=1),
                    ]
                )
            )
        mid = chans[-1]
        self.mid1 = ResidualBlock(mid, mid, emb_dim, kernel_size)
        self.mid2 = ResidualBlock(mid, mid, emb_dim, kernel_size)
        self.ups = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):
            self.ups.append(
                nn.ModuleList(
                    [
                        ResidualBlock(cout * 2, cin, emb_dim, kernel_size),
                        ResidualBlock(cin, cin, emb_dim, kernel_size),
                        nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1),
                    ]
                )
            )
        self.final_block = ConvBlock(chans[1], chans[1], kernel_size)
        self.final_conv = nn.Conv1d(chans[1], dim, 1)
        nn.init.zeros_(self.final_conv.weight)
        nn.init.zeros_(self.final_conv.bias)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serializable dict that rebuilds this architecture with ``build_network``."""
        return {
            "kind": self.kind,
            "dim": self.dim,
            "cond_dim": self.cond_dim,
            "width": self.width,
            "mults": list(self.mults),
            "kernel_size": self.kernel_size,
            "emb_dim": self.emb_dim,
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
        length = x.shape[1]
        k = distinct_levels(k, per_sample_condition=cond is not None, along_time=False)
        emb = self.level_emb(k) + self.cond_emb(cond, k.shape[0], cond_drop).unsqueeze(1)  # [B|1, T, E]
        h, emb = x.transpose(1, 2), emb.transpose(1, 2)
        pad = -length % (2**self.n_down)
        if pad:
            h = F.pad(h, (0, pad), mode="replicate")
            emb = F.pad(emb, (0, pad), mode="replicate")
        embs = [emb]
        for _ in range(self.n_down):
            embs.append(F.avg_pool1d(embs[-1], 2))

        skips = []
        for level, (res1, res2, down) in enumerate(self.downs):
            h = res2(res1(h, embs[level]), embs[level])
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid1(h, embs[-1]), embs[-1])
        for i, (res1, res2, up) in enumerate(self.ups):
            level = self.n_down - i
            h = torch.cat([h, skips.pop()], dim=1)
            h = res2(res1(h, embs[level]), embs[level])
            h = up(h)
        out = self.final_conv(self.final_block(h))
        return out[:, :, :length].transpose(1, 2)
