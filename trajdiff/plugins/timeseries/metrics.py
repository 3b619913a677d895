"""Forecast metrics for sampled time series, in user units.

Each takes ``samples [S, N, H, F]`` (S samples of N forecasts, H steps, F columns) and
``truth [N, H, F]`` as numpy arrays and returns a float: point errors of the per-element sample
median (robust to a few wild samples), the sample CRPS, and central-interval coverage.
"""

from __future__ import annotations

import numpy as np
import torch

from trajdiff.core.metrics import crps_samples, interval_coverage
from trajdiff.errors import ShapeError

__all__ = ["METRICS", "coverage_50", "coverage_90", "crps", "mae_median", "mse_median"]


def _check(samples: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, t = np.array(samples, dtype=np.float64), np.array(truth, dtype=np.float64)  # writable copies for torch
    if s.ndim != 4 or t.ndim != 3 or s.shape[1:] != t.shape or s.shape[0] == 0:
        raise ShapeError(
            f"metrics expect samples [S, N, H, F] and truth [N, H, F] with S >= 1; got samples {s.shape} and truth "
            f"{t.shape} (for one forecast add the axis with x[None])"
        )
    return s, t


def mse_median(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error of the per-element sample median."""
    s, t = _check(samples, truth)
    return float(np.mean((np.median(s, axis=0) - t) ** 2))


def mae_median(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error of the per-element sample median."""
    s, t = _check(samples, truth)
    return float(np.mean(np.abs(np.median(s, axis=0) - t)))


def crps(samples: np.ndarray, truth: np.ndarray) -> float:
    """Sample CRPS (fair estimator) per element, averaged; equals the absolute error for one sample."""
    s, t = _check(samples, truth)
    return float(crps_samples(torch.from_numpy(s), torch.from_numpy(t), reduction="mean"))


def coverage_50(samples: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of truths inside the samples' central 50% interval (calibrated: about 0.5)."""
    s, t = _check(samples, truth)
    return float(interval_coverage(torch.from_numpy(s), torch.from_numpy(t), 0.5))


def coverage_90(samples: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of truths inside the samples' central 90% interval (calibrated: about 0.9)."""
    s, t = _check(samples, truth)
    return float(interval_coverage(torch.from_numpy(s), torch.from_numpy(t), 0.9))


METRICS = {
    "mse_median": mse_median,
    "mae_median": mae_median,
    "crps": crps,
    "coverage_50": coverage_50,
    "coverage_90": coverage_90,
}
