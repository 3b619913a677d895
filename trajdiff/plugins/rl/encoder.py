"""State-action windows -> normalized tokens, optionally every ``skip``-th step only ("jumpy" plans).

Planning over every fourth state of a maze run keeps the sequence short (a 128-step plan is 32
tokens) while a tracking controller fills in the steps between; ``skip=1`` keeps every step, as
executing planned actions needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.core.data import Episodes, Normalizer
from trajdiff.errors import ConfigError, ShapeError
from trajdiff.plugins.rl.support import MAX_DIMS, VisitedGrid
from trajdiff.plugins.spec import Encoder

GOAL_PREFIXES = ("achieved_goal", "desired_goal")
SOURCE_KEYS = ("dataset_id", "env_id", "eval_env_id", "eval_env_spec", "ref_min_score", "ref_max_score")
"""What a fitted encoder remembers of its data set, so that `trajdiff plan` can score against it."""


class StateActionEncoder(Encoder):
    """Keeps the columns not starting with one of ``drop`` (by default the goal entries, which the
    planner inpaints instead), standardizes them with data-set statistics, and takes every
    ``skip``-th row as a token. Decoding interpolates linearly between tokens.

    Inside a token, actions lag the state by one step: row t holds (s_t, a_{t-1}), and the first row
    of a window holds the mean action. The first token, the present, is then entirely known, so the
    planner conditions on it exactly as training did (a clean context token), and the action to
    take now is generated with the next token. ``decode`` undoes the lag: rows are (s_t, a_t) again.
    """

    def __init__(self, skip: int = 1, drop: tuple[str, ...] | list[str] = GOAL_PREFIXES,
                 columns: list[str] | None = None, normalizer: Normalizer | None = None,
                 source: dict[str, Any] | None = None, step_limits: list[float] | None = None,
                 support: VisitedGrid | None = None) -> None:
        if not isinstance(skip, int) or skip < 1:
            raise ConfigError(f"skip must be a positive integer, got {skip!r}")
        self.skip = skip
        self.rows_per_token = skip
        self.drop = tuple(drop)
        self.columns = columns
        self.normalizer = normalizer or Normalizer("standard")
        self.source = dict(source or {})
        self.step_limits = None if step_limits is None else [float(v) for v in step_limits]
        self.support = support

    @property
    def dim(self) -> int:
        if self.columns is None:
            raise ShapeError("the encoder is not fitted yet; call fit(episodes) first")
        return len(self.kept)

    @property
    def kept(self) -> list[int]:
        assert self.columns is not None
        return [i for i, c in enumerate(self.columns) if not c.startswith(self.drop)]

    def column(self, name: str) -> int:
        """Token index of a kept column (e.g. ``observation[0]``)."""
        names = [self.columns[i] for i in self.kept]  # type: ignore[index]
        if name not in names:
            raise ConfigError(f"column {name!r} is not encoded; encoded columns: {names}")
        return names.index(name)

    def fit(self, episodes: Episodes) -> StateActionEncoder:
        self.columns = list(episodes.columns)
        if not self.kept:
            raise ConfigError(f"every column was dropped by drop={list(self.drop)}; columns: {self.columns}")
        self.normalizer.fit(episodes.concat()[:, self.kept])
        steps = [np.abs(np.diff(seq[:: self.skip][:, self.kept], axis=0)) for seq in episodes.sequences
                 if len(seq) > self.skip]
        self.step_limits = np.concatenate(steps).max(axis=0).tolist() if steps else None
        self.support = self.fit_support(episodes)
        meta = episodes.meta[0] if episodes.meta else {}
        self.source = {key: meta.get(key) for key in SOURCE_KEYS}
        return self

    def fit_support(self, episodes: Episodes) -> VisitedGrid | None:
        """The grid of positions (``achieved_goal`` columns, at most 3) the data visited; ``None`` in
        tasks without positions."""
        positions = [i for i, c in enumerate(self.columns or []) if c.startswith("achieved_goal")]
        if not positions or len(positions) > MAX_DIMS:
            return None
        return VisitedGrid.fit(episodes.concat()[:, positions])

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        window = np.asarray(window, dtype=np.float64)
        if window.ndim != 2 or window.shape[1] != len(self.columns or []):
            raise ShapeError(f"window must be [T, {len(self.columns or [])}], got {window.shape}")
        lagged = window.copy()
        actions = self.action_columns
        if actions:
            lagged[1:, actions] = window[:-1, actions]
            lagged[0, actions] = self.action_mean
        tokens = self.normalizer.transform(lagged[:: self.skip, self.kept])
        return tokens.astype(np.float32), {"rows": int(window.shape[0]), "first": window[0].copy()}

    @property
    def action_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.columns or []) if c.startswith("action") and i in self.kept]

    @property
    def action_mean(self) -> np.ndarray:
        mean = np.asarray(self.normalizer.state_dict()["shift"], dtype=np.float64)
        return mean[[self.kept.index(i) for i in self.action_columns]]

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        values = self.normalizer.inverse(np.asarray(x, dtype=np.float64))
        rows = int(frame.get("rows", values.shape[-2] * self.skip))
        token_rows = np.arange(values.shape[-2]) * self.skip
        grid = np.arange(rows)
        flat = values.reshape(-1, values.shape[-2], values.shape[-1])
        dense = np.stack([np.stack([np.interp(grid, token_rows, seq[:, j]) for j in range(seq.shape[1])], axis=1)
                          for seq in flat])
        out = np.broadcast_to(np.asarray(frame["first"]), dense.shape[:2] + (len(self.columns),)).copy()
        out[..., self.kept] = dense
        actions = self.action_columns
        if actions:  # undo the lag: a_t sits in row t + 1 (the last row repeats the one before)
            out[:, :-1, actions] = out[:, 1:, actions]
        return out.reshape(values.shape[:-2] + (rows, len(self.columns)))

    def state_dict(self) -> dict[str, Any]:
        return {"skip": self.skip, "drop": list(self.drop), "columns": self.columns,
                "normalizer": self.normalizer.state_dict(), "source": self.source,
                "step_limits": self.step_limits,
                "support": None if self.support is None else self.support.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StateActionEncoder:
        return cls(skip=int(state["skip"]), drop=tuple(state["drop"]), columns=list(state["columns"]),
                   normalizer=Normalizer.from_state(state["normalizer"]), source=state.get("source"),
                   step_limits=state.get("step_limits"),
                   support=VisitedGrid.from_state(state["support"]) if state.get("support") else None)
