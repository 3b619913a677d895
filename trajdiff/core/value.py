"""A learned value of noisy plans and the guide that climbs its gradient (Diffuser, Janner et al., 2022).

`ValueNet` maps a sequence ``[B, T, D]`` and its tokens' noise levels ``[B, T]`` to one number per
sequence: the (standardized) discounted return the data earned after the window's first step.
It is level-aware like the denoiser: it is trained on windows noised to random levels (the first
token kept clean, as the planner holds the present), so its gradient means something at every
step of sampling. `ValueGuide` moves the denoiser's x0 prediction along that gradient, which
composes with inpainting (a later `Inpaint` in the guide list overwrites the known entries).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.guidance import BaseGuide, _eps_from_x0
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import Schedule
from trajdiff.errors import ConfigError, ShapeError


class ValueNet(nn.Module):
    """An MLP over the flattened tokens, each with its noise level appended; returns ``[B]``."""

    def __init__(self, tokens: int, dim: int, width: int = 128, depth: int = 2) -> None:
        super().__init__()
        if tokens < 1 or dim < 1 or width < 1 or depth < 1:
            raise ConfigError(f"a value network needs positive tokens, dim, width and depth, got "
                              f"{tokens}, {dim}, {width}, {depth}")
        self.tokens, self.dim, self.width, self.depth = tokens, dim, width, depth
        layers: list[nn.Module] = []
        size = tokens * (dim + 1)
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        layers.append(nn.Linear(size, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, x: Tensor, k: Tensor) -> Tensor:
        """Standardized value of ``x`` ``[B, T, D]`` at levels ``k`` ``[B, T]`` (or ``[B]``)."""
        if x.shape[-2:] != (self.tokens, self.dim):
            raise ShapeError(f"value network expects [B, {self.tokens}, {self.dim}], got {tuple(x.shape)}")
        k = (k[:, None] if k.dim() == 1 else k).to(x.dtype).expand(x.shape[:-1])
        features = torch.cat([x, k[..., None]], dim=-1).flatten(1)
        return self.net(features)[:, 0]

    def returns(self, x: Tensor, k: Tensor) -> Tensor:
        """The value in return units (the standardization undone)."""
        return self.forward(x, k) * self.std + self.mean

    def config(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "dim": self.dim, "width": self.width, "depth": self.depth}


@dataclass
class ValueFit:
    """What `train_value` did: steps, seconds, CPU seconds, and the final loss on training / held-out windows."""

    steps: int
    seconds: float
    cpu_seconds: float
    train_loss: float
    validation_loss: float | None


def train_value(net: ValueNet, x: Tensor, returns: Tensor, schedule: Schedule, *, steps: int = 2000,
                batch_size: int = 256, lr: float = 1e-3, clean_first: bool = True, validation: float = 0.1,
                seed: int = 0, minutes: float | None = None) -> ValueFit:
    """Fits ``net`` to ``returns`` ``[N]`` of windows ``x`` ``[N, T, D]`` noised to levels drawn
    uniformly in [0, 1] (one per window; token 0 clean when ``clean_first``). The last
    ``validation`` share of windows (in the order given) is held out to report a loss on."""
    if x.dim() != 3 or returns.shape != x.shape[:1]:
        raise ShapeError(f"value training needs x [N, T, D] and returns [N], got {tuple(x.shape)}, "
                         f"{tuple(returns.shape)}")
    if len(x) < 2:
        raise ShapeError(f"value training needs at least 2 windows, got {len(x)}")
    generator = torch.Generator().manual_seed(seed)
    held = int(len(x) * validation)
    train_x, train_y = x[: len(x) - held], returns[: len(x) - held]
    net.mean.fill_(float(train_y.mean()))
    net.std.fill_(float(train_y.std().clamp_min(1e-6)))
    target = (returns - net.mean) / net.std
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    started, cpu0 = time.monotonic(), time.process_time()

    def loss_of(xb: Tensor, yb: Tensor) -> Tensor:
        k = torch.rand(len(xb), 1, generator=generator).expand(xb.shape[:2]).clone()
        if clean_first:
            k[:, 0] = 0.0
        alpha, sigma = schedule.alpha_sigma(k)
        noisy = alpha[..., None] * xb + sigma[..., None] * torch.randn(xb.shape, generator=generator)
        return ((net(noisy, k) - yb) ** 2).mean()

    step, loss = 0, torch.tensor(float("nan"))
    net.train()
    while step < steps and (minutes is None or time.monotonic() - started < 60 * minutes):
        index = torch.randint(len(train_x), (min(batch_size, len(train_x)),), generator=generator)
        loss = loss_of(train_x[index], target[: len(train_x)][index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    net.eval()
    validation_loss = None
    if held:
        with torch.no_grad():
            validation_loss = float(loss_of(x[-held:], target[-held:]))
    return ValueFit(step, time.monotonic() - started, time.process_time() - cpu0, float(loss.detach()), validation_loss)


class ValueGuide(BaseGuide):
    """Adds ``scale`` x the gradient of the value (at the current noisy state and levels) to the x0
    prediction of every token above ``stop_level``; clean context tokens are left alone."""

    def __init__(self, value: ValueNet, scale: float, stop_level: float = 0.0) -> None:
        if scale < 0:
            raise ConfigError(f"value guidance scale must be >= 0, got {scale}")
        self.value, self.scale, self.stop_level = value, float(scale), float(stop_level)

    def gradient(self, x: Tensor, k: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.value(leaf, k).sum(), leaf)
        return grad

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        def guided(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            prediction = denoise(x, k, cond)
            active = (k > self.stop_level)[..., None]
            if self.scale == 0 or not bool(active.any()):
                return prediction
            grad = torch.where(active, self.gradient(x, k), torch.zeros_like(x))
            alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
            x0 = prediction.x0.detach() + self.scale * grad
            return Prediction(x0, _eps_from_x0(x, x0, alpha, sigma, prediction.eps))

        return guided
