"""A closed-form linear forecaster: the deterministic base the diffusion model refines.

Predicting a residual over a cheap deterministic forecast lets the diffusion model spend its
capacity on what the forecast misses and on the uncertainty (Residual Denoising Diffusion Models;
LED's initializer). The base here is one ridge regression from the last ``history`` standardized
values of a column to its next ``horizon`` values, shared by all columns (channel-independent, as
in DLinear/NLinear, Zeng et al., 2023), with the last observed value subtracted first (NLinear's
normalization, which keeps the forecast level-free). It is solved exactly, no training loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.errors import ConfigError, DataError


class RidgeForecaster:
    """future = W (history - last) + b + last, for each column of a standardized window."""

    def __init__(self, history: int, horizon: int, ridge: float = 1.0) -> None:
        if history < 1 or horizon < 1:
            raise ConfigError(f"a linear forecaster needs history >= 1 and horizon >= 1, got {history}, {horizon}")
        self.history = history
        self.horizon = horizon
        self.ridge = float(ridge)
        self.weights: np.ndarray | None = None  # [history + 1, horizon], last row is the bias

    def fit(self, series: list[np.ndarray], max_windows: int = 200_000, instance_norm: bool = False,
            floor: float = 0.05) -> RidgeForecaster:
        """Least squares over every window of every column of the (standardized) ``series`` [T_i, F].

        With ``instance_norm`` each window is first centred and scaled by its history's mean and
        spread (at least ``floor``), as the encoder does before calling `predict`."""
        length = self.history + self.horizon
        inputs, targets = [], []
        for values in series:
            if len(values) < length:
                continue
            view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)  # [N, F, length]
            view = view.reshape(-1, length)
            inputs.append(view[:, : self.history])
            targets.append(view[:, self.history:])
        if not inputs:
            raise DataError(f"no series has {length} rows to fit the linear forecaster (history {self.history} + "
                            f"horizon {self.horizon})")
        x = np.concatenate(inputs)
        y = np.concatenate(targets)
        if len(x) > max_windows:
            keep = np.random.default_rng(0).choice(len(x), max_windows, replace=False)
            x, y = x[keep], y[keep]
        if instance_norm:
            mean = x.mean(axis=1, keepdims=True)
            spread = np.maximum(x.std(axis=1, keepdims=True), floor)
            x, y = (x - mean) / spread, (y - mean) / spread
        last = x[:, -1:]
        design = np.concatenate([x - last, np.ones((len(x), 1))], axis=1)
        gram = design.T @ design + self.ridge * np.eye(design.shape[1])
        self.weights = np.linalg.solve(gram, design.T @ (y - last))
        return self

    def predict(self, history: np.ndarray) -> np.ndarray:
        """Standardized history ``[history, F]`` -> forecast ``[horizon, F]``."""
        if self.weights is None:
            raise ConfigError("the linear forecaster is not fitted")
        if history.shape[0] != self.history:
            raise DataError(f"the linear forecaster was fitted for {self.history} rows of history, "
                            f"got {history.shape[0]}")
        last = history[-1:]
        design = np.concatenate([(history - last).T, np.ones((history.shape[1], 1))], axis=1)  # [F, history+1]
        return (design @ self.weights).T + last

    def state_dict(self) -> dict[str, Any]:
        if self.weights is None:
            raise ConfigError("the linear forecaster is not fitted")
        return {"history": self.history, "horizon": self.horizon, "ridge": self.ridge,
                "weights": self.weights.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RidgeForecaster:
        model = cls(int(state["history"]), int(state["horizon"]), float(state.get("ridge", 1.0)))
        model.weights = np.asarray(state["weights"], dtype=np.float64)
        expected = (model.history + 1, model.horizon)
        if model.weights.shape != expected:
            raise ConfigError(f"linear forecaster weights have shape {model.weights.shape}, expected {expected}")
        return model
