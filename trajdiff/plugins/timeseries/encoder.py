"""Encoding of time-series windows: per-column standardization, an optional linear residual, patches.

Why: series such as ETTh1 mix columns in very different units; a model sees each column with zero
mean and unit variance, using statistics from the training episodes only (no test leakage).

Two options make forecasting models better and cheaper:

- ``residual="linear"``: the future rows become the residual over a closed-form linear forecast
  from the history (`RidgeForecaster`), scaled to unit variance; decoding adds the forecast back.
  The frame of each window carries its forecast. ``anchor`` sets its level: "last" follows the last
  observed value, "mean" may revert to the training mean, "auto" picks on held-out training rows.
- ``instance_norm=True``: each window is also centred and scaled by its own history (RevIN), so the
  model and the linear forecast see level- and scale-free shapes; the frame carries both.
- ``global_base=True`` (with both): the linear forecast is made on the globally standardized window
  (so it may revert to the training mean) and only the model sees the window in its own scale: the
  residual is divided by the history's spread.
- ``patch=P``: P consecutive rows form one token of P * F features (PatchTST's patches, Nie et al.,
  2023): a 192-row window becomes 24 tokens, which makes attention cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.core.data import Episodes, Normalizer
from trajdiff.errors import ConfigError, DataError, ShapeError
from trajdiff.plugins.spec import Encoder
from trajdiff.plugins.timeseries.linear import RidgeForecaster

__all__ = ["SeriesEncoder"]

KIND = "timeseries.standard"
INSTANCE_FLOOR = 0.05  # smallest per-window spread, in standardized units (flat windows stay finite)


class SeriesEncoder(Encoder):
    """Standardizes each column with the mean and std of the training episodes (core `Normalizer`).

    ``columns`` (optional) fixes the expected column names; otherwise they are taken from the
    episodes given to :meth:`fit`. ``dim`` is the number of columns.
    """

    def __init__(
        self,
        columns: list[str] | None = None,
        normalizer: Normalizer | None = None,
        *,
        patch: int = 1,
        residual: str = "none",
        history: int | None = None,
        horizon: int | None = None,
        forecaster: RidgeForecaster | None = None,
        residual_scale: list[float] | None = None,
        instance_norm: bool = False,
        anchor: str = "auto",
        global_base: bool = False,
    ) -> None:
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
            raise ConfigError(f"patch must be a positive integer (rows per token), got {patch!r}")
        if residual not in ("none", "linear"):
            raise ConfigError(f"residual must be 'none' or 'linear', got {residual!r}")
        if residual == "linear" and forecaster is None and (not history or not horizon):
            raise ConfigError("residual='linear' needs history and horizon (rows) to fit the linear forecaster")
        if anchor not in ("auto", "last", "mean"):
            raise ConfigError(f"anchor must be 'auto', 'last' or 'mean' (the linear forecast's level), got {anchor!r}")
        self.anchor = forecaster.anchor if forecaster is not None else anchor
        if global_base and not (instance_norm and residual == "linear"):
            raise ConfigError("global_base needs instance_norm=True and residual='linear' (it keeps the linear "
                              "forecast in global units while the model sees each window in its own scale)")
        self.global_base = bool(global_base)
        self.patch = patch
        self.rows_per_token = patch
        self.instance_norm = bool(instance_norm)
        self.residual = residual
        self.history = history
        self.horizon = horizon
        self.forecaster = forecaster
        self.residual_scale = None if residual_scale is None else np.asarray(residual_scale, dtype=np.float64)
        if columns is not None and (isinstance(columns, str) or not all(isinstance(c, str) for c in columns)):
            raise ConfigError(f"columns must be a list of column names, got {columns!r}")
        self.columns: list[str] | None = list(columns) if columns is not None else None
        self.normalizer = normalizer
        if normalizer is not None and self.columns is not None and normalizer.dim != len(self.columns):
            raise ConfigError(
                f"the normalizer has {normalizer.dim} features but {len(self.columns)} columns are named"
            )

    @property
    def fitted(self) -> bool:
        return self.normalizer is not None and self.normalizer.fitted

    @property
    def columns_count(self) -> int:
        if self.columns is not None:
            return len(self.columns)
        if self.fitted:
            return self.normalizer.dim  # type: ignore[union-attr]
        raise ConfigError("SeriesEncoder has no columns yet; call .fit(episodes) first")

    @property
    def dim(self) -> int:
        """Features per token: columns x rows per token."""
        return self.columns_count * self.patch

    def fit(self, episodes: Episodes) -> SeriesEncoder:
        """Learns per-column mean and std from training episodes; returns self."""
        if not isinstance(episodes, Episodes):
            raise DataError(f"SeriesEncoder.fit needs Episodes, got {type(episodes).__name__}")
        if self.columns is not None and list(episodes.columns) != self.columns:
            raise DataError(
                f"SeriesEncoder expects columns {self.columns} but the episodes have {list(episodes.columns)}; "
                "load the data with columns=[...] in that order"
            )
        self.columns = list(episodes.columns)
        self.normalizer = Normalizer("standard").fit(episodes)
        if self.residual == "linear":
            assert self.history and self.horizon
            standardized = [self.normalizer.transform(np.asarray(seq, dtype=np.float64)) for seq in episodes.sequences]
            self.forecaster = RidgeForecaster(self.history, self.horizon, anchor=self.anchor).fit(
                standardized, instance_norm=self.instance_norm and not self.global_base)
            self.anchor = self.forecaster.anchor
            errors = []
            length = self.history + self.horizon
            for values in standardized:
                if len(values) < length:
                    continue
                for start in range(0, len(values) - length + 1, max(1, (len(values) - length) // 500)):
                    raw = values[start:start + length]
                    window, mean, spread = self._local(raw, self.history)
                    errors.append(window[self.history:] - self._forecast(raw, window, mean, spread))
            self.residual_scale = np.maximum(np.concatenate(errors).std(axis=0), 1e-6)
        return self

    def _local(self, z: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Instance normalization (RevIN, Kim et al., 2022): each column of a window divided by its
        history's spread after removing its history's mean; identity when ``instance_norm`` is off."""
        if not self.instance_norm or history == 0:
            return z, np.zeros(z.shape[1]), np.ones(z.shape[1])
        mean = z[:history].mean(axis=0)
        spread = np.maximum(z[:history].std(axis=0), INSTANCE_FLOOR)
        return (z - mean) / spread, mean, spread

    def _forecast(self, z: np.ndarray, local: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """The linear forecast of the future rows in the window's frame, from the standardized window ``z``
        (or its local version ``local``): with ``global_base`` made on ``z`` and moved into the frame."""
        if self.global_base:
            return (self.forecaster.predict(z[: self.history]) - mean) / spread  # type: ignore[union-attr]
        return self.forecaster.predict(local[: self.history])  # type: ignore[union-attr]

    def column_scale(self) -> np.ndarray | None:
        """Each column's training standard deviation (the normalizer's scale)."""
        return None if not self.fitted else np.asarray(self._norm().scale, dtype=np.float64)

    def _norm(self) -> Normalizer:
        if not self.fitted:
            raise ConfigError("SeriesEncoder is not fitted; call .fit(training_episodes) or use from_state(...)")
        return self.normalizer  # type: ignore[return-value]

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        """A raw window [T, F] -> (tokens [T / patch, patch * F], frame). Only the first ``history`` rows
        are read to build the frame (the linear forecast), so later rows may be placeholders."""
        norm = self._norm()
        arr = np.asarray(window)
        columns = self.columns_count
        if arr.ndim != 2 or arr.shape[1] != columns:
            raise ShapeError(
                f"SeriesEncoder.encode expects a window [T, {columns}] (columns {self.columns}), "
                f"got shape {tuple(arr.shape)}"
            )
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or not 0 <= history <= len(arr):
            raise ConfigError(f"history must be an integer in [0, {len(arr)}] for this window, got {history!r}")
        if len(arr) % self.patch:
            raise ShapeError(f"a window of {len(arr)} rows does not fill whole patches of {self.patch} rows")
        standardized = norm.transform(arr.astype(np.float64, copy=False))
        z, mean, spread = self._local(standardized, history)
        frame: dict[str, Any] = {"mean": mean, "spread": spread} if self.instance_norm else {}
        if self.residual == "linear":
            if history != self.history or len(arr) != self.history + self.horizon:  # type: ignore[operator]
                raise ShapeError(f"this encoder forecasts {self.horizon} rows from {self.history}; got a window of "
                                 f"{len(arr)} rows with history {history}")
            forecast = self._forecast(standardized, z, mean, spread)
            z = z.copy()
            z[history:] = (z[history:] - forecast) / self.residual_scale
            frame.update(forecast=forecast, history=history)
        return z.reshape(len(z) // self.patch, self.patch * columns), frame

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        """Tokens [..., T / patch, patch * F] -> values in user units [..., T, F]."""
        arr = np.asarray(x, dtype=np.float64)
        columns = self.columns_count
        if arr.ndim < 2 or arr.shape[-1] != self.dim:
            raise ShapeError(f"SeriesEncoder.decode expects [..., T, {self.dim}], got shape {tuple(arr.shape)}")
        z = arr.reshape(*arr.shape[:-2], arr.shape[-2] * self.patch, columns)
        if "forecast" in frame:
            history = frame["history"]
            z = z.copy()
            z[..., history:, :] = z[..., history:, :] * self.residual_scale + frame["forecast"]
        if "spread" in frame:
            z = z * frame["spread"] + frame["mean"]
        return self._norm().inverse(z)

    def base(self, frame: dict[str, Any]) -> np.ndarray | None:
        """The linear forecast of the future rows ``[horizon, F]`` in user units (None without ``residual``)."""
        if "forecast" not in frame:
            return None
        z = np.asarray(frame["forecast"], dtype=np.float64)
        if "spread" in frame:
            z = z * frame["spread"] + frame["mean"]
        return self._norm().inverse(z)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state: kind, column names and the normalizer's statistics."""
        state: dict[str, Any] = {"kind": KIND, "columns": list(self.columns or []),
                                 "normalizer": self._norm().state_dict(), "patch": self.patch,
                                 "residual": self.residual, "history": self.history, "horizon": self.horizon,
                                 "instance_norm": self.instance_norm, "anchor": self.anchor,
                                 "global_base": self.global_base}
        if self.residual == "linear":
            state["forecaster"] = self.forecaster.state_dict()  # type: ignore[union-attr]
            state["residual_scale"] = self.residual_scale.tolist()  # type: ignore[union-attr]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesEncoder:
        """Rebuilds a fitted encoder from :meth:`state_dict` output."""
        if not isinstance(state, dict) or state.get("kind") != KIND:
            got = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise ConfigError(f"not a SeriesEncoder state (kind {got!r}, expected {KIND!r}); pass state_dict() output")
        columns = state.get("columns")
        if not isinstance(columns, list) or not columns:
            raise ConfigError("SeriesEncoder state lacks its 'columns' list; the state is corrupt - re-fit")
        forecaster = RidgeForecaster.from_state(state["forecaster"]) if state.get("forecaster") else None
        return cls(
            columns=columns,
            normalizer=Normalizer.from_state(state.get("normalizer")),  # type: ignore[arg-type]
            patch=int(state.get("patch", 1)),
            residual=state.get("residual", "none"),
            history=state.get("history"),
            horizon=state.get("horizon"),
            forecaster=forecaster,
            residual_scale=state.get("residual_scale"),
            instance_norm=bool(state.get("instance_norm", False)),
            anchor=str(state.get("anchor", "last")),
            global_base=bool(state.get("global_base", False)),
        )
