"""A closed-form linear forecaster: the deterministic base the diffusion model refines.

Predicting a residual over a cheap deterministic forecast lets the diffusion model spend its
capacity on what the forecast misses and on the uncertainty (Residual Denoising Diffusion Models;
LED's initializer). The base here is one ridge regression from the last ``history`` standardized
values of a column to its next ``horizon`` values, shared by all columns (channel-independent, as
in DLinear/NLinear, Zeng et al., 2023). It is solved exactly, no training loop.

Two anchors:

- ``"last"``: the last observed value is subtracted first and added back (NLinear's normalization):
  the forecast moves with the level of the history, the safe choice for drifting series;
- ``"mean"``: a plain linear map with a bias, which can pull long forecasts back towards the
  training mean (mean reversion); better for stationary series (ETTh1: test MSE at 192 steps
  0.4318 against 0.4341 anchored on the last value).

``"auto"`` (the default) checks both on ``FOLDS`` consecutive blocks of the last ``HOLDOUT`` share of
every training series, each block forecast by a fit on the rows before it (rolling origin), and keeps
"mean" only if it has the lower MSE on every block, else "last"; then refits the chosen one on
everything. Why several blocks: a mean that held over one late stretch may not hold later, and
calibration cannot repair a base that reverts to the wrong level, so reverting must be the better
forecast consistently. The choice never sees data outside the training series.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.errors import ConfigError, DataError

ANCHORS = ("last", "mean")
HOLDOUT = 0.3  # share of each training series held out when the anchor is chosen automatically
FOLDS = 3  # consecutive blocks of that share, each checked by a fit on the rows before it


def _windows(series: list[np.ndarray], history: int, horizon: int,
             max_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(history, future) pairs of the columns of every series: ``[N, history]``, ``[N, horizon]``, in the order of
    series, window start, column. With ``max_windows``, at most that many, drawn without replacement (seed 0)
    and gathered alone: memory grows with ``max_windows``, never with the data (the pairs of a 20-million-row
    series would take 92 GB)."""
    length = history + horizon
    usable = [values for values in series if len(values) >= length]
    sizes = np.asarray([(len(values) - length + 1) * values.shape[1] for values in usable], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros((0, history)), np.zeros((0, horizon))
    order = "C"  # the layouts the pairs always had (row sums, hence the last bits, depend on them)
    if max_windows is not None and total > max_windows:
        rows = np.random.default_rng(0).choice(total, max_windows, replace=False)
    else:
        rows, order = np.arange(total), "F"
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    owner = np.searchsorted(offsets, rows, side="right") - 1
    dtype = np.result_type(*usable)
    x, y = (np.empty((len(rows), columns), dtype=dtype, order=order) for columns in (history, horizon))
    steps = np.arange(length)
    grouped = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[grouped], np.arange(len(usable) + 1))
    for s, values in enumerate(usable):
        chosen = grouped[bounds[s]:bounds[s + 1]]
        for lo in range(0, len(chosen), 8192):  # bounded index arrays
            part = chosen[lo:lo + 8192]
            start, column = np.divmod(rows[part] - offsets[s], values.shape[1])
            pairs = values[start[:, None] + steps, column[:, None]]
            x[part], y[part] = pairs[:, :history], pairs[:, history:]
    return x, y


def _has_windows(series: list[np.ndarray], length: int) -> bool:
    return any(len(values) >= length for values in series)


def _normalize(x: np.ndarray, y: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=1, keepdims=True)
    spread = np.maximum(x.std(axis=1, keepdims=True), floor)
    return (x - mean) / spread, (y - mean) / spread


class RidgeForecaster:
    """future = W (history - a) + b + a for each column of a standardized window, where the anchor a
    is the last observed value (``anchor="last"``) or zero (``anchor="mean"``)."""

    def __init__(self, history: int, horizon: int, ridge: float = 1.0, anchor: str = "auto") -> None:
        if history < 1 or horizon < 1:
            raise ConfigError(f"a linear forecaster needs history >= 1 and horizon >= 1, got {history}, {horizon}")
        if anchor not in (*ANCHORS, "auto"):
            raise ConfigError(f"anchor must be 'last', 'mean' or 'auto', got {anchor!r}")
        self.history = history
        self.horizon = horizon
        self.ridge = float(ridge)
        self.anchor = anchor
        self.holdout_mse: dict[str, float] = {}  # per anchor, when chosen automatically (mean over the folds)
        self.holdout_folds: list[dict[str, float]] = []  # per fold, per anchor
        self.weights: np.ndarray | None = None  # [history + 1, horizon], last row is the bias

    @staticmethod
    def _design(x: np.ndarray, anchor: str) -> tuple[np.ndarray, np.ndarray | float]:
        """``[x - level, 1]`` (filled in place: one array, no temporaries) and the level."""
        level = x[:, -1:] if anchor == "last" else 0.0
        design = np.empty((len(x), x.shape[1] + 1), dtype=np.result_type(x, np.float64))
        np.subtract(x, level, out=design[:, :-1])
        design[:, -1] = 1.0
        return design, level

    def _solve(self, x: np.ndarray, y: np.ndarray, anchor: str) -> np.ndarray:
        design, level = self._design(x, anchor)
        gram = design.T @ design + self.ridge * np.eye(design.shape[1])
        return np.linalg.solve(gram, design.T @ (y - level))

    def _apply(self, weights: np.ndarray, x: np.ndarray, anchor: str) -> np.ndarray:
        design, level = self._design(x, anchor)
        return design @ weights + level

    def _choose_anchor(self, series: list[np.ndarray], max_windows: int, instance_norm: bool, floor: float) -> str:
        """"mean" if it has the lower MSE on every one of ``FOLDS`` late blocks of the series (each forecast by fits
        on the rows before it), else "last". Per-block MSEs in ``holdout_folds``, their mean in ``holdout_mse``."""
        self.holdout_folds = []
        for fold in range(FOLDS):
            cut = [int(len(values) * (1 - HOLDOUT * (FOLDS - fold) / FOLDS)) for values in series]
            end = [int(len(values) * (1 - HOLDOUT * (FOLDS - fold - 1) / FOLDS)) for values in series]
            early = [values[:c] for values, c in zip(series, cut, strict=True)]
            late = [values[max(0, c - self.history):e] for values, c, e in zip(series, cut, end, strict=True)]
            x_fit, y_fit = _windows(early, self.history, self.horizon, max_windows)
            if len(x_fit) == 0 or not _has_windows(late, self.history + self.horizon):
                continue
            if instance_norm:
                x_fit, y_fit = _normalize(x_fit, y_fit, floor)
            weights = {anchor: self._solve(x_fit, y_fit, anchor) for anchor in ANCHORS}
            del x_fit, y_fit  # the fitting and the checking windows are never held together
            x_check, y_check = _windows(late, self.history, self.horizon, max_windows)
            if instance_norm:
                x_check, y_check = _normalize(x_check, y_check, floor)
            self.holdout_folds.append({anchor: float(np.mean((self._apply(weights[anchor], x_check, anchor)
                                                              - y_check) ** 2)) for anchor in ANCHORS})
        if not self.holdout_folds:
            return "last"  # too little data to compare: the level-following anchor is the safe one
        self.holdout_mse = {anchor: float(np.mean([f[anchor] for f in self.holdout_folds])) for anchor in ANCHORS}
        return "mean" if all(f["mean"] < f["last"] for f in self.holdout_folds) else "last"

    def fit(self, series: list[np.ndarray], max_windows: int = 200_000, instance_norm: bool = False,
            floor: float = 0.05) -> RidgeForecaster:
        """Least squares over every window of every column of the (standardized) ``series`` [T_i, F].

        With ``instance_norm`` each window is first centred and scaled by its history's mean and
        spread (at least ``floor``), as the encoder does before calling `predict`. An ``"auto"``
        anchor is resolved here (see the module docstring) and stored as the chosen one."""
        if not _has_windows(series, self.history + self.horizon):
            raise DataError(f"no series has {self.history + self.horizon} rows to fit the linear forecaster "
                            f"(history {self.history} + horizon {self.horizon})")
        if self.anchor == "auto":  # first, so that its windows are gone before these are drawn
            self.anchor = self._choose_anchor(series, max_windows, instance_norm, floor)
        x, y = _windows(series, self.history, self.horizon, max_windows)
        if instance_norm:
            x, y = _normalize(x, y, floor)
        self.weights = self._solve(x, y, self.anchor)
        return self

    def predict(self, history: np.ndarray) -> np.ndarray:
        """Standardized history ``[history, F]`` -> forecast ``[horizon, F]``."""
        if self.weights is None:
            raise ConfigError("the linear forecaster is not fitted")
        if history.shape[0] != self.history:
            raise DataError(f"the linear forecaster was fitted for {self.history} rows of history, "
                            f"got {history.shape[0]}")
        return self._apply(self.weights, history.T, self.anchor).T

    def state_dict(self) -> dict[str, Any]:
        if self.weights is None:
            raise ConfigError("the linear forecaster is not fitted")
        return {"history": self.history, "horizon": self.horizon, "ridge": self.ridge, "anchor": self.anchor,
                "holdout_mse": dict(self.holdout_mse), "holdout_folds": list(self.holdout_folds),
                "weights": self.weights.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RidgeForecaster:
        # models written before the anchor existed were anchored on the last value
        model = cls(int(state["history"]), int(state["horizon"]), float(state.get("ridge", 1.0)),
                    anchor=str(state.get("anchor", "last")))
        if model.anchor == "auto":
            raise ConfigError("a fitted linear forecaster's state must name its anchor ('last' or 'mean')")
        model.holdout_mse = dict(state.get("holdout_mse", {}))
        model.holdout_folds = list(state.get("holdout_folds", []))
        model.weights = np.asarray(state["weights"], dtype=np.float64)
        expected = (model.history + 1, model.horizon)
        if model.weights.shape != expected:
            raise ConfigError(f"linear forecaster weights have shape {model.weights.shape}, expected {expected}")
        return model
