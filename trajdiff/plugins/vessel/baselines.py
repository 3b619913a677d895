"""Deterministic forecasts to compare with: constant velocity (CV) and constant turn rate (CTR).

Both dead-reckon on the sphere of the metrics (`geo.EARTH_RADIUS_M`): CV keeps the last step's speed along
the great circle through the last two positions; CTR (the "constant turn rate and velocity" motion model,
e.g. Schubert et al., 2008) also turns, before each step, by the course change between the last two steps,
measured against the great circle, so a track on a circle of constant radius is continued exactly. Working
on unit vectors keeps this exact at any latitude and range, where a flat frame around the last position
bends long forecasts.

`cv_baseline` and `ctr_baseline` are the domain's `Baseline`s: rows ``[N, h, F]`` of the vessel columns
(lat, lon, sog, cog) -> ``[N, horizon, F]``, speed and course derived as the loader derives them.
"""

from __future__ import annotations

import numpy as np

from trajdiff.plugins.spec import BaselineContext
from trajdiff.plugins.vessel.geo import from_unit, to_unit
from trajdiff.plugins.vessel.loader import derive_motion

__all__ = ["constant_turn_rate", "constant_velocity", "ctr_baseline", "cv_baseline"]

STILL = 1e-12  # radians (6 micrometres): a step shorter than this has no direction
DEFAULT_STEP_S = 60.0  # the loader's default interval, when a window carries no time stamps


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def _step(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The great-circle step from ``start`` to ``end`` (unit vectors ``[..., 3]``): its angle ``[...]`` and
    its unit tangents at both ends (zero for a step without direction)."""
    angle = np.arctan2(np.linalg.norm(np.cross(start, end), axis=-1), (start * end).sum(-1))
    moving = (angle > STILL)[..., None]
    leaving = np.where(moving, _unit(end - start * np.cos(angle)[..., None]), 0.0)
    arriving = np.where(moving, _unit(end * np.cos(angle)[..., None] - start), 0.0)
    return angle, leaving, arriving


def _dead_reckon(history: np.ndarray, horizon: int, turning: bool) -> np.ndarray:
    """Future (lat, lon) ``[..., horizon, 2]`` from rows ``[..., h >= 2, >= 2]``; see the module docstring."""
    rows = np.asarray(history, dtype=np.float64)
    if rows.shape[-2] < 2 or rows.shape[-1] < 2:
        raise ValueError(f"dead reckoning needs at least 2 rows of (lat, lon), got shape {rows.shape}")
    points = to_unit(rows[..., -3:, 0], rows[..., -3:, 1])
    angle, _, heading = _step(points[..., -2, :], points[..., -1, :])
    turn = np.zeros_like(angle)
    if turning and rows.shape[-2] >= 3:
        before, _, arriving = _step(points[..., -3, :], points[..., -2, :])
        _, leaving, _ = _step(points[..., -2, :], points[..., -1, :])
        # the signed angle from the incoming to the outgoing course at the middle point, clockwise positive
        sin = -(np.cross(arriving, leaving) * points[..., -2, :]).sum(-1)
        turn = np.where((before > STILL) & (angle > STILL), np.arctan2(sin, (arriving * leaving).sum(-1)), 0.0)
    p, t = points[..., -1, :], heading
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    cw, sw = np.cos(turn)[..., None], np.sin(turn)[..., None]
    future = []
    for _ in range(horizon):
        t = t * cw + np.cross(t, p) * sw  # turn the course clockwise by `turn` about the local vertical
        p, t = p * c + t * s, t * c - p * s  # move `angle` along the great circle
        future.append(p)
    lat, lon = from_unit(np.stack(future, axis=-2))
    return np.stack([lat, lon], axis=-1)


def constant_velocity(history: np.ndarray, horizon: int) -> np.ndarray:
    """Future (lat, lon) rows ``[..., horizon, 2]`` continuing the last step of ``history [..., h >= 2, >= 2]``
    along its great circle at its speed."""
    return _dead_reckon(history, horizon, turning=False)


def constant_turn_rate(history: np.ndarray, horizon: int) -> np.ndarray:
    """Future (lat, lon) rows ``[..., horizon, 2]`` keeping the last step's speed and the last course change per
    step (``history`` needs 3 rows; with 2 it is constant velocity)."""
    return _dead_reckon(history, horizon, turning=True)


def _rows(history: np.ndarray, latlon: np.ndarray, context: BaselineContext) -> np.ndarray:
    """Forecast (lat, lon) ``[N, H, 2]`` -> rows ``[N, H, F]`` of the history's columns: speed (knots) and
    course (degrees) of each step as `derive_motion` gives them where the columns are the vessel loader's,
    NaN in any other column."""
    out = np.full((*latlon.shape[:2], history.shape[-1]), np.nan)
    out[..., :2] = latlon
    if context.columns[2:4] == ["sog", "cog"] or (not context.columns and history.shape[-1] >= 4):
        for j in range(len(latlon)):
            times = context.times[j] if j < len(context.times) else np.array([])
            step = DEFAULT_STEP_S
            if len(times) >= 2:
                gap = times[-1] - times[-2]
                step = float(gap / np.timedelta64(1, "s")) if isinstance(gap, np.timedelta64) else float(gap)
            lat = np.concatenate([history[j, -1:, 0], latlon[j, :, 0]])
            lon = np.concatenate([history[j, -1:, 1], latlon[j, :, 1]])
            sog, cog = derive_motion(lat, lon, step if step > 0 else DEFAULT_STEP_S)
            out[j, :, 2], out[j, :, 3] = sog[1:], cog[1:]
    return out


def cv_baseline(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """`constant_velocity` as a `Baseline`: ``[N, h, F] -> [N, horizon, F]`` (None for fewer than 2 rows)."""
    history = np.asarray(history, dtype=np.float64)
    return _rows(history, constant_velocity(history, horizon), context) if history.shape[1] >= 2 else None


def ctr_baseline(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray | None:
    """`constant_turn_rate` as a `Baseline`: ``[N, h, F] -> [N, horizon, F]`` (None for fewer than 2 rows)."""
    history = np.asarray(history, dtype=np.float64)
    return _rows(history, constant_turn_rate(history, horizon), context) if history.shape[1] >= 2 else None
