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
  evaluation per step.

``dpmpp3m`` and ``unipc`` take ``eps_scale``, epsilon scaling against exposure bias (Ning et al., 2023);
`epsilon_scaling` wraps a denoiser the same way for any solver. The multistep solvers are most
accurate on plans spaced evenly in log-SNR (`plans` ``spacing="logsnr"``).

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
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import Schedule, token_coefficients
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


def _noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


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
        data = prediction.x0
        data = torch.where(second_order, data + (data - state["x0_prev"]) / (2.0 * r), data)
        # x_t = (sigma_t / sigma_s) x + alpha_t (1 - e^{-h}) D, with e^{-h} = sigma_t alpha_s / (alpha_t sigma_s)
        # written so that sigma_t = 0 (lambda_t = inf) and alpha_s = 0 (lambda_s = -inf) stay finite.
        x_next = (sigma_t / sigma_s) * x + (alpha_t - sigma_t * alpha_s / sigma_s) * data
        moving = row.moving
        state["x0_prev"] = torch.where(moving, prediction.x0, state["x0_prev"])
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


def epsilon_scaling(denoise: Denoiser, schedule: Schedule, scale: float) -> Denoiser:
    """A denoiser whose predicted noise is divided by ``scale``, with the x0 prediction moved to match
    (``x = alpha x0 + sigma eps`` still holds): epsilon scaling against exposure bias (Ning et al., 2023:
    ADM-ES, EDM-ES), here with one constant factor at every level. ``x0 = x0 + (sigma / alpha) (1 - 1/scale)
    eps``; where alpha = 0 (pure noise under the flow schedule) x0 is left as predicted. Any solver can
    run on the result; ``dpmpp3m`` and ``unipc`` take it as their ``eps_scale`` option."""
    if not float(scale) > 0.0:
        raise ConfigError(f"epsilon scaling needs a factor > 0, got {scale}")
    factor = 1.0 - 1.0 / float(scale)

    def scaled(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
        prediction = denoise(x, k, cond)
        alpha, sigma = token_coefficients(schedule, k)
        positive = alpha > 0
        shift = sigma / torch.where(positive, alpha, torch.ones_like(alpha)) * factor
        x0 = torch.where(positive, prediction.x0 + shift * prediction.eps, prediction.x0)
        return Prediction(x0, prediction.eps / float(scale))

    return scaled


def _phi(z: Tensor, count: int) -> list[Tensor]:
    """phi_1(z) .. phi_count(z) of exponential integrators, phi_k(z) = sum_n z^n / (n + k)!, for z = -h <= 0
    (h = inf allowed). A power series where |z| < 1, where the recursion phi_{k+1} = (phi_k - 1/k!) / z
    would cancel; the recursion elsewhere."""
    small = z.abs() < 1.0
    zs = torch.where(small, z, torch.zeros_like(z))
    zr = torch.where(small, -torch.ones_like(z), z)
    out = []
    phi_r = torch.expm1(zr) / zr
    factorial = 1.0
    for k in range(1, count + 1):
        series = torch.zeros_like(z)
        term_factorial = float(math.factorial(k))
        power = torch.ones_like(z)
        for n in range(18):
            series = series + power / term_factorial
            power = power * zs
            term_factorial *= n + k + 1
        out.append(torch.where(small, series, phi_r))
        phi_r = (phi_r - 1.0 / factorial) / zr
        factorial *= k + 1
    return out


class _DataMultistep(Solver):
    """Shared by the multistep solvers in data (x0) prediction: each token keeps its last ``order - 1``
    x0 estimates ``x0_prev`` ``[B, T, order - 1, D]`` (most recent first) and their log-SNRs
    ``lam_prev`` ``[B, T, order - 1]`` (NaN = unknown: before a token's first steps, or after
    `shift_state` brought it in). A token steps with the highest order its own history allows, and
    first order onto sigma = 0 (the step size in log-SNR is infinite there).

    ``eps_scale`` (default 1, off): epsilon scaling against exposure bias (Ning et al., 2023, ADM-ES /
    EDM-ES), the predicted noise divided by ``eps_scale`` at every level (see `epsilon_scaling`)."""

    max_order: ClassVar[int] = 3

    def __init__(self, order: int = 3, eps_scale: float = 1.0) -> None:
        if int(order) != order or not 1 <= int(order) <= self.max_order:
            raise ConfigError(f"{self.name}'s order must be 1, 2 or 3, got {order}")
        if not float(eps_scale) > 0.0:
            raise ConfigError(f"{self.name}'s eps_scale must be > 0, got {eps_scale}")
        self.order = int(order)
        self.eps_scale = float(eps_scale)

    def init_state(self, x: Tensor) -> State:
        batch, horizon, dim = x.shape
        keep = max(self.order - 1, 1)
        return {"x0_prev": torch.zeros(batch, horizon, keep, dim, dtype=x.dtype, device=x.device),
                "lam_prev": torch.full((batch, horizon, keep), float("nan"), dtype=x.dtype, device=x.device)}

    def _predict(self, denoise: Denoiser, x: Tensor, k: Tensor, cond: Tensor | None, schedule: Schedule) -> Tensor:
        if self.eps_scale != 1.0:
            denoise = epsilon_scaling(denoise, schedule, self.eps_scale)
        return denoise(x, k, cond).x0

    def _history(self, state: State, x: Tensor, lam_s: Tensor, h: Tensor, sigma_t: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Per token: whether a second- and third-order step is possible, the previous two x0 estimates
        (zero where unknown) and their log-SNRs (finite placeholders where unknown)."""
        if not state:
            state.update(self.init_state(x))
        lam_prev = state["lam_prev"]
        lam1 = lam_prev[..., 0:1]
        lam2 = lam_prev[..., 1:2] if lam_prev.shape[-1] > 1 else torch.full_like(lam1, float("nan"))
        step_ok = torch.isfinite(h) & (h > 0) & (sigma_t > 0)
        use2 = step_ok & torch.isfinite(lam1) & torch.isfinite(lam_s) & (lam1 < lam_s)
        if self.order < 2:
            use2 = torch.zeros_like(use2)
        use3 = use2 & torch.isfinite(lam2) & (lam2 < lam1)
        if self.order < 3:
            use3 = torch.zeros_like(use3)
        x0_prev = state["x0_prev"]
        m1 = torch.where(use2, x0_prev[..., 0, :], torch.zeros_like(x))
        m2 = torch.zeros_like(x)
        if x0_prev.shape[-2] > 1:
            m2 = torch.where(use3, x0_prev[..., 1, :], m2)
        lam1 = torch.where(use2, lam1, lam_s - 1.0)
        lam2 = torch.where(use3, lam2, lam_s - 2.0)
        return use2, use3, m1, m2, lam1, lam2

    def _remember(self, state: State, moving: Tensor, x0: Tensor, lam_s: Tensor) -> None:
        x0_prev, lam_prev = state["x0_prev"], state["lam_prev"]
        new_x0 = torch.cat([x0[..., None, :], x0_prev[..., :-1, :]], dim=-2)
        new_lam = torch.cat([lam_s.expand(*lam_prev.shape[:2], 1), lam_prev[..., :-1]], dim=-1)
        state["x0_prev"] = torch.where(moving[..., None], new_x0, x0_prev)
        state["lam_prev"] = torch.where(moving, new_lam, lam_prev)

    @staticmethod
    def _levels(schedule: Schedule, row: Row) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        alpha_s, sigma_s = token_coefficients(schedule, row.k_from)
        alpha_t, sigma_t = token_coefficients(schedule, row.k_to)
        lam_s = torch.log(alpha_s) - torch.log(sigma_s)
        h = (torch.log(alpha_t) - torch.log(sigma_t)) - lam_s
        return alpha_s, sigma_s, alpha_t, sigma_t, lam_s, h


class DPMSolverPP3M(_DataMultistep):
    """DPM-Solver++(3M) (Lu et al., 2022), multistep in log-SNR with per-token step sizes: third order
    once a token has two earlier x0 estimates, second order (2M's midpoint form) with one, first order
    at its first step and onto sigma = 0. State: see `_DataMultistep`. ``order`` 2 is DPM-Solver++(2M)."""

    name = "dpmpp3m"

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        alpha_s, sigma_s, alpha_t, sigma_t, lam_s, h = self._levels(schedule, row)
        m0 = self._predict(denoise, x, row.k_from, cond, schedule)
        use2, use3, m1, m2, lam1, lam2 = self._history(state, x, lam_s, h, sigma_t)
        hs = torch.where(use2, h, torch.ones_like(h))
        r0 = (lam_s - lam1) / hs
        r1 = (lam1 - lam2) / hs
        d1_0 = torch.where(use2, (m0 - m1) / r0, torch.zeros_like(m0))
        d1_1 = torch.where(use3, (m1 - m2) / r1, torch.zeros_like(m0))
        # x_t = (sigma_t / sigma_s) x + alpha_t (1 - e^{-h}) m0 + corrections, with alpha_t (1 - e^{-h})
        # written so that sigma_t = 0 and alpha_s = 0 stay finite.
        base = alpha_t - sigma_t * alpha_s / sigma_s
        x_next = (sigma_t / sigma_s) * x + base * m0
        second = base * 0.5 * d1_0
        _, phi2, phi3 = _phi(-hs, 3)
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        third = alpha_t * hs * (phi2 * d1 + 2.0 * phi3 * d2)
        x_next = x_next + torch.where(use3, third, torch.where(use2, second, torch.zeros_like(second)))
        self._remember(state, row.moving, m0, lam_s)
        return x_next


class UniPC(_DataMultistep):
    """UniPC (Zhao et al., 2023): the unified predictor UniP-p and corrector UniC in data prediction,
    ``variant`` ``bh2`` (B(h) = e^{-h} - 1, the paper's choice for few steps) or ``bh1`` (B(h) = -h).

    Each step evaluates the network once, at the predicted point. That evaluation first corrects the
    point it was made at (UniC, one order higher than the predictor that produced it), then drives the
    next prediction from the corrected point, as in the paper: the corrector costs no evaluation. The
    final step onto sigma = 0 is first order and has no corrector (no evaluation follows it).
    ``order`` is the predictor's (3: UniPC-3 at most; a token's first steps use what history it has).
    ``corrector=False`` gives UniP alone.

    State (besides `_DataMultistep`'s): the pending correction of each token's last step, ``corr``
    ``[B, T, D]`` plus ``corr_gain`` ``[B, T, 1]`` times (new x0 estimate - last x0 estimate); NaN = none.
    """

    name = "unipc"

    def __init__(self, order: int = 3, eps_scale: float = 1.0, variant: str = "bh2", corrector: bool = True) -> None:
        super().__init__(order, eps_scale)
        if variant not in ("bh1", "bh2"):
            raise ConfigError(f"UniPC's variant is 'bh1' or 'bh2', got {variant!r}")
        self.variant = variant
        self.corrector = bool(corrector)

    def init_state(self, x: Tensor) -> State:
        state = super().init_state(x)
        state["corr"] = torch.zeros_like(x)
        state["corr_gain"] = torch.full((x.shape[0], x.shape[1], 1), float("nan"), dtype=x.dtype, device=x.device)
        return state

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | None) -> Tensor:
        alpha_s, sigma_s, alpha_t, sigma_t, lam_s, h = self._levels(schedule, row)
        m0 = self._predict(denoise, x, row.k_from, cond, schedule)
        if not state:
            state.update(self.init_state(x))
        if self.corrector:
            # UniC for the step that brought each token here, with the evaluation just made.
            pending = torch.isfinite(state["corr_gain"]) & row.moving
            gain = torch.where(pending, state["corr_gain"], torch.zeros_like(state["corr_gain"]))
            last = state["x0_prev"][..., 0, :]
            delta = state["corr"] + gain * (m0 - last)
            x = torch.where(pending, x + delta, x)
        use2, use3, m1, m2, lam1, lam2 = self._history(state, x, lam_s, h, sigma_t)
        hs = torch.where(use2, h, torch.ones_like(h))
        r1 = (lam1 - lam_s) / hs  # negative: earlier estimates, in units of this step
        r2 = (lam2 - lam_s) / hs
        d1 = torch.where(use2, (m1 - m0) / r1, torch.zeros_like(m0))
        d2 = torch.where(use3, (m2 - m0) / r2, torch.zeros_like(m0))
        # The order-p coefficients rho solve sum_k rho_k r_k^(i-1) = b_i (i = 1..p; r = 1 for the new
        # estimate), b_i = i! h phi_{i+1}(-h) / (-B(h)): bh2 b_i = i! phi_{i+1} / phi_1, bh1 b_i = i! phi_{i+1}.
        # Corrections enter as -alpha_t B(h) sum_k rho_k D_k.
        phi1, phi2, phi3, phi4 = _phi(-hs, 4)
        # alpha_t (1 - e^{-h}), written so that sigma_t = 0 and alpha_s = 0 stay finite.
        base = alpha_t - sigma_t * alpha_s / sigma_s
        if self.variant == "bh2":
            b1, b2, b3 = phi2 / phi1, 2.0 * phi3 / phi1, 6.0 * phi4 / phi1
            weight = base  # -alpha_t B(h)
        else:
            b1, b2, b3 = phi2, 2.0 * phi3, 6.0 * phi4
            finite = torch.isfinite(h)  # B(h) = -h is unbounded onto sigma = 0 or off alpha = 0: bh2's there
            weight = torch.where(finite, alpha_t * torch.where(finite, h, torch.ones_like(h)), base)
        x_plain = (sigma_t / sigma_s) * x + base * m0
        # Predictor: order 2 uses rho = 1/2 (the paper's and diffusers' simplification), order 3 solves.
        rp1 = torch.where(use3, (b1 * r2 - b2) / (r2 - r1), torch.full_like(r1, 0.5))
        rp2 = torch.where(use3, (b2 - b1 * r1) / (r2 - r1), torch.zeros_like(r1))
        rp1 = torch.where(use2, rp1, torch.zeros_like(r1))
        predicted = torch.where(use2, weight * (rp1 * d1 + rp2 * d2), torch.zeros_like(x))
        x_next = x_plain + predicted
        if self.corrector:
            # Corrector coefficients for nodes (r1, r2, 1), (r1, 1) or (1): Lagrange form of the solve.
            d3_1 = (r1 - r2) * (r1 - 1.0)
            d3_2 = (r2 - r1) * (r2 - 1.0)
            d3_t = (1.0 - r1) * (1.0 - r2)
            rc1_3 = (r2 * b1 - (r2 + 1.0) * b2 + b3) / d3_1
            rc2_3 = (r1 * b1 - (r1 + 1.0) * b2 + b3) / d3_2
            rct_3 = (r1 * r2 * b1 - (r1 + r2) * b2 + b3) / d3_t
            rc1_2 = (b1 - b2) / (1.0 - r1)
            rct_2 = (b2 - r1 * b1) / (1.0 - r1)
            rc1 = torch.where(use3, rc1_3, torch.where(use2, rc1_2, torch.zeros_like(r1)))
            rc2 = torch.where(use3, rc2_3, torch.zeros_like(r1))
            rct = torch.where(use3, rct_3, torch.where(use2, rct_2, torch.full_like(r1, 0.5)))
            corr = torch.where(use2, weight * ((rc1 - rp1) * d1 + (rc2 - rp2) * d2), torch.zeros_like(x))
            gain = torch.where(sigma_t > 0, weight * rct, torch.full_like(rct, float("nan")))
            state["corr"] = torch.where(row.moving, corr, state["corr"])
            state["corr_gain"] = torch.where(row.moving, gain.expand_as(state["corr_gain"]), state["corr_gain"])
        self._remember(state, row.moving, m0, lam_s)
        return x_next


SOLVERS: dict[str, Callable[..., Solver]] = {
    "ddpm": DDPM, "ddim": DDIM, "dpmpp2m": DPMSolverPP2M, "euler": Euler, "heun": Heun,
    "dpmpp3m": DPMSolverPP3M, "unipc": UniPC,
}


def get_solver(solver: str | Solver, **options: Any) -> Solver:
    """A solver by name (``ddpm``, ``ddim``, ``dpmpp2m``, ``dpmpp3m``, ``euler``, ``heun``, ``unipc``) with
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
