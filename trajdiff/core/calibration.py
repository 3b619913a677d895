"""Calibration of a model's samples on held-out data: where their centre sits and how wide they spread.

Two numbers, both chosen on windows the model was not trained on (a validation period):

- ``median_weight`` w: each window's samples are shifted so that their median moves to
  ``base + w (median - base)``, where ``base`` is the encoder's deterministic forecast (the
  linear forecast a residual model refines). w = 1 keeps the model's centre, w = 0 trusts the
  base; it is picked on a grid of 0.1 by the MSE of the shifted median. Without a base, w = 1.
- ``spread_factor`` f: the samples are then widened (f > 1) or narrowed around their median so that
  the central ``level`` interval covers that share of the held-out values (bisection).

A base may leave columns NaN (a vessel's speed and course, derived from its positions; a pedestrian's
neighbours): those columns are neither shifted nor scaled, and the fit reads only the others.

Why: a learned residual can help on the training period and hurt on a later one (ETTh1), and a
sampler's spread can be too narrow; both are cheap to measure on held-out windows and to undo, and
the samples stay the model's draws up to one shift and one scale per window.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trajdiff.core.checkpoint import attach_file, verify_attached
from trajdiff.errors import CalibrationError, CheckpointError, ConfigError, ShapeError

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
        """Samples ``[S, N, H, F]`` (and the base ``[N, H, F]``, needed when w < 1) -> calibrated samples. Where
        the base is NaN the samples are returned as drawn."""
        samples = np.asarray(samples, dtype=np.float64)
        median = np.median(samples, axis=0)
        if base is not None and np.shape(base) != median.shape:
            raise ShapeError(f"the base forecast must have the samples' shape {median.shape} without the sample axis, "
                             f"got {np.shape(base)}")
        if self.median_weight != 1.0:
            if base is None:
                raise ShapeError(f"calibration with median weight {self.median_weight} needs the base forecast of "
                                 f"shape {median.shape}, got None")
            shift = np.nan_to_num((1.0 - self.median_weight) * (median - base))
            samples, median = samples - shift, median - shift
        out = median + self.spread_factor * (samples - median)
        return out if base is None else np.where(np.isfinite(base), out, samples)

    def save(self, model_dir: str | Path) -> Path:
        """Writes calibration.json (atomically) and, in a model directory, records its sha256 in config.json
        (`attach_file`), so that an edited or corrupt file is caught when the model is loaded."""
        problem = _problem(asdict(self))
        if problem:
            raise ConfigError(f"cannot store this calibration: {problem}")
        path = Path(model_dir) / FILE
        tmp = path.with_name(f".{FILE}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self), indent=2, allow_nan=False))
            os.replace(tmp, path)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"cannot write {path}: {error.strerror or error}") from error
        if (Path(model_dir) / "config.json").is_file():
            attach_file(model_dir, FILE)
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> Calibration | None:
        """The calibration stored in a model directory, or None if it was never calibrated. In a model
        directory the file must match the sha256 recorded when `calibrate` wrote it; its fields are checked
        (types, finite, ranges). Raises :class:`CalibrationError` naming the file and field."""
        path = Path(model_dir) / FILE
        if not path.exists():
            return None
        fix = "calibrate again (`trajdiff calibrate` replaces the file) or delete it"
        try:
            verify_attached(model_dir, FILE)
        except CheckpointError as error:
            raise CalibrationError(f"{error}; {fix}") from error
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise CalibrationError(f"cannot read {path} as JSON ({error}); {fix}") from error
        problem = _problem(values)
        if problem:
            raise CalibrationError(f"{path} is not a calibration written by `trajdiff calibrate`: {problem}; {fix}")
        return cls(**values)


def _problem(values: object) -> str | None:
    """What is wrong with a calibration's fields, or None. Weight in [0, 1] (the grid `fit_calibration` picks
    from), spread factor in [0.1, 10] (the range it searches), level in (0, 1), windows a count, data a string."""
    if not isinstance(values, dict):
        return f"it holds a JSON {type(values).__name__}, not an object"
    unknown = sorted(set(values) - {*RANGES, "data"})
    missing = [name for name in ("median_weight", "spread_factor", "level") if name not in values]
    if unknown or missing:
        return f"unknown field(s) {unknown}" if unknown else f"missing field(s) {missing}"
    for name, (low, high, closed) in RANGES.items():
        value = values.get(name, low)
        kinds = (int,) if name == "windows" else (int, float)
        inside = (not isinstance(value, bool) and isinstance(value, kinds) and bool(np.isfinite(value))
                  and (low <= value <= high if closed else low < value < high))
        if not inside:
            kind = "a whole number" if name == "windows" else "a finite number"
            return (f"field {name!r} is {value!r} ({type(value).__name__}), not {kind} in "
                    f"{'[' if closed else '('}{low}, {high}{']' if closed else ')'}")
    if not isinstance(values.get("data", ""), str):
        return f"field 'data' is {values['data']!r}, not a string"
    return None


RANGES = {"median_weight": (0.0, 1.0, True), "spread_factor": (0.1, 10.0, True), "level": (0.0, 1.0, False),
          "windows": (0, 2**62, True)}


def coverage(samples: np.ndarray, truth: np.ndarray, level: float) -> float:
    """Share of ``truth`` inside the samples' central ``level`` interval (per element quantiles)."""
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(np.mean((truth >= low) & (truth <= high)))


def fit_calibration(samples: np.ndarray, truth: np.ndarray, base: np.ndarray | None = None, *, level: float = 0.9,
                    spread: bool = True, data: str = "") -> Calibration:
    """Chooses the median weight (if a base is given) and then, with ``spread``, the spread factor on
    held-out windows (without it the factor stays 1: the model's own spread is kept, e.g. when the
    held-out period is known to be more volatile than the one forecast).

    ``samples`` ``[S, N, H, F]``, ``truth`` and ``base`` ``[N, H, F]`` (NaN in the base: that element is left as
    drawn and not fitted on)."""
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
        base = np.asarray(base, dtype=np.float64)
        if base.shape != truth.shape:
            raise ShapeError(f"base {base.shape} and truth {truth.shape} do not match")
        if not np.isfinite(base).any():
            raise ConfigError("the base forecast is NaN everywhere: there is nothing to calibrate against it")
        errors = [np.nanmean((base + w * (median - base) - truth) ** 2) for w in WEIGHTS]
        weight = float(WEIGHTS[int(np.argmin(errors))])
    if not spread:
        return Calibration(weight, 1.0, level, int(truth.shape[0]), data)
    shifted = Calibration(median_weight=weight).apply(samples, base)
    used = np.ones(truth.shape, dtype=bool) if base is None else np.isfinite(base)  # the columns calibrated
    shifted, held_out = shifted[:, used], truth[used]
    low, high = 0.1, 10.0
    for _ in range(40):
        mid = (low * high) ** 0.5
        if coverage(Calibration(spread_factor=mid).apply(shifted), held_out, level) < level:
            low = mid
        else:
            high = mid
    return Calibration(weight, float((low * high) ** 0.5), level, int(truth.shape[0]), data)
