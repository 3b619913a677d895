"""Deterministic forecasts to compare with: constant velocity (CV) and constant turn rate (CTR).

Both work in the local metric frame of the last observed position. CV repeats the last step's
displacement; CTR (the "constant turn rate and velocity" motion model, e.g. Schubert et al., 2008)
also keeps turning by the course change between the last two steps.
"""

from __future__ import annotations

import numpy as np

from trajdiff.plugins.vessel.geo import from_local, to_local

__all__ = ["constant_turn_rate", "constant_velocity"]


def _local_history(history: np.ndarray) -> tuple[np.ndarray, float, float]:
    lat0, lon0 = float(history[-1, 0]), float(history[-1, 1])
    return to_local(history[:, 0], history[:, 1], lat0, lon0), lat0, lon0


def constant_velocity(history: np.ndarray, horizon: int) -> np.ndarray:
    """Future (lat, lon) rows ``[horizon, 2]`` continuing the last displacement of ``history [h >= 2, >=2]``."""
    xy, lat0, lon0 = _local_history(history)
    step = xy[-1] - xy[-2]
    future = np.arange(1, horizon + 1)[:, None] * step
    return np.column_stack(from_local(future, lat0, lon0))


def constant_turn_rate(history: np.ndarray, horizon: int) -> np.ndarray:
    """Future (lat, lon) rows ``[horizon, 2]`` keeping the last step's speed and the last course change per
    step (``history`` needs 3 rows; with 2 it is constant velocity)."""
    xy, lat0, lon0 = _local_history(history)
    last = xy[-1] - xy[-2]
    speed = float(np.hypot(*last))
    course = float(np.arctan2(last[1], last[0]))
    turn = 0.0
    if len(xy) >= 3:
        before = xy[-2] - xy[-3]
        if np.hypot(*before) > 1e-9 and speed > 1e-9:
            turn = float(np.angle(np.exp(1j * (course - np.arctan2(before[1], before[0])))))
    angles = course + turn * np.arange(1, horizon + 1)
    future = np.cumsum(speed * np.column_stack([np.cos(angles), np.sin(angles)]), axis=0)
    return np.column_stack(from_local(future, lat0, lon0))
