"""Sampling: one loop that walks a noise-level plan, the start state, and `stream` for unbounded
rolling generation.

The loop (`sample`) works out from the plan, once, which tokens each row moves; every row that moves
something is one step of a `solvers.Solver`. Tokens whose level does not change are returned
bit-identical, and guides act after every step. `conditional.sample_conditional` builds the plan,
the start and the guides from what is known of a sequence and calls this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch
from torch import Tensor

from trajdiff.core import plans as plan_lib
from trajdiff.core.denoiser import Denoiser
from trajdiff.core.schedules import Schedule, token_coefficients
from trajdiff.core.solvers import Row, Solver, State, get_solver
from trajdiff.core.streams import normal
from trajdiff.errors import ConfigError, DataError, ShapeError


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
    """A guide changes predictions (``wrap``) and/or the state after each step (``after_step``);
    ``evaluations`` is the number of network evaluations per call of the denoiser it wraps."""

    evaluations: int

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
        noise = normal(shape, generator, dtype=dtype)
    elif tuple(noise.shape) != tuple(shape):
        raise ShapeError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    noise = noise.to(dtype)
    k0 = plan[0].to(dtype).expand(shape[0], shape[1])
    alpha, sigma = token_coefficients(schedule, k0)
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
    half = normal((batch // group, group // 2, *tuple(shape)[1:]), generator, dtype=dtype)
    return torch.cat([half, -half], dim=1).reshape(tuple(shape))


def plan_rows(plan: Tensor, batch: int, device: torch.device | str | None = None) -> list[Row | None]:
    """Each transition of ``plan`` (``[S+1, T]``) as a `Row` for a batch of ``batch`` sequences, or None
    where no token moves. Worked out on the host once, before sampling."""
    host = plan.detach().cpu()
    moves = host[1:] != host[:-1]  # [S, T]
    any_moves = moves.any(dim=1).tolist()
    all_moves = moves.all(dim=1).tolist()
    lands_noisy = ((host[1:] > 0) & moves).any(dim=1).tolist()
    on_device = plan.to(device) if device is not None else plan
    horizon = plan.shape[1]
    rows: list[Row | None] = []
    for i, moving in enumerate(any_moves):
        if not moving:
            rows.append(None)
            continue
        rows.append(Row(
            k_from=on_device[i].expand(batch, horizon), k_to=on_device[i + 1].expand(batch, horizon),
            moving=moves[i].to(on_device.device)[None, :, None], all_moving=bool(all_moves[i]),
            any_lands_noisy=bool(lands_noisy[i]),
        ))
    return rows


def guide_evaluations(guides: Sequence[Guide]) -> int:
    """Network evaluations per denoiser call once the guides wrap it (classifier-free guidance: 2)."""
    factor = 1
    for guide in guides:
        factor *= int(guide.evaluations)
    return factor


def plan_evaluations(plan: Tensor, solver: str | Solver = "ddim", guides: Sequence[Guide] = ()) -> int:
    """Network evaluations that sampling ``plan`` costs with ``solver`` and ``guides``: what ``nfe`` counts."""
    host = plan.detach().cpu()
    moves = host[1:] != host[:-1]
    per_call = guide_evaluations(guides)
    rows = get_solver(solver).evaluations(moves.any(dim=1).tolist(), ((host[1:] > 0) & moves).any(dim=1).tolist())
    return rows * per_call


def sample(
    denoise: Denoiser,
    x: Tensor,
    plan: Tensor,
    schedule: Schedule,
    *,
    solver: str | Solver = "ddim",
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
    state = step.init_state(x) if state is None else state
    batch, horizon = x.shape[0], x.shape[1]
    for guide in guides:
        x = guide.prepare(x, plan[0].expand(batch, horizon), schedule, generator)
    with torch.no_grad():
        for i, row in enumerate(plan_rows(plan, batch)):
            if row is None:
                continue
            x_next = step.step(guided, x, row, schedule, cond=cond, state=state, generator=generator)
            # Guides see unmoved tokens restored (a solver may leave them undefined, e.g. 0/0 at level 0),
            # and those tokens stay bit-identical whatever a guide does to them.
            x_next = x_next if row.all_moving else torch.where(row.moving, x_next, x)
            for guide in guides:
                x_next = guide.after_step(x_next, row.k_to, schedule, generator)
            x = x_next if row.all_moving or not guides else torch.where(row.moving, x_next, x)
            if callback is not None:
                callback(i, x)
    return x


def stream(
    denoise: Denoiser,
    schedule: Schedule,
    *,
    window: int,
    batch: int,
    dim: int,
    context: Tensor | None = None,
    substeps: int = 1,
    solver: str | Solver = "ddim",
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
    step = get_solver(solver)
    _, sigma_max = schedule.alpha_sigma(torch.ones((), dtype=dtype))
    noisy = sigma_max * torch.randn(batch, window, dim, generator=generator, dtype=dtype)
    x = torch.cat([context.to(dtype), noisy], dim=1)
    state = step.init_state(x)

    def walk(x: Tensor, offsets: Sequence[float]) -> Tensor:
        clean = torch.zeros(n_context, dtype=torch.float64)
        rows = [torch.cat([clean, plan_lib.staircase(window, o)]) for o in offsets]
        return sample(
            denoise, x, torch.stack(rows), schedule,
            solver=step, cond=cond, guides=guides, generator=generator, state=state,
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
        state = step.shift_state(state, 1)
