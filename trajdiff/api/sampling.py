"""Sampling futures for encoded contexts, with the calibration and sample selection a model directory carries."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trajdiff.api.loading import (
    LoadedModel,
    context_tokens,
)
from trajdiff.core import plans, samplers
from trajdiff.core.guidance import CostGradient
from trajdiff.core.selection import representative_samples
from trajdiff.errors import ConfigError
from trajdiff.plugins.manager import get_plugins
from trajdiff.plugins.spec import Domain, Encoder


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
) -> np.ndarray:
    """Samples futures for encoded contexts ``[N, L, D]`` (history rows observed): ``[S, N, L, D]``.

    ``antithetic`` draws the starting noise in pairs ``(z, -z)`` per context (``samples`` must be
    even): each sample is still a draw from the model, but with a deterministic solver the pairs
    mirror each other, so the samples' median and mean carry far less Monte Carlo noise.

    ``costs`` maps a cost name (the domain's or a plugin's) to a guidance scale. A cost with a ``bind``
    method (e.g. one coupling the agents of a batch) is bound per chunk with ``bind(frames, meta, samples)``
    when ``frames`` (the encoder's, one per context) and optionally ``meta`` (one dict per context) are given.
    """
    defaults = loaded.defaults
    model = loaded.model
    n, length, dim = contexts.shape
    if antithetic and samples % 2:
        raise ConfigError(f"antithetic sampling draws samples in pairs; samples must be even, got {samples}")
    nfe = nfe or defaults.nfe
    plan = plans.full_sequence(length, nfe)
    observed = context_tokens(loaded.encoder, defaults)
    if observed:
        plan = plans.with_context(plan, slice(0, observed))
    guides = []
    if costs:
        available = get_plugins().costs(loaded.domain)
        for name, scale in costs.items():
            if name not in available:
                raise ConfigError(f"domain {loaded.domain.name!r} has no cost {name!r}; available: {sorted(available)}")
            guides.append(CostGradient(available[name], scale=scale))
    bindable = frames is not None and any(callable(getattr(g.cost, "bind", None)) for g in guides)
    generator = torch.Generator().manual_seed(seed)
    context = torch.from_numpy(contexts).float()
    out = torch.empty(samples, n, length, dim)
    denoise = model.denoiser(ema=True)
    per_chunk = max(1, batch_limit // samples)
    for lo in range(0, n, per_chunk):
        chunk = context[lo:lo + per_chunk].repeat_interleave(samples, dim=0)
        noise = samplers.antithetic_noise(chunk.shape, samples, generator=generator) if antithetic else None
        start = samplers.initial_state(chunk.shape, plan, model.schedule, context=chunk, generator=generator,
                                       noise=noise)
        chunk_guides = [_bound(g, frames, meta, lo, lo + per_chunk, samples) for g in guides] if bindable else guides
        drawn = samplers.sample(denoise, start, plan, model.schedule, solver=solver or defaults.solver,
                                guides=chunk_guides, generator=generator)
        out[:, lo:lo + per_chunk] = drawn.reshape(-1, samples, length, dim).transpose(0, 1)
    return out.numpy()


def _bound(guide: CostGradient, frames: Any, meta: Any, lo: int, hi: int, samples: int) -> CostGradient:
    """The guide with its cost bound to the frames and meta of contexts ``lo:hi`` (if the cost binds)."""
    bind = getattr(guide.cost, "bind", None)
    if not callable(bind):
        return guide
    cost = bind(frames[lo:hi], meta[lo:hi] if meta is not None else None, samples)
    return CostGradient(cost, scale=guide.scale, inner_steps=guide.inner_steps, stop_level=guide.stop_level,
                        through_model=guide.through_model)


def encoder_bases(encoder: Encoder, frames: list[dict[str, Any]]) -> np.ndarray | None:
    """The encoder's deterministic forecasts ``[N, H, F]`` for these frames, or None if it has none."""
    bases = [encoder.base(frame) for frame in frames]
    return None if any(b is None for b in bases) else np.stack(bases)


def apply_calibration(loaded: LoadedModel, futures: np.ndarray, frames: list[dict[str, Any]], use: bool) -> np.ndarray:
    """Futures ``[S, N, H, F]`` with the model's stored calibration applied (unchanged without one)."""
    if not use or loaded.calibration is None:
        return futures
    return loaded.calibration.apply(futures, encoder_bases(loaded.encoder, frames))


def check_draws(draws: int | None, samples: int) -> None:
    if draws is not None and draws < samples:
        raise ConfigError(f"draws ({draws}) must be at least samples ({samples}): {samples} of the drawn samples "
                          "are kept")


def keep_representatives(domain: Domain, futures: np.ndarray, columns: list[str], keep: int, *,
                         seed: int = 0) -> np.ndarray:
    """``keep`` of the samples ``[S, N, H, F]`` (user units) of each of N windows: one per k-means cluster
    of where they end (``domain.endpoints``), so that they cover distinct outcomes -> ``[keep, N, H, F]``."""
    ends = np.stack([domain.endpoints(futures[:, j], columns) for j in range(futures.shape[1])])  # [N, S, C]
    chosen = representative_samples(ends, keep, seed=seed)  # [N, keep]
    return np.stack([futures[chosen[j], j] for j in range(futures.shape[1])], axis=1)
