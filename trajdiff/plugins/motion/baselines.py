"""Trivial motion forecasts: zero velocity (the last observed pose held) and constant velocity (every joint
keeps its last frame-to-frame displacement). Zero velocity is a strong reference for short-term human motion
prediction (Martinez et al., 2017, "On human motion prediction using recurrent neural networks")."""

from __future__ import annotations

import numpy as np

from trajdiff.plugins.spec import BaselineContext

__all__ = ["constant_velocity", "zero_velocity"]


def zero_velocity(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """The last observed pose, held: joint positions ``[N, h, 3 J] -> [N, horizon, 3 J]``."""
    history = np.asarray(history, dtype=np.float64)
    return np.repeat(history[:, -1:], horizon, axis=1) if history.shape[1] else None


def constant_velocity(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """Every joint continues its last displacement: ``[N, h >= 2, 3 J] -> [N, horizon, 3 J]``."""
    history = np.asarray(history, dtype=np.float64)
    if history.shape[1] < 2:
        return None
    step = history[:, -1:] - history[:, -2:-1]
    return history[:, -1:] + np.arange(1, horizon + 1)[None, :, None] * step
