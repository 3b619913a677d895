"""The one conditional sampler: where a plan meets what is known of a sequence.

Forecasting (history known), imputation (scattered cells known), planning (the present state and a
goal known), synthesis from a seed motion and the demo all describe what they know as `Known` and
call `sample_conditional`, which builds the plan (by name or as a tensor), the start state (observed
tokens exact, the rest noise, or a warm start re-noised), the guides (entries inpainted, then the
caller's), the noise (independent or antithetic pairs) and the batches, and runs the sampler loop.

Unknown entries of ``Known.values`` never reach the sampler unless they are a warm start: whatever a
caller puts there (zeros, a repeated last row) gives the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trajdiff.core import plans as plan_lib
from trajdiff.core.denoiser import Denoiser
from trajdiff.core.guidance import Inpaint
from trajdiff.core.samplers import Guide, antithetic_noise, check_sequences, initial_state, plan_evaluations, sample
from trajdiff.core.schedules import Schedule
from trajdiff.core.solvers import Solver, get_solver
from trajdiff.core.streams import Streams
from trajdiff.errors import ConfigError, ShapeError

GuideFactory = Callable[[slice, int], Sequence[Guide]]
"""Guides for the contexts ``lo:hi`` of one batch, each repeated ``samples`` times (costs bound to a batch)."""


@dataclass(frozen=True)
class Known:
    """What is known of N sequences of T tokens with D features.

    ``values`` ``[N, T, D]``: the known values (anything finite elsewhere); ``tokens`` ``[T]`` bool:
    tokens observed in every sequence, held at level 0 by the plan (history, a start state);
    ``entries`` ``[N, T, D]`` bool (optional): further observed entries, inpainted at every step
    (missing cells, a goal). ``warm`` ``[N, T, D]`` (optional): a previous sample to re-noise to the
    plan's start level instead of starting from noise (warm-started replanning)."""

    values: Tensor
    tokens: Tensor
    entries: Tensor | None = None
    warm: Tensor | None = None

    def __post_init__(self) -> None:
        check_sequences(self.values, "known values")
        n, t, d = self.values.shape
        if self.tokens.dtype != torch.bool or tuple(self.tokens.shape) != (t,):
            raise ShapeError(f"known tokens must be a boolean mask of shape ({t},), got {self.tokens.dtype} "
                             f"{tuple(self.tokens.shape)}")
        if self.entries is not None and (self.entries.dtype != torch.bool or tuple(self.entries.shape) != (n, t, d)):
            raise ShapeError(f"known entries must be a boolean mask of shape {(n, t, d)}, got "
                             f"{self.entries.dtype} {tuple(self.entries.shape)}")
        if self.warm is not None:
            check_sequences(self.warm, "warm start")
            if tuple(self.warm.shape) != (n, t, d):
                raise ShapeError(f"a warm start has shape {tuple(self.warm.shape)}, expected {(n, t, d)}")

    @classmethod
    def history(cls, values: Tensor, observed: int) -> Known:
        """The first ``observed`` tokens of every sequence known (forecasting)."""
        mask = torch.zeros(values.shape[1], dtype=torch.bool)
        mask[:observed] = True
        return cls(values, mask)


PLAN_NAMES = ("full", "autoregressive", "pyramid", "rolling")


def build_plan(
    plan: str | Tensor,
    observed: Tensor,
    nfe: int,
    *,
    solver: str | Solver = "dpmpp2m",
    guides: Sequence[Guide] = (),
    options: dict[str, Any] | None = None,
    schedule: Schedule | None = None,
) -> Tensor:
    """A plan ``[S+1, T]`` over the tokens not in ``observed`` (held at level 0), by name or as given.

    By name, the plan takes the most denoising steps whose network evaluations (with ``solver`` and
    ``guides``) stay within ``nfe``. Names and their ``options``: ``full`` (every unknown token at one
    level); ``autoregressive`` (``chunk`` tokens at a time, each chunk finished before the next starts);
    ``pyramid`` (chunk g starts ``delay`` rows after chunk g-1; default a quarter of the steps, so the
    near future is cleaner than the far one: Diffusion Forcing); ``rolling`` (a staircase over ``window``
    tokens, default half the unknown tokens: Rolling Diffusion). ``start`` (every name, default 1)
    begins from a partly noised warm start. ``spacing`` (every name, default ``uniform``; ``logsnr`` or
    ``karras`` need ``schedule``) places each token's levels (`plans` module docstring).
    """
    options = dict(options or {})
    horizon = observed.shape[0]
    if isinstance(plan, Tensor):
        if options:
            raise ConfigError(f"plan options {sorted(options)} apply to a plan given by name")
        return plan_lib.with_context(plan_lib.validate_plan(plan, horizon=horizon), observed)
    if plan not in PLAN_NAMES:
        raise ConfigError(f"unknown plan {plan!r}; choose one of {', '.join(PLAN_NAMES)}")
    if nfe < 1:
        raise ConfigError(f"nfe (network evaluations) must be >= 1, got {nfe}")
    unknown = int((~observed).sum())
    if unknown == 0:
        raise ConfigError("every token is known: there is nothing to sample")
    make = _plan_family(plan, unknown, options, schedule)

    def placed(steps: int) -> Tensor:
        inner = make(steps)
        full = torch.zeros(inner.shape[0], horizon, dtype=inner.dtype)
        full[:, ~observed] = inner
        return full

    per_step = get_solver(solver).evaluations_per_step
    steps = max(1, nfe // per_step + 1)
    while steps >= 1:
        candidate = placed(steps)
        if plan_evaluations(candidate, solver, guides) <= nfe:
            return candidate
        steps -= 1
    least = plan_evaluations(placed(1), solver, guides)
    raise ConfigError(f"the {plan} plan over {unknown} unknown tokens needs at least {least} network evaluations "
                      f"with solver {get_solver(solver).name}; got nfe={nfe}: raise nfe or use larger chunks")


def _plan_family(name: str, unknown: int, options: dict[str, Any], schedule: Schedule | None
                 ) -> Callable[[int], Tensor]:
    start = _plan_number(options, "start", 1.0)
    chunk = _plan_number(options, "chunk", 1, whole=True)
    if chunk < 1:
        raise ConfigError(f"plan option chunk must be >= 1, got {chunk}")
    spacing = str(options.pop("spacing", "uniform"))
    if spacing not in plan_lib.SPACINGS:
        raise ConfigError(f"plan option spacing must be one of {', '.join(plan_lib.SPACINGS)}, got {spacing!r}")
    if spacing != "uniform" and schedule is None:
        raise ConfigError(f"plan option spacing={spacing} places levels by the model's schedule: pass schedule=")
    spaced = {"spacing": spacing, "schedule": schedule}
    if name == "full":
        make = lambda steps: plan_lib.full_sequence(unknown, steps, start=start, **spaced)  # noqa: E731
    elif name == "autoregressive":
        make = lambda steps: plan_lib.staggered(unknown, steps, float(steps), chunk, start, **spaced)  # noqa: E731
    elif name == "pyramid":
        delay = _plan_number(options, "delay", None)
        if delay is not None and float(delay) < 0:
            raise ConfigError(f"plan option delay must be >= 0, got {delay}")
        make = lambda steps: plan_lib.staggered(  # noqa: E731
            unknown, steps, float(delay) if delay is not None else max(steps / 4.0, 1.0), chunk, start, **spaced)
    else:
        window = _plan_number(options, "window", max(1, unknown // 2), whole=True)
        if window < 1:
            raise ConfigError(f"plan option window must be >= 1, got {window}")
        make = lambda substeps: plan_lib.staggered(  # noqa: E731
            unknown, window * substeps, float(substeps), 1, start, **spaced)
    if options:
        raise ConfigError(f"plan {name!r} does not take the options {sorted(options)}")
    return make


def _plan_number(options: dict[str, Any], key: str, default: Any, *, whole: bool = False) -> Any:
    """Plan option ``key`` (removed from ``options``) as a finite number, whole where ``whole``; else ``default``."""
    value = options.pop(key, default)
    if value is default:
        return value
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a finite number"
        example = {"start": "0.8", "delay": "2.5"}.get(key, "2")
        raise ConfigError(f"plan option {key} must be {kind}, got {value!r} (e.g. --plan-option {key}={example})")
    return int(number) if whole else number


def batch_slices(n: int, samples: int, batch_limit: int, groups: Sequence[Any] | None = None) -> list[slice]:
    """Contexts ``0..n`` cut into slices of about ``batch_limit // samples`` contexts; with ``groups``
    (one key per context, equal keys adjacent) a slice never splits a group."""
    per = max(1, batch_limit // max(samples, 1))
    if groups is None:
        return [slice(lo, min(lo + per, n)) for lo in range(0, n, per)]
    if len(groups) != n:
        raise ShapeError(f"got {len(groups)} group keys for {n} contexts; pass one per context")
    out, lo = [], 0
    while lo < n:
        hi = lo + 1
        while hi < n and (hi - lo < per or groups[hi] == groups[hi - 1]):
            hi += 1
        out.append(slice(lo, hi))
        lo = hi
    return out


def sample_conditional(
    denoise: Denoiser,
    schedule: Schedule,
    known: Known,
    *,
    samples: int = 1,
    plan: str | Tensor = "full",
    nfe: int = 20,
    solver: str | Solver = "dpmpp2m",
    plan_options: dict[str, Any] | None = None,
    guides: Sequence[Guide] | GuideFactory = (),
    cond: Tensor | None = None,
    antithetic: bool = False,
    generator: torch.Generator | Streams | None = None,
    step_generator: torch.Generator | Streams | None = None,
    batch_limit: int = 4096,
    slices: Sequence[slice] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``samples`` draws for each of the N sequences in ``known``: ``[samples, N, T, D]`` on ``device``.

    ``plan``: a name (see `build_plan`, with ``plan_options``) or a tensor ``[S+1, T]``; observed tokens
    are held at level 0 either way. ``nfe`` counts network evaluations (guides that evaluate twice,
    such as classifier-free guidance, count twice). ``guides``: a list for every batch, or a factory
    called per batch with the slice of contexts and ``samples`` (costs bound to a batch). ``cond``:
    one conditioning row per sequence ``[N, ...]``. ``antithetic``: start noise in mirrored pairs per
    sequence (``samples`` even). ``generator`` draws the start noise on the CPU, ``step_generator``
    (default: the same) the noise of stochastic steps, where the sequences live; a `Streams` (one stream per
    sequence) makes each sequence's noise independent of the batches. Sequences go in
    batches of at most about ``batch_limit`` (contexts x samples), or as the given ``slices``.
    """
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    if antithetic and samples % 2:
        raise ConfigError(f"antithetic sampling draws samples in pairs; samples must be even, got {samples}")
    if batch_limit < 1:
        raise ConfigError(f"batch_limit must be >= 1, got {batch_limit}")
    n, horizon, dim = known.values.shape
    if cond is not None and cond.shape[0] != n:
        raise ShapeError(f"cond has {cond.shape[0]} rows for {n} sequences; pass one per sequence")
    step = get_solver(solver)
    probe = guides(slice(0, min(n, 1)), samples) if callable(guides) else guides
    levels = build_plan(plan, known.tokens, nfe, solver=step, guides=probe, options=plan_options,
                        schedule=schedule)
    step_generator = step_generator if step_generator is not None else generator
    values = known.values
    start_values = torch.where(known.tokens[None, :, None], values,
                               0.0 if known.warm is None else known.warm.to(values.dtype))
    parts = list(slices) if slices is not None else batch_slices(n, samples, batch_limit)
    if [(p.start, p.stop) for p in parts] != list(zip([0, *[p.stop for p in parts[:-1]]], [p.stop for p in parts],
                                                       strict=True)) or parts[-1].stop != n:
        raise ShapeError(f"slices must cover the {n} sequences in order, without gaps or overlaps")
    out: Tensor | None = None
    if isinstance(generator, Streams) and len(generator) != n:
        raise ShapeError(f"got {len(generator)} noise streams for {n} sequences; pass one per sequence")
    for part in parts:
        count = part.stop - part.start
        shape = (count * samples, horizon, dim)
        start_noise = generator.part(part) if isinstance(generator, Streams) else generator
        step_noise = step_generator.part(part) if isinstance(step_generator, Streams) else step_generator
        noise = antithetic_noise(shape, samples, generator=start_noise, dtype=values.dtype) if antithetic else None
        context = start_values[part].repeat_interleave(samples, dim=0)
        x = initial_state(shape, levels, schedule, context=context, generator=start_noise, noise=noise,
                          dtype=values.dtype)
        chosen = list(guides(part, samples) if callable(guides) else guides)
        if known.entries is not None:
            mask = known.entries[part].repeat_interleave(samples, dim=0)
            chosen = [Inpaint(mask.to(device) if device else mask, values[part].repeat_interleave(samples, dim=0)),
                      *chosen]
        part_cond = cond[part].repeat_interleave(samples, dim=0) if cond is not None else None
        if device is not None:
            x, levels_on = x.to(device), levels.to(device)
            part_cond = part_cond.to(device) if part_cond is not None else None
        else:
            levels_on = levels
        drawn = sample(denoise, x, levels_on, schedule, solver=step, cond=part_cond, guides=chosen,
                       generator=step_noise)
        if out is None:
            out = torch.empty(samples, n, horizon, dim, dtype=drawn.dtype, device=drawn.device)
        out[:, part] = drawn.reshape(count, samples, horizon, dim).transpose(0, 1)
    assert out is not None
    return out
