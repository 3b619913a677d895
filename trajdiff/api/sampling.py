"""Sampling futures for encoded contexts, with the calibration and sample selection a model directory carries."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from trajdiff.api.checks import check_costs, check_count, check_required, check_samples, check_seed, guide_cause
from trajdiff.api.loading import (
    LoadedModel,
    context_tokens,
)
from trajdiff.core.compiled import CompiledSolver
from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.core.guidance import CostGradient
from trajdiff.core.progress import Progress
from trajdiff.core.selection import representative_samples
from trajdiff.core.streams import Streams
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.spec import BatchCost, Domain, Encoder


def sample_futures(
    loaded: LoadedModel,
    contexts: np.ndarray,
    *,
    samples: int,
    nfe: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    costs: dict[str, float] | None = None,
    batch_limit: int = 4096,
    frames: list[dict[str, Any]] | None = None,
    meta: list[dict[str, Any]] | None = None,
    antithetic: bool = False,
    plan: str | torch.Tensor = "full",
    plan_options: dict[str, Any] | None = None,
    generator: torch.Generator | Streams | None = None,
    compile: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """Samples futures for encoded contexts ``[N, L, D]`` (history tokens observed): ``[S, N, L, D]``.
    ``generator`` (optional) draws the noise instead of a fresh one seeded with ``seed``, so that contexts
    sampled in several calls (chunks) draw from one stream.

    ``plan`` (``full``, ``autoregressive``, ``pyramid``, ``rolling`` or a tensor) and ``plan_options``
    as in `trajdiff.core.conditional.build_plan`; ``nfe`` counts network evaluations.
    ``antithetic`` draws the starting noise in pairs ``(z, -z)`` per context (``samples`` must be
    even): each sample is still a draw from the model, but with a deterministic solver the pairs
    mirror each other, so the samples' median and mean carry far less Monte Carlo noise.

    ``costs`` maps a cost name (the domain's or a plugin's) to a guidance scale. A `BatchCost` (e.g. one
    coupling the agents of a batch) is bound per batch to ``frames`` (the encoder's, one per context)
    and ``meta`` (one dict per context, optional); it needs ``frames``.

    Contexts go through the sampler ``batch_limit`` sequences (contexts x samples) at a time. ``compile`` runs the
    solver's steps under ``torch.compile`` (`trajdiff.core.compiled`): faster steps after a compilation of tens of
    seconds or more, so only for long runs. ``precision`` "bfloat16" runs the network's matrix products in bfloat16
    (`precision_context`): on CPUs with bfloat16 units (AMX, AVX512-BF16) one-evaluation students 1.1-1.4x faster at
    unchanged quality (`benchmarks/throughput.py`), slower elsewhere; the solver's arithmetic stays float32.
    """
    defaults = loaded.defaults
    in_precision = precision_context(precision)
    samples, nfe, seed = check_required(samples, "samples"), check_count(nfe, "nfe"), check_seed(seed)
    check_required(batch_limit, "batch_limit")
    costs = check_costs(costs)
    chosen: dict[str, tuple[Any, float]] = {}
    if costs:
        available = loaded.plugins.costs(loaded.domain)
        for name, scale in costs.items():
            if name not in available:
                raise ConfigError(f"domain {loaded.domain.name!r} has no cost {name!r}; available: {sorted(available)}")
            if isinstance(available[name], BatchCost) and frames is None:
                raise ConfigError(f"cost {name!r} couples the windows of a batch and needs their frames")
            chosen[name] = (available[name], scale)

    def guides(part: slice, count: int) -> list[CostGradient]:
        out = []
        for cost, scale in chosen.values():
            if isinstance(cost, BatchCost):
                assert frames is not None
                cost = cost.bind(frames[part], meta[part] if meta is not None else None, count)
            out.append(CostGradient(cost, scale=scale))
        return out

    observed = context_tokens(loaded.encoder, defaults)
    known = Known.history(torch.from_numpy(np.asarray(contexts, dtype=np.float32)), observed)
    step = solver or defaults.solver
    # Without guides nothing differentiates through the network: inference mode skips autograd's bookkeeping.
    with torch.inference_mode(not chosen), in_precision:
        drawn = sample_conditional(
            loaded.model.denoiser(ema=True), loaded.model.schedule, known, samples=samples, plan=plan,
            nfe=nfe or defaults.nfe, solver=compiled_solver(step) if compile else step, plan_options=plan_options,
            guides=guides, antithetic=antithetic, batch_limit=batch_limit,
            generator=generator if generator is not None else torch.Generator().manual_seed(seed),
        ).float()
    history = np.asarray(contexts, dtype=np.float64)[:, :observed]
    unusable = int((~np.isfinite(history)).sum())
    cause = (f"the history: {unusable} of its encoded values are NaN or infinite (missing cells in the last rows?)"
             if unusable else guide_cause(costs))
    check_samples(drawn.numpy(), cause=cause)
    return drawn.numpy()


PRECISIONS = ("float32", "bfloat16")


def precision_context(precision: str) -> contextlib.AbstractContextManager[Any]:
    """What the sampler runs under for ``precision``: nothing for float32; for bfloat16, CPU autocast (matrix
    products and the layers built on them in bfloat16, normalizations and the rest in float32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


@functools.cache
def compiled_solver(name: str) -> CompiledSolver:
    """One compiled solver per name and process, so that later calls reuse its compiled code."""
    return CompiledSolver(name)


def encoder_bases(encoder: Encoder, frames: list[dict[str, Any]]) -> np.ndarray | None:
    """The encoder's deterministic forecasts ``[N, H, F]`` for these frames, or None if it has none."""
    bases = [encoder.base(frame) for frame in frames]
    return None if any(b is None for b in bases) else np.stack(bases)


def apply_calibration(loaded: LoadedModel, futures: np.ndarray, frames: list[dict[str, Any]], use: bool) -> np.ndarray:
    """Futures ``[S, N, H, F]`` with the model's stored calibration applied (unchanged without one)."""
    if not use or loaded.calibration is None:
        return futures
    return loaded.calibration.apply(futures, encoder_bases(loaded.encoder, frames))


def check_decoded(loaded: LoadedModel, futures: np.ndarray, reference: list[np.ndarray], calibrated: bool,
                  model_dir: Any, what: str = "the samples") -> None:
    """Futures ``[S, N, H, F]`` in user units, checked (`check_samples`) in the columns the encoder forecasts
    against the data they continue, before they are written or scored; the error names the calibration when
    one was applied."""
    stored = loaded.calibration
    if calibrated and stored is not None:
        cause = (f"the calibration in {model_dir}/calibration.json (median weight {stored.median_weight:g}, spread "
                 f"factor {stored.spread_factor:g}; --uncalibrated ignores it) or the encoder's decoding")
    else:
        cause = "decoding into the data's units (the encoder's stored scale or base forecast)"
    spread, keep = loaded.encoder.column_scale(), loaded.encoder.forecast_columns
    if keep:  # the other columns are not forecast (traffic's neighbours decode as NaN)
        futures, reference = futures[..., keep], [np.asarray(part)[..., keep] for part in reference]
        spread = None if spread is None or len(spread) <= max(keep) else np.asarray(spread)[keep]
    check_samples(futures, cause=cause, reference=reference, spread=spread, what=what)


def check_forecast_size(samples: int, count: int, horizon: int, columns: int) -> None:
    """Refuses a forecast whose samples ``[samples, count, horizon, columns]`` (float64, and one copy while they
    roll) would take more than half of this machine's memory, before any sampling: such a request (e.g. a horizon
    of 10**8 rows) would otherwise run for hours and then fail for lack of memory."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to compare with
        return
    need = 2 * 8 * samples * count * horizon * columns
    if need > total // 2:
        raise ConfigError(f"a forecast of {horizon} rows for {count} histories x {samples} samples x {columns} "
                          f"columns needs about {need / 1e9:.3g} GB for its samples, more than half of this machine's "
                          f"{total / 1e9:.3g} GB; forecast fewer rows (--horizon), fewer samples or fewer entities at "
                          "a time")


def check_horizon(loaded: LoadedModel, horizon: int | None) -> int:
    """The forecast horizon in rows (default: the trained one); longer ones roll, so they must fill whole tokens."""
    d = loaded.defaults
    if horizon is None:
        return d.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(f"horizon must be a whole number of rows >= 1, got {horizon!r}")
    return horizon


def keep_representatives(domain: Domain, futures: np.ndarray, columns: list[str], keep: int, *,
                         seed: int = 0) -> np.ndarray:
    """``keep`` of the samples ``[S, N, H, F]`` (user units) of each of N windows: one per k-means cluster
    of where they end (``domain.endpoints``), so that they cover distinct outcomes -> ``[keep, N, H, F]``."""
    ends = np.stack([domain.endpoints(futures[:, j], columns) for j in range(futures.shape[1])])  # [N, S, C]
    chosen = representative_samples(ends, keep, seed=seed)  # [N, keep]
    return np.stack([futures[chosen[j], j] for j in range(futures.shape[1])], axis=1)


def forecast_histories(
    loaded: LoadedModel,
    histories: list[np.ndarray],
    *,
    samples: int,
    horizon: int | None = None,
    stride: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    costs: dict[str, float] | None = None,
    meta: list[dict[str, Any]] | None = None,
    antithetic: bool = False,
    plan: str | torch.Tensor = "full",
    plan_options: dict[str, Any] | None = None,
    progress: bool = True,
    what: str = "forecasting",
    chunk: int | None = None,
    keys: list[str] | None = None,
    precision: str = "float32",
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Futures of ``horizon`` rows after each observed history (raw rows ``[>= history, F]``):
    ``[S, N, horizon, F]`` in user units, with the frames of the first windows.

    Up to the trained horizon this is one window per history. Past it, the trained window rolls
    forward: each sample keeps the first ``stride`` rows of its future (default: the trained horizon),
    its last ``history`` rows (observed or sampled, held clean) become the next window's history, and
    one continuation is drawn per sample, until ``horizon`` rows exist.

    Histories are encoded and sampled ``chunk`` at a time (default: as many as one sampling batch of 4096
    sequences holds, ``4096 // samples``), so that memory beyond the returned futures stays bounded; the
    chunks draw from one noise stream per rolling round (one chunk gives what one call always gave).
    ``keys`` (one distinct string per history, e.g. the entity) give each history its own noise streams,
    seeded from (``seed``, rolling round, key, sample): a history's futures then do not depend on the other
    histories, their order or the chunks, so any grouping of the data (partitions, workers) gives the same.
    ``precision``: see `sample_futures`. ``progress`` reports the histories done under the name ``what`` (a bar
    in a terminal, else a line every 10 s; nothing for runs of a few seconds).
    """
    d = loaded.defaults
    samples, seed = check_required(samples, "samples"), check_seed(seed)
    horizon = check_horizon(loaded, horizon)
    stride = d.horizon if stride is None else check_required(stride, "stride")
    if stride > d.horizon:
        raise ConfigError(f"the roll stride must be in 1..{d.horizon} (the trained horizon), got {stride}")
    if horizon > d.horizon and d.history == 0:
        raise ConfigError(f"a model without history rows cannot roll past its trained horizon of {d.horizon} rows")
    if not len(histories):
        raise DataError("there is no history to forecast from (no window or entity with enough rows)")
    check_forecast_size(samples, len(histories), horizon, int(np.shape(histories[0])[-1]))
    chunk = max(1, 4096 // samples) if chunk is None else check_required(chunk, "chunk")
    if keys is not None and len(keys) != len(histories):
        raise ConfigError(f"got {len(keys)} keys for {len(histories)} histories; pass one per history")
    precision_context(precision)  # checked before anything is encoded
    options = {"nfe": nfe, "solver": solver, "costs": costs, "plan": plan, "plan_options": plan_options,
               "antithetic": antithetic, "precision": precision}
    streams: dict[int, torch.Generator] = {}  # one noise stream per rolling round (its seed), across chunks
    parts, frames = [], []
    with Progress(len(histories), what, "window", enabled=progress, delay=2.0) as shown:
        for lo in range(0, len(histories), chunk):
            part_meta = meta[lo:lo + chunk] if meta is not None else None
            futures, first = _roll_chunk(loaded, histories[lo:lo + chunk], part_meta, samples=samples, seed=seed,
                                         horizon=horizon, stride=stride, streams=streams,
                                         keys=keys[lo:lo + chunk] if keys is not None else None, **options)
            parts.append(futures)
            frames.extend(first)
            shown.update(len(first))
    return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)), frames


def _roll_chunk(loaded: LoadedModel, histories: list[np.ndarray], meta: list[dict[str, Any]] | None, *, samples: int,
                seed: int, horizon: int, stride: int, streams: dict[int, torch.Generator], antithetic: bool,
                keys: list[str] | None = None, **options: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """`forecast_histories` for one chunk of histories: futures ``[S, n, horizon, F]`` and the first frames."""
    d = loaded.defaults
    first: list[list[dict[str, Any]]] = []

    def window(rows: list[np.ndarray], count: int, round_seed: int, round_meta: list[dict[str, Any]] | None
               ) -> np.ndarray:
        stream: torch.Generator | Streams
        if keys is not None:  # path p continues sample p // n of history p % n (see roll_windows)
            stream = Streams([key_seed(seed, round_seed - seed, keys[p % len(keys)], p // len(keys))
                              for p in range(len(rows))])
        else:
            stream = streams.setdefault(round_seed, torch.Generator().manual_seed(round_seed))
        futures, frames = _one_window(loaded, rows, samples=count, seed=round_seed, meta=round_meta,
                                      antithetic=antithetic and count > 1, generator=stream, **options)
        if not first:
            first.append(frames)
        return futures

    futures = roll_windows(window, histories, history=d.history, trained_horizon=d.horizon, horizon=horizon,
                           stride=stride, samples=samples, seed=seed, meta=meta)
    return futures, first[0]


WindowSampler = Callable[[list[np.ndarray], int, int, list[dict[str, Any]] | None], np.ndarray]
"""``(histories, samples, seed, meta) -> futures [samples, N, trained horizon, F]``: one window per history."""


def roll_windows(sample_window: WindowSampler, histories: list[np.ndarray], *, history: int, trained_horizon: int,
                 horizon: int, stride: int, samples: int, seed: int = 0,
                 meta: list[dict[str, Any]] | None = None) -> np.ndarray:
    """``horizon`` rows after each history (``[S, N, horizon, F]``) from a sampler of trained windows: the
    first window gives ``samples`` futures per history; while rows are missing, each sample keeps the
    first ``stride`` rows of its latest window and its last ``history`` rows (observed or sampled, held
    clean) are the history of one continuation. Exact for a Markov process of order <= ``history`` when
    the window sampler draws from the exact conditional law."""
    futures = sample_window(histories, samples, seed, meta)
    produced = futures[:, :, :min(stride if horizon > trained_horizon else horizon, horizon)]
    rounds = 0
    while produced.shape[2] < horizon:
        rounds += 1
        count, n = produced.shape[0], produced.shape[1]
        paths = [np.concatenate([histories[j], produced[s, j]])[-history:] for s in range(count) for j in range(n)]
        more = sample_window(paths, 1, seed + rounds, [meta[j] for _ in range(count) for j in range(n)]
                             if meta is not None else None)
        step = min(stride, horizon - produced.shape[2])
        produced = np.concatenate([produced, more[0, :, :step].reshape(count, n, step, -1)], axis=2)
    return produced


def key_seed(seed: int, round: int, key: str, sample: int) -> int:
    """A seed in [0, 2**63) for one history's noise: a hash of (seed, rolling round, key, sample), the same in
    every process (Python's own string hash is salted per process)."""
    digest = hashlib.blake2b(f"{seed}/{round}/{sample}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _one_window(loaded: LoadedModel, histories: list[np.ndarray], *, samples: int, seed: int,
                meta: list[dict[str, Any]] | None, antithetic: bool,
                generator: torch.Generator | Streams | None = None,
                **options: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One trained window per history: futures ``[S, N, H, F]`` (user units) and the frames."""
    d, encoder = loaded.defaults, loaded.encoder
    if d.history:
        contexts, frames = encoder.encode_histories([rows[-d.history:] for rows in histories], d.horizon)
    else:  # an unconditional model: the window's frame comes from the last known row
        encoded = [encoder.encode(np.repeat(rows[-1:], d.length, axis=0), 0) for rows in histories]
        contexts, frames = np.stack([tokens for tokens, _ in encoded]), [frame for _, frame in encoded]
    drawn = sample_futures(loaded, contexts.astype(np.float32), samples=samples, seed=seed, frames=frames,
                           meta=meta, antithetic=antithetic, generator=generator, **options)
    futures = encoder.decode_windows(drawn, frames, start=d.history)
    return futures, frames
