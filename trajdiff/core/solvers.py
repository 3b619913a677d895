"""Solvers: objects that move every token of a sequence from one noise level to the next.

A solver declares what one step costs (``evaluations_per_step`` network evaluations, and how many
a given plan costs in all), the state it keeps between steps (created by `init_state` with explicit
shapes, shifted by `shift_state` when `samplers.stream` drops the head token) and its `step`.

All are written for general ``(alpha, sigma)``, so they run under every schedule:

- ``ddpm``: ancestral sampling from the Gaussian posterior q(x_t | x_s, x0_hat) (Ho et al., 2020);
- ``ddim``: DDIM with stochasticity ``eta`` (Song et al., 2021); eta = 1 equals ``ddpm``;
- ``dpmpp2m``: DPM-Solver++(2M), second-order multistep in log-SNR, first order at a token's first
  step and at its final step to sigma = 0 (Lu et al., 2022);
- ``euler``, ``heun``: the probability-flow ODE ``dx/dk = alpha'(k) x0 + sigma'(k) eps`` in k;
  for the flow-matching schedule this is the rectified-flow velocity ``eps - x0``;
- ``dpmpp3m``: DPM-Solver++(3M), third-order multistep in log-SNR (Lu et al., 2022), lower order at a
  token's first two steps and onto sigma = 0. Its second-difference term carries the Taylor weight
  ``alpha_t h phi_3(-h) (h^2 x0'')``; the reference code (dpm-solver, and diffusers and k-diffusion after
  it) uses half of it, which leaves the step second order (measured here: the error falls 4x, not 8x,
  per halved step);
- ``unipc``: UniPC (Zhao et al., 2023), predictor UniP-p plus corrector UniC (bh2 by default, data
  prediction), order 3 by default; the corrector reuses the next step's evaluation, so one
  evaluation per step;
- ``consistency``: for distilled models (`distillation`), whose x0 prediction is the end of the teacher's
  ODE: that end, re-noised to the next levels (Song et al., 2023, multistep consistency sampling).

``dpmpp3m`` and ``unipc`` live in `multistep` and take ``eps_scale``, epsilon scaling against exposure
bias (Ning et al., 2023); `multistep.epsilon_scaling` wraps a denoiser the same way for any solver.
The multistep solvers are most accurate on plans spaced evenly in log-SNR (`plans` ``spacing="logsnr"``).

A step receives a `Row`: the levels before and after it and which tokens move, worked out from the
plan once before sampling starts, so that no step has to ask the device which tokens move.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.schedules import Schedule, token_coefficients
from trajdiff.core.streams import Streams, normal
from trajdiff.errors import ConfigError

State = dict[str, Tensor]
"""A solver's memory between steps: tensors ``[B, T, ...]``, one entry per token."""


@dataclass(frozen=True)
class Row:
    """One transition of a plan: levels ``k_from`` -> ``k_to`` (``[B, T]``), the tokens that move
    (``moving``, ``[1, T, 1]`` on the sequences' device) and host-side facts about them."""

    k_from: Tensor
    k_to: Tensor
    moving: Tensor
    all_moving: bool
    any_lands_noisy: bool
    """Some moving token ends above level 0 (a Heun step then needs its second evaluation)."""


def _noise_like(x: Tensor, generator: torch.Generator | Streams | None) -> Tensor:
    return normal(x.shape, generator, dtype=x.dtype, device=x.device)


class Solver(ABC):
    """A way to take one step along a plan; see the module docstring."""

    name: ClassVar[str] = ""
    evaluations_per_step: ClassVar[int] = 1
    deterministic: bool = True
    """Same start, same output (no noise drawn during steps)."""

    def evaluations(self, row_moves: list[bool], row_lands_noisy: list[bool]) -> int:
        """Network evaluations over a plan, given per row whether any token moves and whether any
        moving token ends above level 0."""
        return sum(self.evaluations_per_step for moves in row_moves if moves)

    def init_state(self, x: Tensor) -> State:
        """The state before the first step, shaped for ``x`` ``[B, T, D]`` (empty for one-step solvers)."""
        return {}

    def shift_state(self, state: State, drop: int) -> State:
        """The state after the first ``drop`` tokens left the sequence and as many fresh ones joined at the
        end (`samplers.stream`): every entry shifts along the token axis; new tokens start unknown (NaN)."""
        shifted = {}
        for key, value in state.items():
            fill = torch.full_like(value[:, :drop], float("nan"))
            shifted[key] = torch.cat([value[:, drop:], fill], dim=1)
        return shifted

    @abstractmethod
    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        """``x`` at ``row.k_from`` -> ``x`` at ``row.k_to``; may update ``state`` in place."""

    def __repr__(self) -> str:
        return f"<Solver {self.name}>"


class DDIM(Solver):
    """x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps + c z,  c^2 = eta^2 sigma_t^2 (1 - SNR_s / SNR_t)."""

    name = "ddim"

    def __init__(self, eta: float = 0.0) -> None:
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"DDIM's eta must lie in [0, 1], got {eta}")
        self.eta = float(eta)
        self.deterministic = self.eta == 0.0

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        prediction = denoise(x, row.k_from, cond)
        alpha_t, sigma_t = token_coefficients(schedule, row.k_to)
        if self.eta == 0.0:
            return alpha_t * prediction.x0 + sigma_t * prediction.eps
        alpha_s, sigma_s = token_coefficients(schedule, row.k_from)
        # SNR_s / SNR_t = (alpha_s sigma_t)^2 / (alpha_t sigma_s)^2, in [0, 1] when t is cleaner than s.
        ratio = (alpha_s * sigma_t).square() / (alpha_t * sigma_s).square().clamp_min(1e-30)
        c = self.eta * sigma_t * torch.sqrt((1.0 - ratio).clamp_min(0.0))
        keep = torch.sqrt((sigma_t.square() - c.square()).clamp_min(0.0))
        return alpha_t * prediction.x0 + keep * prediction.eps + c * _noise_like(x, generator)


class DDPM(Solver):
    """Ancestral step: a draw from q(x_t | x_s, x0_hat), the forward process's Gaussian posterior."""

    name = "ddpm"
    deterministic = False

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        prediction = denoise(x, row.k_from, cond)
        alpha_s, sigma_s = token_coefficients(schedule, row.k_from)
        alpha_t, sigma_t = token_coefficients(schedule, row.k_to)
        alpha_ts = alpha_s / alpha_t  # alpha_{s|t}
        var_ts = (sigma_s.square() - alpha_ts.square() * sigma_t.square()).clamp_min(0.0)  # sigma^2_{s|t}
        inv_var_s = 1.0 / sigma_s.square().clamp_min(1e-30)
        mean = alpha_ts * sigma_t.square() * inv_var_s * x + alpha_t * var_ts * inv_var_s * prediction.x0
        std = torch.sqrt(var_ts * sigma_t.square() * inv_var_s)
        return mean + std * _noise_like(x, generator)


class DPMSolverPP2M(Solver):
    """DPM-Solver++(2M) with per-token step sizes. State: the previous x0 estimate ``x0_prev``
    ``[B, T, D]`` and log-SNR ``lam_prev`` ``[B, T, 1]`` of each token (NaN before its first step)."""

    name = "dpmpp2m"

    def init_state(self, x: Tensor) -> State:
        return {"x0_prev": torch.zeros_like(x),
                "lam_prev": torch.full((x.shape[0], x.shape[1], 1), float("nan"), dtype=x.dtype, device=x.device)}

    def shift_state(self, state: State, drop: int) -> State:
        """As `Solver.shift_state`, with the fresh tokens' ``x0_prev`` 0 instead of NaN (their NaN ``lam_prev``
        marks them unknown): the step multiplies it by a zero weight, which must stay zero."""
        shifted = super().shift_state(state, drop)
        shifted["x0_prev"] = torch.nan_to_num(shifted["x0_prev"], nan=0.0)
        return shifted

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        if not state:
            state.update(self.init_state(x))
        prediction = denoise(x, row.k_from, cond)
        alpha_s, sigma_s = token_coefficients(schedule, row.k_from)
        alpha_t, sigma_t = token_coefficients(schedule, row.k_to)
        lam_s = torch.log(alpha_s) - torch.log(sigma_s)
        h = (torch.log(alpha_t) - torch.log(sigma_t)) - lam_s
        h_prev = lam_s - state["lam_prev"]
        second_order = torch.isfinite(h_prev) & (h_prev > 0) & (sigma_t > 0) & (h > 0)
        r = torch.where(second_order, h_prev, 1.0) / torch.where(second_order, h, 1.0)
        # D = x0 + (x0 - x0_prev) / (2 r) on second-order tokens, else x0; then
        # x_t = (sigma_t / sigma_s) x + alpha_t (1 - e^{-h}) D, with e^{-h} = sigma_t alpha_s / (alpha_t sigma_s)
        # written so that sigma_t = 0 (lambda_t = inf) and alpha_s = 0 (lambda_s = -inf) stay finite. The
        # coefficients are per token ([B, T, 1]), so the step is three passes over the sequences.
        half = torch.where(second_order, 0.5 / r, 0.0)
        weight = alpha_t - sigma_t * alpha_s / sigma_s
        x_next = torch.addcmul((sigma_t / sigma_s) * x, weight * (1.0 + half), prediction.x0)
        x_next = torch.addcmul(x_next, -weight * half, state["x0_prev"])
        moving = row.moving
        state["x0_prev"] = prediction.x0 if row.all_moving else torch.where(moving, prediction.x0, state["x0_prev"])
        state["lam_prev"] = torch.where(moving, lam_s.expand_as(state["lam_prev"]), state["lam_prev"])
        return x_next


def _velocity(schedule: Schedule, k: Tensor, x0: Tensor, eps: Tensor, moving: Tensor) -> Tensor:
    """dx/dk at level k; zero for tokens that do not move (where it may be undefined, e.g. k = 0)."""
    d_alpha, d_sigma = schedule.derivatives(k)
    velocity = d_alpha[..., None] * x0 + d_sigma[..., None] * eps
    return torch.where(moving, velocity, torch.zeros_like(velocity))


class Euler(Solver):
    """Euler step of dx/dk = alpha'(k) x0_hat + sigma'(k) eps_hat (the flow-matching velocity)."""

    name = "euler"

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        prediction = denoise(x, row.k_from, cond)
        dk = (row.k_to - row.k_from)[..., None]
        return x + dk * _velocity(schedule, row.k_from, prediction.x0, prediction.eps, dk != 0)


class Heun(Solver):
    """Heun's second-order step (trapezoid on the velocity); Euler where a token lands on level 0, as in
    Karras et al. (2022), since the velocity there is undefined for some schedules. Two evaluations per
    step, one on a step where every moving token lands on level 0."""

    name = "heun"
    evaluations_per_step = 2

    def evaluations(self, row_moves: list[bool], row_lands_noisy: list[bool]) -> int:
        return sum((2 if noisy else 1) for moves, noisy in zip(row_moves, row_lands_noisy, strict=True) if moves)

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        prediction = denoise(x, row.k_from, cond)
        dk = (row.k_to - row.k_from)[..., None]
        velocity = _velocity(schedule, row.k_from, prediction.x0, prediction.eps, dk != 0)
        x_euler = x + dk * velocity
        if not row.any_lands_noisy:
            return x_euler
        second = (row.k_to > 0)[..., None] & (dk != 0)
        probe = denoise(x_euler, row.k_to, cond)
        velocity_end = _velocity(schedule, row.k_to, probe.x0, probe.eps, second)
        return torch.where(second, x + dk * 0.5 * (velocity + velocity_end), x_euler)


class Consistency(Solver):
    """Multistep consistency sampling (Song et al., 2023, Algorithm 1), per token: the x0 prediction at the
    current levels, re-noised to the next ones, ``x_t = alpha_t x0 + sigma_t (sqrt(1 - eta^2) eps + eta z)``
    with fresh noise z. With a distilled model the prediction is a sample, so fresh noise (``eta`` 1, the
    default) keeps every step's state distributed as the plan's levels require; ``eta`` 0 is DDIM's step."""

    name = "consistency"

    def __init__(self, eta: float = 1.0) -> None:
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"the consistency solver's eta must lie in [0, 1], got {eta}")
        self.eta = float(eta)
        self.deterministic = self.eta == 0.0

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        prediction = denoise(x, row.k_from, cond)
        alpha_t, sigma_t = token_coefficients(schedule, row.k_to)
        if not row.any_lands_noisy:
            return prediction.x0
        noise = _noise_like(x, generator) if self.eta > 0.0 else torch.zeros_like(x)
        if self.eta < 1.0:
            noise = math.sqrt(1.0 - self.eta**2) * prediction.eps + self.eta * noise
        return alpha_t * prediction.x0 + sigma_t * noise


def _dpmpp3m(**options: Any) -> Solver:
    from trajdiff.core.multistep import DPMSolverPP3M  # the higher-order solvers build on Solver above

    return DPMSolverPP3M(**options)


def _unipc(**options: Any) -> Solver:
    from trajdiff.core.multistep import UniPC

    return UniPC(**options)


SOLVERS: dict[str, Callable[..., Solver]] = {
    "ddpm": DDPM, "ddim": DDIM, "dpmpp2m": DPMSolverPP2M, "euler": Euler, "heun": Heun,
    "dpmpp3m": _dpmpp3m, "unipc": _unipc, "consistency": Consistency,
}


def get_solver(solver: str | Solver, **options: Any) -> Solver:
    """A solver by name (``ddpm``, ``ddim``, ``dpmpp2m``, ``dpmpp3m``, ``euler``, ``heun``, ``unipc``,
    ``consistency``) with
    options (e.g. ``get_solver("ddim", eta=0.5)``, ``get_solver("unipc", order=2)``), or a `Solver` passed
    through."""
    if isinstance(solver, Solver):
        if options:
            raise ConfigError(f"options {sorted(options)} apply to a solver given by name, not to {solver!r}")
        return solver
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
    try:
        return SOLVERS[solver](**options)
    except TypeError as error:
        raise ConfigError(f"solver {solver!r} does not take the options {sorted(options)}") from error
