"""Trivial time-series forecasts that `evaluate` prints beside a model: last value, seasonal naive and the
encoder's own linear forecast (the base the model refines).

Why: a diffusion forecast is worth its cost only where it beats these; the naive and seasonal naive
forecasts are the reference points of forecasting practice (Hyndman & Athanasopoulos, FPP3 5.2), and the
linear base shows what the model adds over its own deterministic part.

The season of seasonal naive is a fact of the data, read from each window's time stamps: rows per day for
a step that divides a day (hourly -> 24, 15 minutes -> 96), 7 for daily, 52 for weekly, 12 for monthly and
4 for quarterly steps. ``SeasonalNaive(season=P)`` fixes it instead (e.g. for numeric time stamps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trajdiff.plugins.spec import BaselineContext

__all__ = ["SeasonalNaive", "infer_season", "last_value", "linear_base"]

DAY_S = 86_400.0
CALENDAR = ((7 * DAY_S, 7 * DAY_S, 52), (28 * DAY_S, 31 * DAY_S, 12), (89 * DAY_S, 92 * DAY_S, 4))
"""(shortest step, longest step, rows per season) for weekly, monthly and quarterly series."""


def last_value(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """The naive forecast: every future row repeats the last observed row, ``[N, h, F] -> [N, horizon, F]``."""
    history = np.asarray(history, dtype=np.float64)
    return np.repeat(history[:, -1:], horizon, axis=1) if history.shape[1] else None


def infer_season(times: np.ndarray) -> int | None:
    """Rows per calendar season from time stamps (datetime64; see the module docstring); None for numeric or
    irregular stamps, fewer than two of them, or a step that fits no calendar season."""
    times = np.asarray(times)
    if len(times) < 2 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    steps = np.diff(times).astype("timedelta64[ns]").astype(np.int64) / 1e9
    step = float(np.median(steps))
    if step <= 0:
        return None
    if step < DAY_S:
        per_day = DAY_S / step
        return int(round(per_day)) if abs(per_day - round(per_day)) < 1e-9 and per_day >= 2 else None
    if step == DAY_S:
        return 7
    return next((season for low, high, season in CALENDAR if low <= step <= high), None)


@dataclass(frozen=True)
class SeasonalNaive:
    """Each future row repeats the row one season earlier: ``future[t] = history[h - P + t mod P]``.

    ``season`` (rows) fixes P; None reads it per window from the time stamps (`infer_season`). Returns None
    (not applicable) when a window has no season or its history is shorter than one season."""

    season: int | None = None

    def __call__(self, history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
        history = np.asarray(history, dtype=np.float64)
        rows = history.shape[1]
        out = np.empty((len(history), horizon, history.shape[2]))
        for j, window in enumerate(history):
            season = self.season
            if season is None and j < len(context.times):
                season = infer_season(context.times[j])
            if season is None or not 1 <= season <= rows:
                return None
            out[j] = window[rows - season + np.arange(horizon) % season]
        return out


def linear_base(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """The encoder's base forecast of each window (`Encoder.base`, the closed-form linear forecast with
    ``residual="linear"``), read from the windows' frames; None without an encoder, frames or base."""
    if context.encoder is None or len(context.frames) != len(history):
        return None
    bases = [context.encoder.base(frame) for frame in context.frames]
    if any(base is None for base in bases):
        return None
    stacked = np.stack(bases).astype(np.float64)  # type: ignore[arg-type]
    return stacked if stacked.shape[1] == horizon else None
