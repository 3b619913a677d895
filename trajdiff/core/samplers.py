"""Samplers: one loop that walks a noise-level plan, and one step function per solver.

Every step function moves each token from its level ``k_from`` to ``k_to`` (both ``[B, T]``) with
per-token coefficients and has the signature

    step(denoise, x, k_from, k_to, schedule, *, cond, state, generator) -> x_next

``state`` is a dict of per-token tensors (``[B, T, ...]``) a multistep solver keeps between
calls; `stream` shifts it together with the tokens. The loop (`sample`) leaves tokens whose level
does not change bit-identical, and applies guides after every step.

Solvers (all written for general ``(alpha, sigma)``, so they run under every schedule):

- ``ddpm``: ancestral sampling from the Gaussian posterior q(x_t | x_s, x0_hat) (Ho et al., 2020);
- ``ddim``: DDIM with stochasticity ``eta`` (Song et al., 2021); eta = 1 equals ``ddpm``;
- ``dpmpp2m``: DPM-Solver++(2M), second-order multistep in log-SNR, first order at the final step
  to sigma = 0 (Lu et al., 2022);
- ``euler``, ``heun``: the probability-flow ODE ``dx/dk = alpha'(k) x0 + sigma'(k) eps`` in k;
  for the flow-matching schedule this is the rectified-flow velocity ``eps - x0``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from trajdiff.core import plans as plan_lib
from trajdiff.core.denoiser import Denoiser
from trajdiff.core.schedules import Schedule, token_coefficients
from trajdiff.errors import ConfigError, DataError, ShapeError

State = dict[str, Tensor]


class StepFn(Protocol):
    def __call__(
        self,
        denoise: Denoiser,
        x: Tensor,
        k_from: Tensor,
        k_to: Tensor,
        schedule: Schedule,
        *,
        cond: Tensor | None,
        state: State,
        generator: torch.Generator | None,
    ) -> Tensor: ...


def _coefficients(schedule: Schedule, k: Tensor) -> tuple[Tensor, Tensor]:
    return token_coefficients(schedule, k)


def _noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def ddim_step(
    denoise: Denoiser,
    x: Tensor,
    k_from: Tensor,
    k_to: Tensor,
    schedule: Schedule,
    *,
    cond: Tensor | None = None,
    state: State | None = None,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
) -> Tensor:
    """x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps + c z,  c^2 = eta^2 sigma_t^2 (1 - SNR_s / SNR_t)."""
    prediction = denoise(x, k_from, cond)
    alpha_s, sigma_s = _coefficients(schedule, k_from)
    alpha_t, sigma_t = _coefficients(schedule, k_to)
    if eta == 0.0:
        return alpha_t * prediction.x0 + sigma_t * prediction.eps
    # SNR_s / SNR_t = (alpha_s sigma_t)^2 / (alpha_t sigma_s)^2, in [0, 1] when t is cleaner than s.
    ratio = (alpha_s * sigma_t).square() / (alpha_t * sigma_s).square().clamp_min(1e-30)
    c = eta * sigma_t * torch.sqrt((1.0 - ratio).clamp_min(0.0))
    keep = torch.sqrt((sigma_t.square() - c.square()).clamp_min(0.0))
    return alpha_t * prediction.x0 + keep * prediction.eps + c * _noise_like(x, generator)


def ddpm_step(
    denoise: Denoiser,
    x: Tensor,
    k_from: Tensor,
    k_to: Tensor,
    schedule: Schedule,
    *,
    cond: Tensor | None = None,
    state: State | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral step: a draw from q(x_t | x_s, x0_hat), the forward process's Gaussian posterior."""
    prediction = denoise(x, k_from, cond)
    alpha_s, sigma_s = _coefficients(schedule, k_from)
    alpha_t, sigma_t = _coefficients(schedule, k_to)
    alpha_ts = alpha_s / alpha_t  # alpha_{s|t}
    var_ts = (sigma_s.square() - alpha_ts.square() * sigma_t.square()).clamp_min(0.0)  # sigma^2_{s|t}
    inv_var_s = 1.0 / sigma_s.square().clamp_min(1e-30)
    mean = alpha_ts * sigma_t.square() * inv_var_s * x + alpha_t * var_ts * inv_var_s * prediction.x0
    std = torch.sqrt(var_ts * sigma_t.square() * inv_var_s)
    return mean + std * _noise_like(x, generator)


def dpmpp_2m_step(
    denoise: Denoiser,
    x: Tensor,
    k_from: Tensor,
    k_to: Tensor,
    schedule: Schedule,
    *,
    cond: Tensor | None = None,
    state: State | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DPM-Solver++(2M) with per-token step sizes; a token's first step and its last (to sigma = 0)
    are first order (DDIM). Keeps the previous x0 estimate and log-SNR per token in ``state``."""
    state = {} if state is None else state
    prediction = denoise(x, k_from, cond)
    alpha_s, sigma_s = _coefficients(schedule, k_from)
    alpha_t, sigma_t = _coefficients(schedule, k_to)
    lam_s = torch.log(alpha_s) - torch.log(sigma_s)
    lam_t = torch.log(alpha_t) - torch.log(sigma_t)
    h = lam_t - lam_s
    data = prediction.x0
    lam_prev = state.get("lam_prev")
    if lam_prev is not None and lam_prev.dim() == 0 and h.dim() == 0:
        # One level for every token (a full-sequence plan): scalar arithmetic, no masks.
        h_prev = lam_s - lam_prev
        if bool(torch.isfinite(h_prev)) and h_prev > 0 and sigma_t > 0 and h > 0:
            data = data + (data - state["x0_prev"]) * (h / (2.0 * h_prev))
    elif lam_prev is not None:
        h_prev = lam_s - lam_prev
        second_order = torch.isfinite(h_prev) & (h_prev > 0) & (sigma_t > 0) & (h > 0)
        r = h_prev / torch.where(second_order, h, torch.ones_like(h))
        correction = (data - state["x0_prev"]) / (2.0 * torch.where(second_order, r, torch.ones_like(r)))
        data = torch.where(second_order, data + correction, data)
    # x_t = (sigma_t / sigma_s) x + alpha_t (1 - e^{-h}) D, with e^{-h} = sigma_t alpha_s / (alpha_t sigma_s)
    # written so that sigma_t = 0 (lambda_t = inf) and alpha_s = 0 (lambda_s = -inf) stay finite.
    x_next = (sigma_t / sigma_s) * x + (alpha_t - sigma_t * alpha_s / sigma_s) * data
    moving = (k_to != k_from)[..., None]
    if bool(moving.all()):
        state["x0_prev"], state["lam_prev"] = prediction.x0, lam_s
    else:
        state["x0_prev"] = torch.where(moving, prediction.x0, state.get("x0_prev", prediction.x0))
        unknown = torch.full(moving.shape, float("nan"), dtype=x.dtype, device=x.device)
        state["lam_prev"] = torch.where(moving, lam_s, lam_prev if lam_prev is not None else unknown)
    return x_next


def _velocity(schedule: Schedule, k: Tensor, x0: Tensor, eps: Tensor, moving: Tensor) -> Tensor:
    """dx/dk at level k; zero for tokens that do not move (where it may be undefined, e.g. k = 0)."""
    d_alpha, d_sigma = schedule.derivatives(k)
    velocity = d_alpha[..., None] * x0 + d_sigma[..., None] * eps
    return torch.where(moving, velocity, torch.zeros_like(velocity))


def euler_step(
    denoise: Denoiser,
    x: Tensor,
    k_from: Tensor,
    k_to: Tensor,
    schedule: Schedule,
    *,
    cond: Tensor | None = None,
    state: State | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler step of dx/dk = alpha'(k) x0_hat + sigma'(k) eps_hat (the flow-matching velocity)."""
    prediction = denoise(x, k_from, cond)
    dk = (k_to - k_from)[..., None]
    velocity = _velocity(schedule, k_from, prediction.x0, prediction.eps, dk != 0)
    return x + dk * velocity


def heun_step(
    denoise: Denoiser,
    x: Tensor,
    k_from: Tensor,
    k_to: Tensor,
    schedule: Schedule,
    *,
    cond: Tensor | None = None,
    state: State | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun's second-order step (trapezoid on the velocity); Euler where a token lands on level 0,
    as in Karras et al. (2022), since the velocity there is undefined for some schedules."""
    prediction = denoise(x, k_from, cond)
    dk = (k_to - k_from)[..., None]
    velocity = _velocity(schedule, k_from, prediction.x0, prediction.eps, dk != 0)
    x_euler = x + dk * velocity
    second = (k_to > 0)[..., None] & (dk != 0)
    if not bool(second.any()):
        return x_euler
    probe = denoise(x_euler, k_to, cond)
    velocity_end = _velocity(schedule, k_to, probe.x0, probe.eps, second)
    return torch.where(second, x + dk * 0.5 * (velocity + velocity_end), x_euler)


SOLVERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": ddpm_step,
    "ddim": ddim_step,
    "dpmpp2m": dpmpp_2m_step,
    "euler": euler_step,
    "heun": heun_step,
}

EVALUATIONS_PER_STEP: dict[str, int] = {"ddpm": 1, "ddim": 1, "dpmpp2m": 1, "euler": 1, "heun": 2}


def get_solver(solver: str | StepFn, **options: Any) -> StepFn:
    """A step function by name (``ddpm``, ``ddim``, ``dpmpp2m``, ``euler``, ``heun``) with options bound
    (e.g. ``get_solver("ddim", eta=0.5)``), or a step function passed through."""
    if callable(solver):
        return functools.partial(solver, **options) if options else solver
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
    return functools.partial(SOLVERS[solver], **options) if options else SOLVERS[solver]


def check_sequences(x: Tensor, name: str = "x") -> Tensor:
    """Raises a clear error unless ``x`` is a finite floating tensor ``[B, T, D]``."""
    if not isinstance(x, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor [batch, tokens, features], got {type(x).__name__}")
    if x.dim() != 3:
        raise ShapeError(
            f"{name} must have shape [batch, tokens, features], got {tuple(x.shape)}; "
            "add a batch dimension with x[None] or a feature dimension with x[..., None]"
        )
    if not x.is_floating_point():
        raise ShapeError(f"{name} must be floating point, got {x.dtype}; convert it with .float()")
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise DataError(
            f"{name} contains NaN or infinite values (first at batch {bad[0]}, token {bad[1]}, feature {bad[2]}); "
            "impute or drop them before sampling or training"
        )
    return x


class Guide(Protocol):
    """A guide changes predictions (``wrap``) and/or the state after each step (``after_step``)."""

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser: ...

    def prepare(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor: ...

    def after_step(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor: ...


def apply_guides(denoise: Denoiser, guides: Sequence[Guide], schedule: Schedule) -> Denoiser:
    """Wraps the denoiser with each guide in order (the first guide is innermost)."""
    for guide in guides:
        denoise = guide.wrap(denoise, schedule)
    return denoise


def initial_state(
    shape: tuple[int, int, int] | torch.Size,
    plan: Tensor,
    schedule: Schedule,
    *,
    context: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    noise: Tensor | None = None,
) -> Tensor:
    """The sequence a plan starts from: ``alpha(k0) * context + sigma(k0) * noise`` per token.

    Without ``context`` (clean values, ``[B, T, D]``) the start is noise scaled by sigma(k0) (pure
    noise at level 1 for every schedule, sigma_max * noise for EDM); tokens at level 0 in row 0 are
    exactly the context, and tokens at a warm-start level are the context re-noised to it.
    ``noise`` (standard normal, ``shape``) replaces the drawn noise, e.g. for antithetic pairs.
    """
    if noise is None:
        noise = torch.randn(tuple(shape), generator=generator, dtype=dtype)
    elif tuple(noise.shape) != tuple(shape):
        raise ShapeError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    noise = noise.to(dtype)
    k0 = plan[0].to(dtype).expand(shape[0], shape[1])
    alpha, sigma = _coefficients(schedule, k0)
    if context is None:
        values = torch.zeros(tuple(shape), dtype=dtype)
    else:
        check_sequences(context, "context")
        if tuple(context.shape) != tuple(shape):
            raise ShapeError(f"context has shape {tuple(context.shape)}, expected {tuple(shape)}")
        values = context.to(dtype)
    return torch.where((k0 == 0)[..., None], values, alpha * values + sigma * noise)


def antithetic_noise(
    shape: tuple[int, int, int] | torch.Size,
    group: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise ``[B, T, D]`` whose rows come in mirrored pairs within each group of ``group``
    consecutive rows (the samples of one context): row ``i`` and row ``i + group / 2`` are ``z`` and ``-z``.

    Why: each row is still standard normal, so every sample is a draw from the model; with a
    deterministic solver a pair's two samples mirror each other around the flow's image of zero,
    which cancels most of the Monte Carlo noise in the samples' mean and median.
    """
    batch = shape[0]
    if group < 2 or group % 2 or batch % group:
        raise ConfigError(f"antithetic noise needs an even group size that divides the batch; got group {group} "
                          f"for a batch of {batch}")
    half = torch.randn(batch // group, group // 2, *tuple(shape)[1:], generator=generator, dtype=dtype)
    return torch.cat([half, -half], dim=1).reshape(tuple(shape))


def sample(
    denoise: Denoiser,
    x: Tensor,
    plan: Tensor,
    schedule: Schedule,
    *,
    solver: str | StepFn = "ddim",
    cond: Tensor | None = None,
    guides: Sequence[Guide] = (),
    generator: torch.Generator | None = None,
    state: State | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Walks ``plan`` (``[S+1, T]``) from row 0 to row S starting at ``x`` (``[B, T, D]``).

    Each row transition moves every token whose level changes with one solver step; tokens whose
    level stays put are returned bit-identical. Guides wrap the denoiser and act after each step.
    ``state`` lets a caller carry a multistep solver's memory across calls (see `stream`).
    """
    check_sequences(x)
    plan = plan_lib.validate_plan(plan, horizon=x.shape[1]).to(device=x.device, dtype=x.dtype)
    step = get_solver(solver)
    guided = apply_guides(denoise, guides, schedule)
    state = {} if state is None else state
    batch, horizon = x.shape[0], x.shape[1]
    for guide in guides:
        x = guide.prepare(x, plan[0].expand(batch, horizon), schedule, generator)
    with torch.no_grad():
        for i in range(plan.shape[0] - 1):
            moving = plan[i + 1] != plan[i]
            if not bool(moving.any()):
                continue
            k_from = plan[i].expand(batch, horizon)
            k_to = plan[i + 1].expand(batch, horizon)
            x_next = step(guided, x, k_from, k_to, schedule, cond=cond, state=state, generator=generator)
            # Guides see unmoved tokens restored (a solver may leave them undefined, e.g. 0/0 at level 0),
            # and those tokens stay bit-identical whatever a guide does to them.
            everything = bool(moving.all())
            x_next = x_next if everything else _keep_unmoved(x, x_next, moving)
            for guide in guides:
                x_next = guide.after_step(x_next, k_to, schedule, generator)
            x = x_next if everything or not guides else _keep_unmoved(x, x_next, moving)
            if callback is not None:
                callback(i, x)
    return x


def _keep_unmoved(x: Tensor, x_next: Tensor, moving: Tensor) -> Tensor:
    return torch.where(moving[None, :, None], x_next, x)


def stream(
    denoise: Denoiser,
    schedule: Schedule,
    *,
    window: int,
    batch: int,
    dim: int,
    context: Tensor | None = None,
    substeps: int = 1,
    solver: str | StepFn = "ddim",
    cond: Tensor | None = None,
    guides: Sequence[Guide] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[Tensor]:
    """Yields clean tokens ``[B, D]`` forever by rolling a window of noisy tokens (Rolling Diffusion, TEDi).

    The model sees ``[context | window]``: ``context`` (``[B, C, D]``, may be omitted) holds the last C
    clean tokens, the window holds ``window`` tokens on a staircase of levels. Starting from pure noise,
    the window is brought onto the staircase (head at 1/window, tail at 1); from then on each round of
    ``substeps`` rows lowers every level by 1/window, the head token becomes clean and is yielded, it
    joins the context (the oldest context token leaves), and a pure-noise token enters at the tail.
    The model therefore never sees more than C + window tokens, however long the stream runs.
    """
    if window < 1 or substeps < 1:
        raise ConfigError(f"window and substeps must be >= 1, got window={window}, substeps={substeps}")
    if context is None:
        context = torch.zeros(batch, 0, dim, dtype=dtype)
    elif context.shape[1]:
        check_sequences(context, "context")
    if context.shape[0] != batch or context.shape[2] != dim:
        raise ShapeError(f"context has shape {tuple(context.shape)}, expected [{batch}, C, {dim}]")
    n_context = context.shape[1]
    _, sigma_max = schedule.alpha_sigma(torch.ones((), dtype=dtype))
    noisy = sigma_max * torch.randn(batch, window, dim, generator=generator, dtype=dtype)
    x = torch.cat([context.to(dtype), noisy], dim=1)
    state: State = {}

    def walk(x: Tensor, offsets: Sequence[float]) -> Tensor:
        clean = torch.zeros(n_context, dtype=torch.float64)
        rows = [torch.cat([clean, plan_lib.staircase(window, o)]) for o in offsets]
        return sample(
            denoise, x, torch.stack(rows), schedule,
            solver=solver, cond=cond, guides=guides, generator=generator, state=state,
        )

    # Warm-up: from all-noise (offset = window) down to the staircase (offset = 1).
    warmup = [window - i / substeps for i in range((window - 1) * substeps + 1)]
    if len(warmup) > 1:
        x = walk(x, warmup)
    round_offsets = [1.0 - i / substeps for i in range(substeps + 1)]
    while True:
        x = walk(x, round_offsets)
        head = x[:, n_context].clone()
        yield head
        fresh = sigma_max * torch.randn(batch, 1, dim, generator=generator, dtype=dtype)
        x = torch.cat([x[:, 1:], fresh], dim=1)  # the head joins the context, the oldest context leaves
        for key, value in state.items():
            if value.dim() < 3:  # a shared level: one value per token from now on
                value = value.expand(x.shape[0], x.shape[1], 1)
            fill = torch.full_like(value[:, :1], float("nan"))
            state[key] = torch.cat([value[:, 1:], fill], dim=1)
