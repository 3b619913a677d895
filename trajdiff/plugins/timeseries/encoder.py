"""Per-column standardization of time-series windows.

Why: series such as ETTh1 mix columns in very different units; a model sees each column with zero
mean and unit variance, using statistics from the training episodes only (no test leakage).
Windows stay in absolute time (no local frame), so ``encode`` returns an empty frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.core.data import Episodes, Normalizer
from trajdiff.errors import ConfigError, DataError, ShapeError
from trajdiff.plugins.spec import Encoder

__all__ = ["SeriesEncoder"]

KIND = "timeseries.standard"


class SeriesEncoder(Encoder):
    """Standardizes each column with the mean and std of the training episodes (core `Normalizer`).

    ``columns`` (optional) fixes the expected column names; otherwise they are taken from the
    episodes given to :meth:`fit`. ``dim`` is the number of columns.
    """

    def __init__(self, columns: list[str] | None = None, normalizer: Normalizer | None = None) -> None:
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
    def dim(self) -> int:
        """Number of columns (features per token)."""
        if self.columns is not None:
            return len(self.columns)
        if self.fitted:
            return self.normalizer.dim  # type: ignore[union-attr]
        raise ConfigError("SeriesEncoder has no columns yet; call .fit(episodes) first")

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
        return self

    def _norm(self) -> Normalizer:
        if not self.fitted:
            raise ConfigError("SeriesEncoder is not fitted; call .fit(training_episodes) or use from_state(...)")
        return self.normalizer  # type: ignore[return-value]

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        """A raw window [T, F] -> (standardized [T, F], {}); ``history`` is checked but not needed."""
        norm = self._norm()
        arr = np.asarray(window)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ShapeError(
                f"SeriesEncoder.encode expects a window [T, {self.dim}] (columns {self.columns}), "
                f"got shape {tuple(arr.shape)}"
            )
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or not 0 <= history <= len(arr):
            raise ConfigError(f"history must be an integer in [0, {len(arr)}] for this window, got {history!r}")
        return norm.transform(arr.astype(np.float64, copy=False)), {}

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        """Standardized tokens [..., T, F] -> values in user units [..., T, F]."""
        arr = np.asarray(x)
        if arr.ndim < 2:
            raise ShapeError(f"SeriesEncoder.decode expects [..., T, {self.dim}], got shape {tuple(arr.shape)}")
        return self._norm().inverse(arr)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state: kind, column names and the normalizer's statistics."""
        return {"kind": KIND, "columns": list(self.columns or []), "normalizer": self._norm().state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesEncoder:
        """Rebuilds a fitted encoder from :meth:`state_dict` output."""
        if not isinstance(state, dict) or state.get("kind") != KIND:
            got = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise ConfigError(f"not a SeriesEncoder state (kind {got!r}, expected {KIND!r}); pass state_dict() output")
        columns = state.get("columns")
        if not isinstance(columns, list) or not columns:
            raise ConfigError("SeriesEncoder state lacks its 'columns' list; the state is corrupt - re-fit")
        return cls(columns=columns, normalizer=Normalizer.from_state(state.get("normalizer")))  # type: ignore[arg-type]
