"""Calibration of a model's samples on held-out data: where their centre sits and how wide they spread.

Two numbers, both chosen on windows the model was not trained on (a validation period):

- ``median_weight`` w: each window's samples are shifted so that their median moves to
  ``base + w (median - base)``, where ``base`` is the encoder's deterministic forecast (the
  linear forecast a residual model refines). w = 1 keeps the model's centre, w = 0 trusts the
  base; it is picked on a grid of 0.1 by the MSE of the shifted median. Without a base, w = 1.
- ``spread_factor`` f: the samples are then widened (f > 1) or narrowed around their median so that
  the central ``level`` interval covers that share of the held-out values (bisection).

Why: a learned residual can help on the training period and hurt on a later one (ETTh1), and a
sampler's spread can be too narrow; both are cheap to measure on held-out windows and to undo, and
the samples stay the model's draws up to one shift and one scale per window.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trajdiff.errors import CheckpointError, ConfigError, ShapeError

FILE = "calibration.json"
WEIGHTS = np.linspace(0.0, 1.0, 11)


@dataclass(frozen=True)
class Calibration:
    """A shift towards the base and a scale around the median, fitted on ``windows`` held-out windows."""

    median_weight: float = 1.0
    spread_factor: float = 1.0
    level: float = 0.9
    windows: int = 0
    data: str = ""

    def apply(self, samples: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """Samples ``[S, N, H, F]`` (and the base ``[N, H, F]``, needed when w < 1) -> calibrated samples."""
        samples = np.asarray(samples, dtype=np.float64)
        median = np.median(samples, axis=0)
        if self.median_weight != 1.0:
            if base is None or np.shape(base) != median.shape:
                raise ShapeError(f"calibration with median weight {self.median_weight} needs the base forecast of "
                                 f"shape {median.shape}, got {None if base is None else np.shape(base)}")
            shift = (1.0 - self.median_weight) * (median - base)
            samples, median = samples - shift, median - shift
        return median + self.spread_factor * (samples - median)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> Calibration | None:
        """The calibration stored in a model directory, or None if it was never calibrated."""
        path = Path(model_dir) / FILE
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path} is not a calibration written by `trajdiff calibrate` ({error}); "
                                  "delete it or calibrate again") from error


def coverage(samples: np.ndarray, truth: np.ndarray, level: float) -> float:
    """Share of ``truth`` inside the samples' central ``level`` interval (per element quantiles)."""
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(np.mean((truth >= low) & (truth <= high)))


def fit_calibration(samples: np.ndarray, truth: np.ndarray, base: np.ndarray | None = None, *, level: float = 0.9,
                    spread: bool = True, data: str = "") -> Calibration:
    """Chooses the median weight (if a base is given) and then, with ``spread``, the spread factor on
    held-out windows (without it the factor stays 1: the model's own spread is kept, e.g. when the
    held-out period is known to be more volatile than the one forecast).

    ``samples`` ``[S, N, H, F]``, ``truth`` and ``base`` ``[N, H, F]``."""
    if not 0.0 < level < 1.0:
        raise ConfigError(f"the interval level must be between 0 and 1 (e.g. 0.9), got {level}")
    samples, truth = np.asarray(samples, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if samples.ndim < 2 or samples.shape[1:] != truth.shape:
        raise ShapeError(f"samples {samples.shape} and truth {truth.shape} do not match ([S, N, ...] and [N, ...])")
    if samples.shape[0] < 2:
        raise ConfigError("calibration needs at least 2 samples per window to measure their spread")
    median = np.median(samples, axis=0)
    weight = 1.0
    if base is not None:
        errors = [np.nanmean((base + w * (median - base) - truth) ** 2) for w in WEIGHTS]
        weight = float(WEIGHTS[int(np.argmin(errors))])
    if not spread:
        return Calibration(weight, 1.0, level, int(truth.shape[0]), data)
    shifted = Calibration(median_weight=weight).apply(samples, base)
    low, high = 0.1, 10.0
    for _ in range(40):
        mid = (low * high) ** 0.5
        if coverage(Calibration(spread_factor=mid).apply(shifted), truth, level) < level:
            low = mid
        else:
            high = mid
    return Calibration(weight, float((low * high) ** 0.5), level, int(truth.shape[0]), data)
