"""Vessel forecast metrics in metres (great-circle distance between forecast and true positions).

Each takes samples ``[S, N, H, F]`` and truth ``[N, H, F]`` with lat, lon as the first two columns.
``ade``/``fde`` score the point forecast: the samples' geometric median at each step (the point of least
summed distance to them); ``min_ade``/``min_fde`` the best of the S samples per window (minADE_S / minFDE_S, as in
trajectory-forecasting papers).

Why the geometric median: where the samples split between manoeuvres (a vessel that may turn into a berth or
sail on), their mean lies between the outcomes, where no vessel goes; the median stays with the majority.
`benchmarks/vessel.py` compares the two (and the medoid) on validation vessels and in every held-out setting.
"""

from __future__ import annotations

import numpy as np

from trajdiff.errors import ShapeError
from trajdiff.plugins.vessel.geo import EARTH_RADIUS_M, haversine_m

M_PER_DEG = float(np.radians(EARTH_RADIUS_M))  # metres per degree of latitude (and of longitude at the equator)

__all__ = ["METRICS", "ade_m", "displacement_m", "fde_m", "geometric_median", "min_ade_m", "min_fde_m", "sample_mean"]


def _check(samples: np.ndarray, truth: np.ndarray) -> None:
    if samples.ndim != 4 or truth.ndim != 3 or samples.shape[1:3] != truth.shape[:2] or truth.shape[-1] < 2:
        raise ShapeError(f"vessel metrics take samples [S, N, H, F] and truth [N, H, F] with lat, lon first; got "
                         f"{samples.shape} and {truth.shape}")


def displacement_m(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Metres between (lat, lon) rows of ``pred [..., H, >=2]`` and ``truth`` (broadcast): ``[..., H]``."""
    return haversine_m(pred[..., 0], pred[..., 1], truth[..., 0], truth[..., 1])


def sample_mean(samples: np.ndarray) -> np.ndarray:
    """The mean position of the samples, ``[S, ...] -> [...]`` (averaging degrees is exact to well under a
    metre at these spreads)."""
    return np.asarray(samples, dtype=np.float64).mean(axis=0)


def geometric_median(samples: np.ndarray, iterations: int = 60) -> np.ndarray:
    """The geometric median of (lat, lon) samples ``[S, ..., >=2]`` at each position, ``[..., 2]``: Weiszfeld's
    iteration from the mean, in a flat metric frame around the mean (exact to well under a metre at forecast
    spreads; distances floored at 1 mm)."""
    points = np.asarray(samples, dtype=np.float64)[..., :2]
    lat0, lon0 = points[..., 0].mean(0), points[..., 1].mean(0)
    east_scale = M_PER_DEG * np.cos(np.radians(lat0))
    xy = np.stack([(points[..., 1] - lon0) * east_scale, (points[..., 0] - lat0) * M_PER_DEG], -1)
    point = xy.mean(0)
    for _ in range(iterations):
        weight = 1.0 / np.maximum(np.linalg.norm(xy - point, axis=-1), 1e-3)
        point = (weight[..., None] * xy).sum(0) / weight.sum(0)[..., None]
    return np.stack([lat0 + point[..., 1] / M_PER_DEG, lon0 + point[..., 0] / east_scale], -1)


def ade_m(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance of the point forecast (`geometric_median`) from the truth over the horizon, metres."""
    _check(samples, truth)
    return float(displacement_m(geometric_median(samples), truth).mean())


def fde_m(samples: np.ndarray, truth: np.ndarray) -> float:
    """Distance of the point forecast (`geometric_median`) from the truth at the last step, metres."""
    _check(samples, truth)
    return float(displacement_m(geometric_median(samples), truth)[..., -1].mean())


def min_ade_m(samples: np.ndarray, truth: np.ndarray) -> float:
    _check(samples, truth)
    return float(displacement_m(samples, truth[None]).mean(-1).min(0).mean())


def min_fde_m(samples: np.ndarray, truth: np.ndarray) -> float:
    _check(samples, truth)
    return float(displacement_m(samples, truth[None])[..., -1].min(0).mean())


METRICS = {"ade_m": ade_m, "fde_m": fde_m, "min_ade_m": min_ade_m, "min_fde_m": min_fde_m}
