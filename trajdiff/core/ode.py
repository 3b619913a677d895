"""Adaptive probability-flow ODE sampling through torchdiffeq, for full-sequence plans.

The ODE ``dx/dk = alpha'(k) x0_hat + sigma'(k) eps_hat`` is integrated from ``k_start`` (default 1)
down to ``k_end`` with an adaptive solver (dopri5 by default), then one final denoising step maps
the state at ``k_end`` to level 0 (the VP velocity is singular at k = 0). Context tokens (a mask
``[T]``) stay clean and untouched. The number of function evaluations is reported, because that
is what an adaptive solver trades against accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchdiffeq
from torch import Tensor

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.samplers import check_sequences
from trajdiff.core.schedules import Schedule
from trajdiff.errors import ConfigError, ShapeError

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


@dataclass
class ODEResult:
    """The sample and how many denoiser calls the adaptive solve needed."""

    x: Tensor
    nfe: int


def sample_ode(
    denoise: Denoiser,
    x: Tensor,
    schedule: Schedule,
    *,
    context: Tensor | None = None,
    cond: Tensor | None = None,
    method: str = "dopri5",
    rtol: float = 1e-4,
    atol: float = 1e-4,
    k_start: float = 1.0,
    k_end: float = 1e-3,
    options: dict | None = None,
) -> ODEResult:
    """Solves the probability-flow ODE from ``x`` at level ``k_start`` to level 0.

    ``context`` is a boolean mask ``[T]`` of tokens held at level 0 (their values in ``x`` are the
    clean observations). Returns the sample and the number of function evaluations (NFE).
    """
    check_sequences(x)
    if not 0.0 < k_end < k_start <= 1.0:
        raise ConfigError(f"need 0 < k_end < k_start <= 1, got k_end={k_end}, k_start={k_start}")
    batch, horizon, _ = x.shape
    if context is None:
        context = torch.zeros(horizon, dtype=torch.bool)
    if context.shape != (horizon,) or context.dtype != torch.bool:
        raise ShapeError(f"context must be a boolean mask of shape ({horizon},), got {tuple(context.shape)}")
    free = ~context
    calls = 0

    def levels(k: Tensor) -> Tensor:
        return torch.where(free, k.to(x.dtype), torch.zeros((), dtype=x.dtype)).expand(batch, horizon)

    def velocity(k: Tensor, state: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        per_token = levels(k)
        prediction = denoise(state, per_token, cond)
        d_alpha, d_sigma = schedule.derivatives(per_token)
        v = d_alpha[..., None] * prediction.x0 + d_sigma[..., None] * prediction.eps
        return torch.where(free[None, :, None], v, torch.zeros_like(v))

    times = torch.tensor([k_start, k_end], dtype=x.dtype)
    options = dict(options or {})
    if method in ADAPTIVE and "step_t" not in options:
        # Make the solver land on k_end instead of stepping past it and interpolating back, which
        # would evaluate the denoiser at negative levels (wasted calls; NaN sigmas for some schedules).
        options["step_t"] = times[1:]
    with torch.no_grad():
        trajectory = torchdiffeq.odeint(velocity, x, times, method=method, rtol=rtol, atol=atol, options=options)
        state = trajectory[-1]
        final = denoise(state, levels(torch.tensor(k_end)), cond)
        calls += 1
    out = torch.where(free[None, :, None], final.x0, x)
    return ODEResult(out, calls)
