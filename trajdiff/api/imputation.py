"""Imputation and anomaly scores by inpainting, for any domain whose loader marks missing cells.

- `impute`: every window of a series is sampled with its observed cells inpainted (`Inpaint`); the
  missing cells take the median of the samples. Observed cells are returned unchanged.
- `anomaly_scores`: the ImDiffusion idea (Chen et al., 2023): hide half of the observed cells with a
  grating mask in time, impute them from the other half, then swap; a cell that the model cannot
  reproduce from its neighbourhood scores high. The error is averaged over several denoising steps
  (the intermediate x0 estimates), which makes the score steadier than the final imputation alone.

Both read the model's window (history + horizon rows) and need the encoder to map a cell mask to
token space (`Encoder.encode_mask`); scores are in standardized units (errors divided by each column's
training standard deviation), so columns are comparable.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trajdiff.api.checks import check_count, check_required, check_samples, check_seed, check_writable, guide_cause
from trajdiff.api.columns import align_columns
from trajdiff.api.loading import LoadedModel, context_tokens, load_model
from trajdiff.api.output import write_table
from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.core.data import Episodes
from trajdiff.core.parametrize import Prediction
from trajdiff.errors import DataError
from trajdiff.plugins.manager import Plugins


def _window_starts(length: int, window: int) -> list[int]:
    """Non-overlapping windows covering every row; the last one is aligned to the end."""
    starts = list(range(0, length - window + 1, window))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


@dataclass
class _Batch:
    tokens: np.ndarray  # [N, T, D]
    observed: np.ndarray  # [N, T, D] bool
    frames: list[dict[str, Any]]
    where: list[tuple[int, int]]  # (episode, start row)


def _collect(loaded: LoadedModel, episodes: Episodes, hide: np.ndarray | None = None) -> tuple[_Batch, list[str]]:
    d = loaded.defaults
    tokens, observed, frames, where, short = [], [], [], [], []
    for i, sequence in enumerate(episodes.sequences):
        if len(sequence) < d.length:
            short.append(episodes.ids[i])
            continue
        missing = (episodes.meta[i] or {}).get("missing")
        missing = np.zeros(sequence.shape, dtype=bool) if missing is None else np.asarray(missing, dtype=bool)
        for start in _window_starts(len(sequence), d.length):
            encoded, frame = loaded.encoder.encode(sequence[start:start + d.length], d.history)
            seen = ~missing[start:start + d.length]
            if hide is not None:
                seen = seen & ~hide
            tokens.append(encoded)
            observed.append(loaded.encoder.encode_mask(seen))
            frames.append(frame)
            where.append((i, start))
    if not tokens:
        raise DataError(f"no series has the {d.length} rows of one model window; the longest has "
                        f"{max(episodes.lengths)}")
    return _Batch(np.stack(tokens).astype(np.float32), np.stack(observed), frames, where), short


def _sample_inpainted(loaded: LoadedModel, batch: _Batch, samples: int, nfe: int, seed: int,
                      record: list[tuple[float, torch.Tensor]] | None = None) -> np.ndarray:
    """Samples every window with its observed cells inpainted: ``[S, N, T, D]``; optionally records
    the x0 estimates ``(level, [N * S, T, D])`` of every denoiser call."""
    model = loaded.model
    denoise = model.denoiser(ema=True)
    if record is not None:
        inner = denoise

        def denoise(x: torch.Tensor, k: torch.Tensor, cond: torch.Tensor | None = None) -> Prediction:
            prediction = inner(x, k, cond)
            record.append((float(k.max()), prediction.x0.detach().clone()))
            return prediction

    tokens = torch.from_numpy(batch.tokens)
    known = Known(tokens, torch.zeros(tokens.shape[1], dtype=torch.bool), entries=torch.from_numpy(batch.observed))
    drawn = sample_conditional(denoise, model.schedule, known, samples=samples, nfe=nfe,
                               solver=loaded.defaults.solver, generator=torch.Generator().manual_seed(seed),
                               batch_limit=max(1, len(batch.tokens)) * samples)
    check_samples(drawn.numpy(), cause=guide_cause(None), what="the inpainted samples")
    return drawn.numpy()


@dataclass
class ImputeResult:
    """The completed series as a table, and counts of what was filled."""

    table: pd.DataFrame
    filled: int
    skipped: list[str]
    seconds: float


def impute(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int = 10,
    nfe: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
) -> ImputeResult:
    """Fills the missing cells of every series in ``data`` with the median of inpainted samples.

    The table has one row per time step: entity, time, the columns (observed values unchanged,
    missing ones imputed) and ``<column>_imputed`` flags.
    """
    started = time.monotonic()
    samples, nfe, seed = check_required(samples, "samples"), check_count(nfe, "nfe"), check_seed(seed)
    check_writable(out, "out")
    loaded = load_model(model_dir, plugins=plugins)
    context_tokens(loaded.encoder, loaded.defaults)
    episodes = loaded.domain.load(data, **(load_options or {}))
    episodes = align_columns(episodes, loaded.encoder, data)
    batch, short = _collect(loaded, episodes)
    drawn = _sample_inpainted(loaded, batch, samples, nfe or loaded.defaults.nfe, seed)
    completed = [np.array(seq, dtype=np.float64) for seq in episodes.sequences]
    done = [np.zeros(len(seq), dtype=bool) for seq in episodes.sequences]
    for j, (i, start) in enumerate(batch.where):
        decoded = np.median(loaded.encoder.decode(drawn[:, j], batch.frames[j]), axis=0)  # [rows, F]
        missing = np.asarray(episodes.meta[i].get("missing", np.zeros_like(completed[i], dtype=bool)), dtype=bool)
        rows = slice(start, start + loaded.defaults.length)
        fill = missing[rows] & ~done[i][rows][:, None]  # the end-aligned last window only adds new rows
        block = completed[i][rows]  # a view: writing into it completes the series
        block[fill] = decoded[fill]
        done[i][rows] = True
    if short:
        warnings.warn(f"{len(short)} series shorter than the model window ({loaded.defaults.length} rows) were not "
                      f"imputed: {short[:5]}", stacklevel=2)
    frames, filled = [], 0
    for i, seq in enumerate(completed):
        if episodes.ids[i] in short:
            continue
        meta = episodes.meta[i] or {}
        missing = np.asarray(meta.get("missing", np.zeros_like(seq, dtype=bool)), dtype=bool)
        filled += int(missing.sum())
        frame = pd.DataFrame(seq, columns=episodes.columns)
        for c, column in enumerate(episodes.columns):
            frame[f"{column}_imputed"] = missing[:, c]
        frame.insert(0, "time", meta.get("times", np.arange(len(seq))))
        frame.insert(0, "entity", meta.get("entity", episodes.ids[i]))
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    if out is not None:
        write_table(table, out)
    return ImputeResult(table, filled, short, time.monotonic() - started)


@dataclass
class AnomalyResult:
    """Per-time-step anomaly scores (standardized error), per column and overall."""

    table: pd.DataFrame
    skipped: list[str]
    seconds: float


def anomaly_scores(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int = 4,
    nfe: int | None = None,
    grating: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
) -> AnomalyResult:
    """Scores every observed cell by how badly the model imputes it when it is hidden.

    Rows are hidden in alternating blocks of ``grating`` rows (default: one token), first the even
    blocks then the odd ones. Returns one row per time step: entity, time, ``score`` (mean over
    columns) and ``<column>_score``.
    """
    started = time.monotonic()
    samples, nfe, seed = check_required(samples, "samples"), check_count(nfe, "nfe"), check_seed(seed)
    grating = check_count(grating, "grating")
    check_writable(out, "out")
    loaded = load_model(model_dir, plugins=plugins)
    d = loaded.defaults
    context_tokens(loaded.encoder, d)
    episodes = loaded.domain.load(data, **(load_options or {}))
    episodes = align_columns(episodes, loaded.encoder, data)
    grating = grating or loaded.encoder.rows_per_token
    features = len(episodes.columns)
    block = (np.arange(d.length) // grating) % 2 == 0
    sums = [np.zeros(seq.shape) for seq in episodes.sequences]
    short: list[str] = []
    scale = _column_scale(loaded, features)
    for hidden in (block, ~block):
        hide = np.repeat(hidden[:, None], features, axis=1)
        batch, short = _collect(loaded, episodes, hide=hide)
        record: list[tuple[float, torch.Tensor]] = []
        _sample_inpainted(loaded, batch, samples, nfe or d.nfe, seed, record=record)
        # Ensemble over the x0 estimates from the second half of the denoising steps.
        estimates = [x0 for level, x0 in record if level <= 0.5] or [record[-1][1]]
        n = len(batch.where)
        errors = np.zeros((n, d.length, features))
        for x0 in estimates:
            x0 = x0.reshape(n, samples, *x0.shape[1:]).numpy()
            for j, (i, start) in enumerate(batch.where):
                decoded = loaded.encoder.decode(x0[j], batch.frames[j]).mean(axis=0)  # [rows, F]
                truth = episodes.sequences[i][start:start + d.length]
                errors[j] += np.abs(decoded - truth) / scale / len(estimates)
        for j, (i, start) in enumerate(batch.where):
            rows = slice(start, start + d.length)
            # Later windows overwrite the overlap of an end-aligned last window: same hidden pattern.
            sums[i][rows] = np.where(hide, errors[j], sums[i][rows])
    frames = []
    for i, seq in enumerate(episodes.sequences):
        if episodes.ids[i] in short:
            continue
        meta = episodes.meta[i] or {}
        frame = pd.DataFrame(sums[i], columns=[f"{c}_score" for c in episodes.columns])
        frame.insert(0, "score", sums[i].mean(axis=1))
        frame.insert(0, "time", meta.get("times", np.arange(len(seq))))
        frame.insert(0, "entity", meta.get("entity", episodes.ids[i]))
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    if out is not None:
        write_table(table, out)
    return AnomalyResult(table, short, time.monotonic() - started)


def _column_scale(loaded: LoadedModel, features: int) -> np.ndarray:
    """Each column's training spread (the encoder's `column_scale`), or ones when it keeps none."""
    scale = loaded.encoder.column_scale()
    if scale is None or len(scale) != features:
        return np.ones(features)
    return np.where(np.asarray(scale, dtype=np.float64) > 0, np.asarray(scale, dtype=np.float64), 1.0)
