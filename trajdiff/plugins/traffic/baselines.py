"""Constant velocity for agent tracks: the reference every pedestrian forecaster is measured against
(Schöller et al., 2020, "What the constant velocity model can teach us about pedestrian motion prediction")."""

from __future__ import annotations

import numpy as np

from trajdiff.plugins.spec import BaselineContext

__all__ = ["constant_velocity"]


def constant_velocity(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """Each agent keeps its last step: ``x, y`` of rows ``[N, h >= 2, F]`` -> ``[N, horizon, F]`` (user units);
    the neighbour columns are NaN, as in the model's forecasts. None for fewer than 2 rows."""
    history = np.asarray(history, dtype=np.float64)
    if history.shape[1] < 2:
        return None
    last, step = history[:, -1, :2], history[:, -1, :2] - history[:, -2, :2]
    out = np.full((len(history), horizon, history.shape[-1]), np.nan)
    out[..., :2] = last[:, None] + np.arange(1, horizon + 1)[None, :, None] * step[:, None]
    return out
