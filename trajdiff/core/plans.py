"""Noise-level plans: tensors ``[S+1, T]`` of per-token levels that the sampler walks row by row.

Row 0 is where sampling starts, row S where it ends; every column is non-increasing. All the
named plans are one family, the *staggered* plan: tokens are grouped into chunks, chunk ``g``
starts denoising ``g * delay`` rows after chunk 0 and takes ``steps`` rows to go from 1 to 0:

    level[i, t] = clip((steps + g(t) * delay - i) / steps, 0, 1),   g(t) = t // chunk

- full sequence (classic diffusion, Diffuser): ``delay = 0``;
- autoregressive: ``delay = steps``, one chunk finishes before the next starts;
- pyramid (Diffusion Forcing): ``0 < delay < steps``, the near future is cleaner than the far one;
- rolling window (Rolling Diffusion, TEDi): ``steps = window * substeps``, ``delay = substeps``;
  once running, every row lowers each level in the window by ``1 / (window * substeps)`` and a
  head token finishes every ``substeps`` rows.

``with_context`` holds observed tokens (history, start state, goal) at level 0 in every row.

Spacing. Every plan above is written in a *progress* ``u`` in [0, 1] (``u = 1`` where a token starts,
0 where it is clean), ``steps`` rows apart. ``spacing`` maps progress to levels, the same map for every
token, so staggered plans keep their shape:

- ``uniform`` (default): level = ``start * u``, uniform in k ("time-uniform"; its log-SNR spacing
  then depends on the schedule, and the last step leaves from k = 1/steps);
- ``logsnr``: equal steps in log-SNR ``lambda = log(alpha / sigma)`` (DPM-Solver, Lu et al. 2022), the
  variable in which the exponential-integrator solvers (``dpmpp2m``, ``dpmpp3m``, ``unipc``) are exact
  for the linear part, so their multistep extrapolations always see step ratio 1. The steps cover the
  band ``|lambda| <= L(steps)``, ``L = 3 log(steps) / log(10)`` (so +-3 at 10 steps: sigma / alpha from 20
  down to 0.05), entered by one step from the start level and left by one step to level 0; where the
  start is already inside the band, the steps run evenly from it. The band is the same for every
  schedule (it is a property of data normalized to unit variance, not of the schedule): at 10 steps it
  spans the central 94% of the log-SNRs a model trained with uniform levels under the cosine schedule
  sees, where a unit-variance signal goes from 1/400 of the variance to 20 times the noise; it widens
  like log(steps), so the plan converges to the exact flow as the steps grow (the final step's error
  shrinks like sigma^2 at the band's clean end). Needs the schedule;
- ``karras``: EDM's sigmas (Karras et al., 2022): sigma / alpha = (s_max^(1/7) + i / (steps - 1)
  (s_min^(1/7) - s_max^(1/7)))^7 from s_max = 80 down to s_min = 0.002, the first row at the start
  level, then level 0. Needs the schedule. Under the ``edm`` schedule with its defaults, ``uniform``
  is this spacing with one step fewer before the jump to 0.

`spacing_levels` gives a spacing's levels for one token.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trajdiff.core.schedules import Schedule
from trajdiff.errors import PlanError

SPACINGS = ("uniform", "logsnr", "karras")
LOGSNR_HALF_WIDTH_AT_10 = 3.0
"""Half-width of the ``logsnr`` band in lambda = log(alpha / sigma) at 10 steps; it grows like log(steps)."""
KARRAS = {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}
"""EDM's sampling sigmas (sigma / alpha for a variance-preserving schedule)."""
LEVEL_FLOOR = 1e-9
"""The smallest non-zero level a spaced plan uses (bounds lambda where a schedule's k -> 0 is unbounded)."""


def staggered(horizon: int, steps: int, delay: float = 0.0, chunk: int = 1, start: float = 1.0, *,
              spacing: str = "uniform", schedule: Schedule | None = None) -> Tensor:
    """The general staggered plan described in the module docstring.

    ``start`` (default 1) is the level every token starts from, for warm starts that begin from a partly
    noised sequence (e.g. 0.5 re-noises a previous plan halfway and denoises it in ``steps`` rows).
    ``spacing`` (``uniform``, ``logsnr``, ``karras``; see the module docstring) maps each token's
    progress to its level; ``logsnr`` and ``karras`` need the ``schedule``.
    """
    if horizon < 1:
        raise PlanError(f"a plan needs at least one token, got horizon={horizon}")
    if steps < 1:
        raise PlanError(f"a plan needs at least one step, got steps={steps}")
    if delay < 0:
        raise PlanError(f"delay must be >= 0, got {delay}")
    if chunk < 1:
        raise PlanError(f"chunk must be >= 1, got {chunk}")
    if not 0.0 < start <= 1.0:
        raise PlanError(f"start level must be in (0, 1], got {start}")
    groups = torch.arange(horizon, dtype=torch.float64) // chunk
    rows = steps + math.ceil(float(groups[-1]) * delay - 1e-9)
    i = torch.arange(rows + 1, dtype=torch.float64)[:, None]
    if spacing == "uniform":
        levels = ((steps + groups[None, :] * delay - i) / steps).clamp(0.0, 1.0)
        plan = levels * start
        return plan
    position = (steps + groups[None, :] * delay - i).clamp(0.0, float(steps))  # rows left, may be fractional
    return _warp(position, spacing_levels(steps, spacing, schedule, start=start))


def _warp(position: Tensor, grid: Tensor) -> Tensor:
    """Levels at fractional grid positions (``position`` in [0, steps], ``grid[j]`` = the level ``j`` rows
    before the end), linear between grid points: integer positions land exactly on the grid."""
    steps = grid.shape[0] - 1
    low = position.floor().clamp(0, steps).long()
    high = (low + 1).clamp(max=steps)
    frac = position - low.to(position.dtype)
    return torch.where(frac > 0, grid[low] + frac * (grid[high] - grid[low]), grid[low])


def spacing_levels(steps: int, spacing: str = "uniform", schedule: Schedule | None = None, *, start: float = 1.0,
                   band: tuple[float, float] | None = None) -> Tensor:
    """The levels one token walks, ``[steps + 1]``: ``start``, then ``steps - 1`` levels spaced by
    ``spacing``, then 0, returned from the end (index ``j`` = ``j`` rows before the end: index 0 is
    level 0, index ``steps`` is ``start``), float64.

    ``band`` (``logsnr`` only) replaces the default band ``(lambda_low, lambda_high)`` of log(alpha /
    sigma), e.g. ``(-log 80, -log 0.002)`` for EDM's range of sigmas.
    """
    if steps < 1:
        raise PlanError(f"a plan needs at least one step, got steps={steps}")
    if not 0.0 < start <= 1.0:
        raise PlanError(f"start level must be in (0, 1], got {start}")
    if spacing not in SPACINGS:
        raise PlanError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    j = torch.arange(steps + 1, dtype=torch.float64)
    if spacing == "uniform" or steps == 1:
        return j / steps * start
    if schedule is None:
        raise PlanError(f"the {spacing} spacing places levels by the schedule's log-SNR: pass schedule=")
    top = _lam(schedule, torch.tensor(start, dtype=torch.float64))
    ceiling = _lam(schedule, torch.tensor(LEVEL_FLOOR, dtype=torch.float64))
    inner = torch.arange(1, steps, dtype=torch.float64)  # rows before the end, between start and 0
    if spacing == "logsnr":
        if band is None:
            half = LOGSNR_HALF_WIDTH_AT_10 * math.log(steps) / math.log(10.0)
            band = (-half, half)
        low, high = (float(v) for v in band)
        if not low < high:
            raise PlanError(f"a log-SNR band needs low < high, got {band}")
        if float(top) >= high:  # a warm start cleaner than the band: a band as wide, from the start
            low, high = float(top), float(top) + (high - low)
        high = min(high, float(ceiling))
        if float(top) >= low:  # the start is inside the band: even steps from it
            lam = high + (inner - 1) / max(steps - 1, 1) * (float(top) - high)
        elif steps > 2:
            lam = high + (inner - 1) / (steps - 2) * (low - high)
        else:
            lam = torch.full_like(inner, 0.5 * (low + high))
    else:  # karras
        lo_sigma = max(KARRAS["sigma_min"], math.exp(-float(ceiling)))
        hi_sigma = min(KARRAS["sigma_max"], math.exp(-float(top)))
        rho = KARRAS["rho"]
        # S levels from sigma_max down to sigma_min (the first replaced by the start), then 0.
        i = steps - inner  # 1 .. steps - 1, counted from the start
        fraction = i / max(steps - 1, 1)
        root = hi_sigma ** (1 / rho) + fraction * (lo_sigma ** (1 / rho) - hi_sigma ** (1 / rho))
        lam = -rho * torch.log(root)
    levels = _level_of_lam(schedule, lam).clamp(LEVEL_FLOOR, start)
    grid = torch.cat([torch.zeros(1, dtype=torch.float64), levels, torch.tensor([start], dtype=torch.float64)])
    # Strictly decreasing from start to 0 (a level repeated would be a step that moves nothing).
    if bool((grid[1:] <= grid[:-1]).any()):
        raise PlanError(f"the {spacing} spacing with {steps} steps from level {start} repeats a level under "
                        f"{type(schedule).__name__}; use fewer steps or the uniform spacing")
    return grid


def _lam(schedule: Schedule, k: Tensor) -> Tensor:
    alpha, sigma = schedule.alpha_sigma(k)
    return torch.log(alpha) - torch.log(sigma)


def _level_of_lam(schedule: Schedule, lam: Tensor) -> Tensor:
    """The level k in [0, 1] with log(alpha / sigma) = lam (bisection; lambda decreases with k), float64."""
    low = torch.zeros_like(lam)
    high = torch.ones_like(lam)
    for _ in range(64):
        mid = 0.5 * (low + high)
        cleaner = _lam(schedule, mid) > lam  # mid is cleaner than the target: move up
        low = torch.where(cleaner, mid, low)
        high = torch.where(cleaner, high, mid)
    return 0.5 * (low + high)


def full_sequence(horizon: int, steps: int, start: float = 1.0, *, spacing: str = "uniform",
                  schedule: Schedule | None = None) -> Tensor:
    """Every token at the same level in every row: classic full-sequence diffusion."""
    return staggered(horizon, steps, delay=0.0, start=start, spacing=spacing, schedule=schedule)


def autoregressive(horizon: int, steps: int, chunk: int = 1, *, spacing: str = "uniform",
                   schedule: Schedule | None = None) -> Tensor:
    """Chunks of ``chunk`` tokens, each denoised in ``steps`` rows after the previous one is clean."""
    return staggered(horizon, steps, delay=float(steps), chunk=chunk, spacing=spacing, schedule=schedule)


def pyramid(horizon: int, steps: int, uncertainty: float = 1.0, chunk: int = 1, *, spacing: str = "uniform",
            schedule: Schedule | None = None) -> Tensor:
    """Diffusion Forcing's pyramid: chunk g starts ``g * uncertainty`` rows after chunk 0."""
    return staggered(horizon, steps, delay=float(uncertainty), chunk=chunk, spacing=spacing, schedule=schedule)


def rolling(horizon: int, window: int, substeps: int = 1, *, spacing: str = "uniform",
            schedule: Schedule | None = None) -> Tensor:
    """Rolling Diffusion / TEDi: a window of ``window`` tokens on a staircase of levels; each row moves
    every token one ``1 / (window * substeps)`` of its way (by ``spacing``); a token finishes every
    ``substeps`` rows."""
    if window < 1:
        raise PlanError(f"window must be >= 1, got {window}")
    return staggered(horizon, steps=window * substeps, delay=float(substeps), spacing=spacing, schedule=schedule)


def staircase(window: int, offset: float = 1.0) -> Tensor:
    """Levels ``clip((j + offset) / window, 0, 1)`` for window positions j = 0..window-1.

    ``offset = 1`` is the rolling steady state (head at 1/window, tail at 1); ``offset = window``
    is the start, every token pure noise. Used by `samplers.stream` and by rolling training.
    """
    j = torch.arange(window, dtype=torch.float64)
    return ((j + offset) / window).clamp(0.0, 1.0)


def with_context(plan: Tensor, context: Tensor | list[int] | slice) -> Tensor:
    """Holds the given tokens at level 0 in every row (observed history, start state, goal).

    ``context`` is a boolean mask ``[T]``, a list of token indices, or a slice.
    """
    validate_plan(plan)
    horizon = plan.shape[1]
    if isinstance(context, Tensor) and context.dtype == torch.bool:
        if context.shape != (horizon,):
            raise PlanError(f"context mask has shape {tuple(context.shape)}, expected ({horizon},)")
        mask = context
    else:
        mask = torch.zeros(horizon, dtype=torch.bool)
        try:
            mask[context] = True
        except IndexError:
            raise PlanError(f"context tokens {context} do not fit a plan over {horizon} tokens") from None
    return torch.where(mask[None, :], torch.zeros_like(plan), plan)


def validate_plan(plan: Tensor, horizon: int | None = None) -> Tensor:
    """Checks shape ``[S+1, T]``, levels in [0, 1], non-increasing columns, and the horizon if given."""
    if not isinstance(plan, Tensor) or plan.dim() != 2 or plan.shape[0] < 2:
        shape = tuple(plan.shape) if isinstance(plan, Tensor) else type(plan).__name__
        raise PlanError(f"a plan is a tensor [S+1, T] with at least 2 rows, got {shape}")
    if not plan.is_floating_point():
        raise PlanError(f"plan levels must be floating point, got {plan.dtype}")
    if horizon is not None and plan.shape[1] != horizon:
        raise PlanError(
            f"the plan covers {plan.shape[1]} tokens but the sequence has {horizon}; "
            f"build the plan with horizon={horizon}"
        )
    if bool(torch.isnan(plan).any()) or bool((plan < 0).any()) or bool((plan > 1).any()):
        raise PlanError("plan levels must lie in [0, 1] (0 = clean, 1 = pure noise)")
    rising = plan[1:] > plan[:-1]
    if bool(rising.any()):
        row, token = (int(v) for v in rising.nonzero()[0])
        raise PlanError(
            f"plan levels must not increase from one row to the next: token {token} rises "
            f"from {float(plan[row, token]):.4f} to {float(plan[row + 1, token]):.4f} at row {row + 1}"
        )
    return plan
