"""Vessel forecast metrics in metres (great-circle distance between forecast and true positions).

Each takes samples ``[S, N, H, F]`` and truth ``[N, H, F]`` with lat, lon as the first two columns.
``ade``/``fde`` score the mean of the samples (the point forecast); ``min_ade``/``min_fde`` the best of
the S samples per window (minADE_S / minFDE_S, as in trajectory-forecasting papers).
"""

from __future__ import annotations

import numpy as np

from trajdiff.errors import ShapeError
from trajdiff.plugins.vessel.geo import haversine_m

__all__ = ["METRICS", "ade_m", "displacement_m", "fde_m", "min_ade_m", "min_fde_m", "sample_mean"]


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


def ade_m(samples: np.ndarray, truth: np.ndarray) -> float:
    _check(samples, truth)
    return float(displacement_m(sample_mean(samples), truth).mean())


def fde_m(samples: np.ndarray, truth: np.ndarray) -> float:
    _check(samples, truth)
    return float(displacement_m(sample_mean(samples), truth)[..., -1].mean())


def min_ade_m(samples: np.ndarray, truth: np.ndarray) -> float:
    _check(samples, truth)
    return float(displacement_m(samples, truth[None]).mean(-1).min(0).mean())


def min_fde_m(samples: np.ndarray, truth: np.ndarray) -> float:
    _check(samples, truth)
    return float(displacement_m(samples, truth[None])[..., -1].min(0).mean())


METRICS = {"ade_m": ade_m, "fde_m": fde_m, "min_ade_m": min_ade_m, "min_fde_m": min_fde_m}
