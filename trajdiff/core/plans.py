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
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trajdiff.errors import PlanError


def staggered(horizon: int, steps: int, delay: float = 0.0, chunk: int = 1, start: float = 1.0) -> Tensor:
    """The general staggered plan described in the module docstring.

    ``start`` (default 1) scales every level, for warm starts that begin from a partly noised
    sequence (e.g. 0.5 re-noises a previous plan halfway and denoises it in ``steps`` rows).
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
    levels = ((steps + groups[None, :] * delay - i) / steps).clamp(0.0, 1.0)
    plan = levels * start
    return plan


def full_sequence(horizon: int, steps: int, start: float = 1.0) -> Tensor:
    """Every token at the same level in every row: classic full-sequence diffusion."""
    return staggered(horizon, steps, delay=0.0, start=start)


def autoregressive(horizon: int, steps: int, chunk: int = 1) -> Tensor:
    """Chunks of ``chunk`` tokens, each denoised in ``steps`` rows after the previous one is clean."""
    return staggered(horizon, steps, delay=float(steps), chunk=chunk)


def pyramid(horizon: int, steps: int, uncertainty: float = 1.0, chunk: int = 1) -> Tensor:
    """Diffusion Forcing's pyramid: chunk g starts ``g * uncertainty`` rows after chunk 0."""
    return staggered(horizon, steps, delay=float(uncertainty), chunk=chunk)


def rolling(horizon: int, window: int, substeps: int = 1) -> Tensor:
    """Rolling Diffusion / TEDi: a window of ``window`` tokens on a staircase of levels; each row lowers
    every level by ``1 / (window * substeps)``; a token finishes every ``substeps`` rows."""
    if window < 1:
        raise PlanError(f"window must be >= 1, got {window}")
    return staggered(horizon, steps=window * substeps, delay=float(substeps))


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
