"""Endless motion from a prediction model: forecast the next seconds from the last second, keep the first
``keep`` frames, slide, repeat.

Why: a model trained with one noise level per window (the "forecast-mlp" recipe) predicts a whole clean future at
once, so every kept frame comes out of a fully denoised window; the rolling plan instead leaves the frames that
enter the window at high noise levels for only a few solver steps each, which showed up as jitter. Each chunk
here is conditioned on the last second as generated (in the body-centred features, so the stream neither drifts
in place nor in heading), and the label steers the activity through classifier-free guidance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from trajdiff.core.model import DiffusionModel
from trajdiff.errors import ConfigError
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.features import decode_world

__all__ = ["stream_features", "synthesize_chunked"]


def stream_features(model: DiffusionModel, encoder: MotionEncoder, context: np.ndarray, *, frames: int,
                    label: str | None = None, guidance: float = 2.0, keep: int | None = None, nfe: int = 10,
                    constraints: Sequence[str] = (), costs: dict[str, float] | None = None, seed: int = 0,
                    progress: bool = False) -> np.ndarray:
    """Unnormalized features ``[S, frames, F]`` of streams that start from ``context`` (history tokens ``[S, C, D]``
    of ``S`` streams, included at the start) and continue ``keep`` frames per forecast (default: the whole
    horizon)."""
    from trajdiff.plugins.motion.synthesis import sample_forecasts

    defaults = model.extra["defaults"]
    history, horizon = int(defaults["history"]), int(defaults["horizon"])
    patch = encoder.patch
    keep = horizon if keep is None else int(keep)
    if keep < patch or keep > horizon or keep % patch:
        raise ConfigError(f"keep must be a multiple of the patch ({patch}) between {patch} and the horizon "
                          f"({horizon}), got {keep}")
    context = np.asarray(context, dtype=np.float32)
    if context.ndim != 3 or context.shape[1] * patch != history:
        raise ConfigError(f"a stream starts from [streams, {history // patch}, {encoder.dim}] history tokens, got "
                          f"{context.shape}")
    with torch.no_grad():
        produced = [encoder.from_tokens(torch.from_numpy(context).double()).numpy()]
    done, chunk, started = history, 0, time.monotonic()
    while done < frames:
        last = np.concatenate(produced, axis=1)[:, -history:]
        tokens = encoder.tokens_from_features(torch.from_numpy(last)).numpy().astype(np.float32)
        window = np.concatenate([tokens, np.repeat(tokens[:, -1:], horizon // patch, axis=1)], axis=1)
        drawn = sample_forecasts(model, encoder, window, history // patch, samples=1, nfe=nfe, label=label,
                                 guidance=guidance, constraints=constraints, costs=costs, seed=seed + chunk)[0]
        with torch.no_grad():
            features = encoder.from_tokens(torch.from_numpy(drawn).double()).numpy()
        produced.append(features[:, history:history + keep])
        done += keep
        chunk += 1
        if progress and chunk % 20 == 0:
            print(f"  {done}/{frames} frames, {time.monotonic() - started:.0f} s", flush=True)
    return np.concatenate(produced, axis=1)[:, :frames]


def synthesize_chunked(model: DiffusionModel, encoder: MotionEncoder, context: np.ndarray, *, seconds: float,
                       label: str | None = None, guidance: float = 2.0, keep: int | None = None, nfe: int = 10,
                       constraints: Sequence[str] = (), costs: dict[str, float] | None = None, seed: int = 0,
                       progress: bool = False) -> np.ndarray:
    """Joint positions ``[S, frames, 3 J]`` in metres of streams of ``seconds`` (seed included, its first frame at
    the origin facing +Z); arguments as `stream_features`."""
    frames = max(int(round(seconds * encoder.fps)), int(model.extra["defaults"]["history"]))
    features = stream_features(model, encoder, context, frames=frames, label=label, guidance=guidance, keep=keep,
                               nfe=nfe, constraints=constraints, costs=costs, seed=seed, progress=progress)
    world = decode_world(encoder._layout(), torch.from_numpy(features), 0)
    return encoder.all_joints(world.numpy())
