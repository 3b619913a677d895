"""Costs between agents sampled jointly (collision) and per agent (speed limit), for `CostGradient`.

Both act on encoded tokens but measure in the user's units, so they need each batch member's frame
(origin, heading, scale): ``cost.bind(frames, meta, samples)`` returns the cost ``[B, T, D] -> [B]``
for a batch laid out as `trajdiff.api.sample_futures` lays it out (each context repeated ``samples``
times, member ``b`` = context ``b // samples``, sample ``b % samples``). Joint sample ``s`` of a
scene is sample ``s`` of each of its agents; agents are in one scene when their meta share
``"group"`` or else ``("scene", last time)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.errors import ConfigError
from trajdiff.plugins.spec import BatchCost

__all__ = ["CollisionCost", "SpeedCost", "collision_penalty", "world_positions"]


def world_positions(x: Tensor, frames: list[dict[str, Any]]) -> Tensor:
    """Differentiable positions ``[B, H, 2]`` (user units) of the forecast rows of tokens ``[B, T, D]``."""
    h = int(frames[0]["history"])
    dtype, device = x.dtype, x.device
    scale = torch.tensor(np.stack([f["scale"] for f in frames]), dtype=dtype, device=device)
    fut = x[:, h:, :2] * scale[:, None, :]
    velocity = torch.tensor(np.stack([f["velocity"] for f in frames]), dtype=dtype, device=device)
    cv = torch.tensor([float(f["cv"]) for f in frames], dtype=dtype, device=device)
    steps = torch.arange(1, x.shape[1] - h + 1, dtype=dtype, device=device)
    fut = fut + cv[:, None, None] * steps[None, :, None] * velocity[:, None, :]
    c = torch.tensor([np.cos(f["angle"]) for f in frames], dtype=dtype, device=device)
    s = torch.tensor([np.sin(f["angle"]) for f in frames], dtype=dtype, device=device)
    wx = fut[..., 0] * c[:, None] - fut[..., 1] * s[:, None]
    wy = fut[..., 0] * s[:, None] + fut[..., 1] * c[:, None]
    origin = torch.tensor(np.stack([f["origin"] for f in frames]), dtype=dtype, device=device)
    return torch.stack([wx, wy], dim=-1) + origin[:, None, :]


def collision_penalty(positions: Tensor, radius: float, valid: Tensor | None = None) -> Tensor:
    """Per agent ``[..., A, S]``: sum over other agents and steps of ``relu(radius - distance)^2`` between the
    same joint sample; ``positions`` is ``[..., A, S, H, 2]`` (agents, joint samples, steps, xy) and
    ``valid`` ``[..., A]`` marks real agents where groups were padded to one size."""
    diff = positions[..., :, None, :, :, :] - positions[..., None, :, :, :, :]  # [..., A, A, S, H, 2]
    dist = torch.sqrt(diff.square().sum(-1) + 1e-9)
    agents = positions.shape[-4]
    pair = ~torch.eye(agents, dtype=torch.bool, device=positions.device)
    if valid is not None:
        pair = pair & valid[..., :, None] & valid[..., None, :]
    overlap = torch.relu(radius - dist) * pair[..., None, None].to(dist.dtype)
    return overlap.square().sum(dim=(-3, -1))


def _buckets(groups: list[list[int]]) -> list[Tensor]:
    """Groups of more than one member, padded with -1 into tensors ``[G, A]`` of similar sizes (powers of 2)."""
    by_size: dict[int, list[list[int]]] = {}
    for members in groups:
        if len(members) > 1:
            by_size.setdefault(1 << (len(members) - 1).bit_length(), []).append(members)
    out = []
    for size, items in sorted(by_size.items()):
        index = torch.full((len(items), size), -1, dtype=torch.long)
        for g, members in enumerate(items):
            index[g, :len(members)] = torch.tensor(members)
        out.append(index)
    return out


def _group_key(meta: dict[str, Any] | None) -> Hashable:
    if meta is None:
        return 0
    if "group" in meta:
        return meta["group"]
    times = meta.get("times")
    return (meta.get("scene"), None if times is None or len(times) == 0 else float(np.asarray(times)[-1]))


class _BindableCost(BatchCost):
    name = ""

    def __call__(self, x: Tensor) -> Tensor:
        raise ConfigError(f"the traffic cost {self.name!r} needs each window's frame: sample through "
                          "trajdiff.api.forecast / sample_futures(..., frames=...) or call cost.bind(frames, meta, "
                          "samples) first")


class CollisionCost(_BindableCost):
    """Penalizes agents of one scene closer than ``radius`` (user units) in the same joint sample."""

    name = "collision"

    def __init__(self, radius: float = 0.4) -> None:
        if not radius > 0:
            raise ConfigError(f"collision radius must be > 0, got {radius!r}")
        self.radius = float(radius)

    def bind(self, frames: list[dict[str, Any]], meta: list[dict[str, Any]] | None, samples: int) -> Callable:
        keys = [_group_key(m) for m in (meta if meta is not None else [None] * len(frames))]
        groups: dict[Hashable, list[int]] = {}
        for j, key in enumerate(keys):
            groups.setdefault(key, []).append(j)
        buckets = _buckets(list(groups.values()))
        per_member = [f for f in frames for _ in range(samples)]

        def cost(x: Tensor) -> Tensor:
            positions = world_positions(x, per_member).reshape(len(frames), samples, -1, 2)
            out = x.new_zeros(len(frames), samples)
            for index in buckets:
                index = index.to(x.device)
                valid = index >= 0
                penalty = collision_penalty(positions[index.clamp_min(0)], self.radius, valid)  # [G, A, S]
                out = out.index_put((index[valid],), penalty[valid])
            return out.reshape(-1)

        return cost


class SpeedCost(_BindableCost):
    """Penalizes steps faster than ``limit`` user units per second (meta ``dt``: seconds per step; 1 if absent)."""

    name = "speed"

    def __init__(self, limit: float = 3.0) -> None:
        if not limit > 0:
            raise ConfigError(f"speed limit must be > 0, got {limit!r}")
        self.limit = float(limit)

    def bind(self, frames: list[dict[str, Any]], meta: list[dict[str, Any]] | None, samples: int) -> Callable:
        dts = [float((m or {}).get("dt", 1.0)) for m in (meta if meta is not None else [None] * len(frames))]
        per_member = [f for f in frames for _ in range(samples)]
        max_step = torch.tensor([self.limit * dt for dt in dts for _ in range(samples)])

        def cost(x: Tensor) -> Tensor:
            positions = world_positions(x, per_member)  # [B, H, 2]
            origin = torch.tensor(np.stack([f["origin"] for f in per_member]), dtype=x.dtype, device=x.device)
            path = torch.cat([origin[:, None, :], positions], dim=1)
            step = torch.sqrt((path[:, 1:] - path[:, :-1]).square().sum(-1) + 1e-9)
            excess = torch.relu(step - max_step.to(x)[:, None])
            return excess.square().sum(-1)

        return cost
