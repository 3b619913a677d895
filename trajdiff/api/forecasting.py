"""Forecasting every entity of a data set: samples decoded to user units, a tidy table, files and a plot."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.api.checks import check_costs, check_count, check_draws, check_seed, check_writable
from trajdiff.api.columns import align_columns
from trajdiff.api.loading import load_model
from trajdiff.api.output import write_forecast
from trajdiff.api.plots import plot_forecasts
from trajdiff.api.sampling import (
    apply_calibration,
    check_decoded,
    check_horizon,
    forecast_histories,
    keep_representatives,
)
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.manager import Plugins


@dataclass
class ForecastResult:
    """Forecast samples in user units and a tidy table of them."""

    table: pd.DataFrame
    samples: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    skipped: list[str]
    seconds: float


def forecast(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    costs: dict[str, float] | None = None,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    draws: int | None = None,
    antithetic: bool = False,
    calibrated: bool = True,
    horizon: int | None = None,
    plan: str = "full",
    plan_options: dict[str, Any] | None = None,
    roll_stride: int | None = None,
) -> ForecastResult:
    """Forecasts the next ``horizon`` steps after the end of every episode (entity) in ``data``.

    Returns one table row per sample, entity and future step (time stamps continued from the data,
    values in the user's units); writes it to ``out`` (.csv or .parquet) and a plot to ``plot``.
    ``draws``: draw this many samples per entity and keep ``samples`` of them, one per k-means cluster
    of where they end (the domain's ``endpoints``), so that the kept ones cover distinct outcomes
    (final position clustering; best-of-N scores favour it). Kept samples are real draws.
    ``antithetic``: draw the samples in mirrored pairs (see `sample_futures`), for a steadier median.
    A calibration stored by `calibrate` is applied unless ``calibrated`` is False (and only at the trained
    horizon, where it was fitted). ``horizon``: rows to forecast (default the trained horizon); a longer
    one rolls the trained window forward, ``roll_stride`` rows at a time (see `forecast_histories`).
    ``plan``: how the noise levels of a window's unknown tokens fall (``full``, ``autoregressive``,
    ``pyramid``, ``rolling``; ``plan_options`` such as ``chunk``, ``delay``, ``window``).
    """
    started = time.monotonic()
    samples, nfe, seed = check_count(samples, "samples"), check_count(nfe, "nfe"), check_seed(seed)
    costs, roll_stride = check_costs(costs), check_count(roll_stride, "roll_stride")
    check_writable(out, "out")
    check_writable(plot, "plot")
    loaded = load_model(model_dir, plugins=plugins)
    d = loaded.defaults
    samples = d.samples if samples is None else samples
    draws = check_draws(draws, samples)
    episodes = loaded.domain.load(data, **(load_options or {}))
    episodes = align_columns(episodes, loaded.encoder, data)
    horizon = check_horizon(loaded, horizon)
    observed, kept, skipped = [], [], []
    for i, sequence in enumerate(episodes.sequences):
        if len(sequence) < max(d.history, 1):
            skipped.append(episodes.ids[i])
            continue
        observed.append(sequence[len(sequence) - d.history:] if d.history else sequence[-1:])
        kept.append(i)
    if skipped:
        warnings.warn(f"{len(skipped)} episode(s) shorter than the model's history of {d.history} rows were not "
                      f"forecast: {skipped[:5]}{' ...' if len(skipped) > 5 else ''}", stacklevel=2)
    if not kept:
        raise DataError(f"no episode has the {d.history} rows of history the model needs; the longest has "
                        f"{max(episodes.lengths)} rows")
    decoded, frames = forecast_histories(
        loaded, observed, samples=draws or samples, horizon=horizon, stride=roll_stride, nfe=nfe, solver=solver,
        seed=seed, costs=costs, meta=[episodes.meta[i] for i in kept], antithetic=antithetic, plan=plan,
        plan_options=plan_options)  # [S, N, H, F]
    keep = loaded.encoder.forecast_columns  # an encoder may forecast only some columns
    names = [episodes.columns[c] for c in keep] if keep else list(episodes.columns)
    rows = []
    by_entity: dict[str, np.ndarray] = {}
    truths: dict[str, np.ndarray] = {}  # a domain may put the known future in meta "future" (rows after the data)
    histories: dict[str, np.ndarray] = {}
    applied = calibrated and horizon == d.horizon
    decoded = apply_calibration(loaded, decoded, frames, applied)
    check_decoded(loaded, decoded, observed, applied, model_dir)
    decoded = decoded[..., keep] if keep else decoded
    if draws is not None and draws > samples:
        decoded = keep_representatives(loaded.domain, decoded, names, samples, seed=seed)
    for j, i in enumerate(kept):
        raw = decoded[:, j]  # [S, H, F]
        meta = episodes.meta[i] if episodes.meta else {}
        entity = str(meta.get("entity", episodes.ids[i]))
        times = meta.get("times")
        future = (loaded.domain.future_times(times, horizon) if times is not None
                  else np.arange(len(episodes.sequences[i]), len(episodes.sequences[i]) + horizon))
        by_entity[entity] = raw
        histories[entity] = episodes.sequences[i][-max(d.history, 1):]
        if meta.get("future") is not None:
            known = np.asarray(meta["future"])[:horizon]
            truths[entity] = known[..., keep] if keep else known
        for s in range(raw.shape[0]):
            frame = pd.DataFrame(raw[s], columns=names)
            frame.insert(0, "step", np.arange(1, horizon + 1))
            frame.insert(0, "time", future)
            frame.insert(0, "entity", entity)
            frame.insert(0, "sample", s)
            rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    if out is not None:
        write_forecast(loaded.domain, table, out, histories, by_entity, episodes.columns)
    if plot is not None:
        try:
            if loaded.domain.plot_forecasts(Path(plot), histories, by_entity, names, truths=truths or None) is None:
                full = {entity: known for entity, known in truths.items() if len(known) == horizon}
                plot_forecasts(histories, by_entity, names, plot, truths=full or None)
        except OSError as error:
            raise ConfigError(f"cannot write plot {plot}: {error.strerror or error}; choose another path") from error
    return ForecastResult(table, by_entity, histories, skipped, time.monotonic() - started)
