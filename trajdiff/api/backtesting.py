"""Backtests: forecasts of held-out windows from their history alone, scored (`evaluate`) or used to fit
a calibration (`calibrate`)."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.api.baselines import baseline_context, compare_baselines
from trajdiff.api.checks import (
    check_count,
    check_draws,
    check_level,
    check_required,
    check_seed,
    check_writable,
)
from trajdiff.api.columns import align_columns
from trajdiff.api.loading import LoadedModel, load_model, window_index
from trajdiff.api.output import write_json
from trajdiff.api.sampling import (
    apply_calibration,
    check_decoded,
    check_horizon,
    encoder_bases,
    forecast_histories,
    keep_representatives,
)
from trajdiff.core.calibration import FILE as CALIBRATION_FILE
from trajdiff.core.calibration import Calibration, coverage, fit_calibration
from trajdiff.core.data import Episodes
from trajdiff.errors import CalibrationError, DataError
from trajdiff.memory import return_freed_memory
from trajdiff.plugins.manager import Plugins

UNITS = ("the data's own, as the domain's loader reads them (standardized data give standardized scores); a "
         "metric whose name ends in a unit, such as ade_m, is in that unit")


@dataclass
class Backtest:
    """Forecasts of held-out windows beside what happened: the raw material of `evaluate` and `calibrate`."""

    futures: np.ndarray  # [S, N, H, F] samples in user units
    truth: np.ndarray  # [N, H, F]
    frames: list[dict[str, Any]]
    columns: list[str]
    too_short: list[str]
    histories: np.ndarray  # [N, history, F] the observed rows each forecast started from, user units
    windows: list[tuple[int, int]] = field(default_factory=list)  # (episode, first row) of each window


def backtest(loaded: LoadedModel, episodes: Episodes, *, samples: int, nfe: int | None = None,
             solver: str | None = None, stride: int | None = None, max_windows: int | None = None, seed: int = 0,
             antithetic: bool = False, horizon: int | None = None, plan: str = "full",
             plan_options: dict[str, Any] | None = None, roll_stride: int | None = None, progress: bool = True,
             what: str = "backtest") -> Backtest:
    """Every window of history + ``horizon`` rows (default the trained horizon; longer ones roll the trained
    window forward, see `forecast_histories`), step ``stride`` (default the horizon), at most ``max_windows``
    evenly spread, forecast from its history alone: raw samples, before any calibration. Windows are cut from
    the episodes and encoded a batch at a time; ``progress`` reports them under the name ``what``."""
    d = loaded.defaults
    samples, seed = check_required(samples, "samples"), check_seed(seed)
    stride, max_windows = check_count(stride, "stride"), check_count(max_windows, "max_windows")
    horizon = check_horizon(loaded, horizon)
    return_freed_memory()  # what loading the data freed
    every, too_short = window_index(episodes, d.history + horizon, stride or horizon, history=d.history)
    positions = np.arange(len(every))  # indices into the episodes: rows are cut for the chosen windows only
    if max_windows is not None and len(every) > max_windows:
        positions = np.linspace(0, len(every) - 1, max_windows).round().astype(np.int64)
    index = list(zip(*(part.tolist() for part in every.locate(positions)), strict=True))
    histories = [episodes.sequences[i][s:s + d.history] if d.history else episodes.sequences[i][s:s + 1]
                 for i, s in index]
    truth = np.stack([episodes.sequences[i][s + d.history:s + d.history + horizon] for i, s in index])
    futures, frames = forecast_histories(loaded, histories, samples=samples, horizon=horizon, stride=roll_stride,
                                         nfe=nfe, solver=solver, seed=seed, antithetic=antithetic, plan=plan,
                                         plan_options=plan_options, progress=progress, what=what)
    return Backtest(futures, truth, frames, list(episodes.columns), too_short,
                    np.stack(histories)[:, :d.history], windows=list(index))


def evaluate(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    stride: int | None = None,
    max_windows: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    draws: int | None = None,
    antithetic: bool = False,
    calibrated: bool = True,
    horizon: int | None = None,
    plan: str = "full",
    plan_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Backtests the model on ``data``: every window of history + horizon rows (step ``stride``, default
    the horizon) is forecast from its history and scored with the domain's metrics against its true
    future, beside the domain's baselines on the same windows (`compare_baselines`: their scores, the model /
    baseline ratios, warnings). Returns (and writes as JSON to ``out``) the metrics with counts and timing.
    ``draws`` as in `forecast`: ``samples`` representatives of that many draws are scored; ``antithetic``,
    ``calibrated``, ``horizon`` (rows; past the trained horizon the window rolls forward) and ``plan`` as in
    `forecast`."""
    started = time.monotonic()
    samples, nfe, stride = check_count(samples, "samples"), check_count(nfe, "nfe"), check_count(stride, "stride")
    max_windows, seed = check_count(max_windows, "max_windows"), check_seed(seed)
    check_writable(out, "out")
    loaded = load_model(model_dir, plugins=plugins)
    d = loaded.defaults
    samples = d.samples if samples is None else samples
    draws = check_draws(draws, samples)
    episodes = loaded.domain.load(data, **(load_options or {}))
    episodes = align_columns(episodes, loaded.encoder, data)
    horizon = check_horizon(loaded, horizon)
    run = backtest(loaded, episodes, samples=draws or samples, nfe=nfe, solver=solver, stride=stride,
                   max_windows=max_windows, seed=seed, antithetic=antithetic, horizon=horizon, plan=plan,
                   plan_options=plan_options, what="evaluating")
    calibrated = calibrated and horizon == d.horizon  # a calibration is fitted on the trained horizon
    decoded = apply_calibration(loaded, run.futures, run.frames, calibrated)
    check_decoded(loaded, decoded, [run.histories, run.truth], calibrated, model_dir)
    if draws is not None and draws > samples:
        decoded = keep_representatives(loaded.domain, decoded, run.columns, samples, seed=seed)
    scores = {name: float(metric(decoded, run.truth)) for name, metric in loaded.domain.metrics().items()}
    context = baseline_context(episodes, loaded.encoder, run.frames, run.windows, d.history)
    compared = compare_baselines(loaded.domain, run.histories, run.truth, context, scores)
    applied = loaded.calibration if calibrated else None
    result = {
        "model": str(model_dir),
        "domain": loaded.domain.name,
        "data": str(data) if not isinstance(data, pd.DataFrame) else "DataFrame",
        "windows": len(run.truth),
        "skipped_episodes": run.too_short,
        "samples": samples,
        "draws": draws or samples,
        "antithetic": antithetic,
        "nfe": nfe or d.nfe,
        "horizon": horizon,
        "trained_horizon": d.horizon,
        "plan": plan,
        "calibration": asdict(applied) if applied is not None else None,
        "metrics": scores,
        "units": UNITS,
        **compared,
        "seconds": time.monotonic() - started,
    }
    write_json(result, out)
    return result


def calibrate(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    stride: int | None = None,
    max_windows: int | None = None,
    seed: int = 0,
    level: float = 0.9,
    spread: bool = True,
    antithetic: bool = False,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    plan: str = "full",
    plan_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fits a `Calibration` on held-out ``data`` (a validation period the model was not trained on) and
    stores it in the model directory, where `forecast` and `evaluate` apply it from then on.

    The weight on the model's median (against the encoder's base forecast, if it has one) is chosen
    by MSE, then (with ``spread``) the factor on the spread that makes the central ``level`` interval
    cover that share of ``data``. Both are fitted on values divided by the period's per-column spread (unit-free);
    returns the calibration with coverage and the median's MSE before and after, the MSE in the data's units
    (``mse_before`` is what `evaluate` scores as ``mse_median`` uncalibrated on the same windows, samples and
    seed)."""
    started = time.monotonic()
    samples, nfe, stride = check_count(samples, "samples", 2), check_count(nfe, "nfe"), check_count(stride, "stride")
    max_windows, seed, level = check_count(max_windows, "max_windows"), check_seed(seed), check_level(level)
    loaded = _load_replacing_invalid_calibration(model_dir, plugins)
    samples = loaded.defaults.samples if samples is None else samples
    episodes = loaded.domain.load(data, **(load_options or {}))
    episodes = align_columns(episodes, loaded.encoder, data)
    run = backtest(loaded, episodes, samples=samples, nfe=nfe, solver=solver, stride=stride, max_windows=max_windows,
                   seed=seed, antithetic=antithetic, plan=plan, plan_options=plan_options, what="calibrating")
    if len(run.truth) < 10:
        raise DataError(f"calibration needs at least 10 held-out windows; {data} gives {len(run.truth)} of "
                        f"{loaded.defaults.length} rows (lower --stride, or give a longer validation period)")
    check_decoded(loaded, run.futures, [run.histories, run.truth], False, model_dir, what="the held-out forecasts")
    fitted = fit_backtest(loaded, run, level=level, spread=spread,
                          data=str(data) if not isinstance(data, pd.DataFrame) else "DataFrame")
    fitted.save(model_dir)
    keep = loaded.encoder.forecast_columns
    futures, truth = (run.futures[..., keep], run.truth[..., keep]) if keep else (run.futures, run.truth)
    bases = encoder_bases(loaded.encoder, run.frames)
    bases = bases[..., keep] if keep and bases is not None else bases
    after = fitted.apply(futures, bases)  # in the data's units, as forecast and evaluate apply it

    def mse(x: np.ndarray) -> float:  # as the timeseries domain's mse_median scores it in `evaluate`
        return float(np.mean((np.median(np.asarray(x, np.float64), axis=0) - np.asarray(truth, np.float64)) ** 2))

    return {**asdict(fitted), "model": str(model_dir), "samples": samples, "units": UNITS,
            "mse_before": mse(futures), "mse_after": mse(after),
            "coverage_before": coverage(futures, truth, level), "coverage_after": coverage(after, truth, level),
            "seconds": time.monotonic() - started}


def fit_backtest(loaded: LoadedModel, run: Backtest, *, level: float = 0.9, spread: bool = True,
                 data: str = "") -> Calibration:
    """The `Calibration` of `calibrate`, fitted on a backtest's raw samples (the columns the encoder forecasts,
    against its base forecast where it declares one, e.g. constant velocity), without storing it."""
    keep = loaded.encoder.forecast_columns
    futures, truth = (run.futures[..., keep], run.truth[..., keep]) if keep else (run.futures, run.truth)
    bases = encoder_bases(loaded.encoder, run.frames)
    bases = bases[..., keep] if keep and bases is not None else bases
    std = truth.reshape(-1, truth.shape[-1]).std(axis=0)  # fitted per column in the period's own spread, so
    std = np.where(std > 0, std, 1.0)  # that units do not weigh in; both numbers are unit-free
    scaled_base = None if bases is None else bases / std
    return fit_calibration(futures / std, truth / std, scaled_base, level=level, spread=spread, data=data)


def _load_replacing_invalid_calibration(model_dir: str | Path, plugins: Plugins | None) -> LoadedModel:
    """`load_model` for `calibrate`: a stored calibration that is invalid (edited, unrecorded, out of range) is
    what calibrating replaces, so it is removed (with a warning) instead of stopping the run."""
    try:
        return load_model(model_dir, plugins=plugins)
    except CalibrationError as error:
        reason = str(error).split("; calibrate again")[0]
        warnings.warn(f"calibrate replaces an invalid calibration: {reason}", stacklevel=3)
        (Path(model_dir) / CALIBRATION_FILE).unlink()
        return load_model(model_dir, plugins=plugins)
