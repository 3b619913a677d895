"""Higher-order multistep solvers in data (x0) prediction, for general ``(alpha, sigma)`` and per-token
levels like every `solvers.Solver`, registered in `solvers.SOLVERS` as ``dpmpp3m`` and ``unipc``:

- `DPMSolverPP3M`: DPM-Solver++(3M) (Lu et al., 2022) with the Taylor weight on its second difference
  (the reference code's half weight leaves it second order; see the class);
- `UniPC`: UniP-p predictor plus UniC corrector (Zhao et al., 2023), bh2 or bh1, order 3 by default.

Both step in log-SNR ``lambda = log(alpha / sigma)``, exactly for the linear part, and keep per token the
x0 estimates and log-SNRs of its last steps (NaN = unknown), so a token's first steps, tokens that join
a stream (`Solver.shift_state`) and the final step onto sigma = 0 fall back to lower order.
`epsilon_scaling` is Ning et al.'s exposure-bias correction as a denoiser wrapper.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import Schedule, token_coefficients
from trajdiff.core.solvers import Row, Solver, State
from trajdiff.errors import ConfigError


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
    at its first step and onto sigma = 0. State: see `_DataMultistep`. ``order`` 2 is DPM-Solver++(2M),
    1 is DDIM.

    With r0 = h_0 / h, r1 = h_1 / h (earlier step sizes over this one) and the divided differences
    D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1) ~ h x0', D2 = (D1_0 - D1_1) / (r0 + r1) ~ h^2 x0'' / 2, the
    step is ``x_t = (sigma_t / sigma_s) x + alpha_t (1 - e^{-h}) x0 + alpha_t h phi_2(-h) D1
    + 2 alpha_t h phi_3(-h) D2`` (the Taylor expansion of the exact integral; it equals UniP-3). The
    reference code (dpm-solver's multistep_dpm_solver_third_update, diffusers' DPMSolverMultistepScheduler
    with solver_order=3, k-diffusion's dpmpp_3m_sde) weights D2 by alpha_t h phi_3(-h), half of that,
    which leaves a local error of order h^3: the method is then second order (tests/test_solvers.py
    measures both)."""

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
