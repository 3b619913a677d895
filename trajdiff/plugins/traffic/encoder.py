"""Encoding of track windows into an agent-centred, heading-aligned, normalized frame.

Why: a pedestrian's next seconds depend on where it is heading, not on where the scene's origin
lies. Each window is translated so that the last observed position is the origin and rotated so
that the last observed velocity points along +x; the future is stored as the residual over a
constant-velocity forecast (the model only learns the deviation, cf. LED's initializer and residual
diffusion). Neighbour features (relative position and velocity) are rotated the same way and kept
in the observed rows only. Scales come from the training episodes.

Token layout (``D = 2 + 5 K``): ``[own_x, own_y, n1_dx, n1_dy, n1_dvx, n1_dvy, n1_on, ...]``; own
columns hold the position relative to the last observed one in history rows and the residual
over constant velocity in future rows; neighbour columns are zero in future rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError, ShapeError
from trajdiff.plugins.spec import Encoder
from trajdiff.plugins.traffic.loader import NEIGHBOUR_FIELDS, neighbour_columns

__all__ = ["TrackEncoder", "heading"]

KIND = "traffic.agent_frame"
MIN_SPEED = 0.02  # displacement per step (user units) under which the heading falls back to the history's chord
FIELDS = len(NEIGHBOUR_FIELDS)


def heading(history_xy: np.ndarray) -> float:
    """Angle of the last observed velocity, or of the history's chord when the agent (nearly) stands still."""
    if len(history_xy) >= 2:
        v = history_xy[-1] - history_xy[-2]
        if np.hypot(*v) > MIN_SPEED:
            return float(np.arctan2(v[1], v[0]))
        chord = history_xy[-1] - history_xy[0]
        if np.hypot(*chord) > MIN_SPEED:
            return float(np.arctan2(chord[1], chord[0]))
    return 0.0


def _rotation(angle: float) -> np.ndarray:
    """The matrix that rotates world vectors into the agent frame (by -angle), applied as ``v @ R.T``."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s], [-s, c]])


class TrackEncoder(Encoder):
    """Agent-frame encoder for windows ``[T, 2 + 5 K]`` of the traffic loader's columns.

    ``rotate`` aligns the last observed velocity with +x; ``residual="cv"`` stores the future as the
    residual over constant velocity (``"none"``: positions relative to the last observed one).
    """

    def __init__(
        self,
        *,
        history: int = 8,
        horizon: int = 12,
        rotate: bool = True,
        residual: str = "cv",
        neighbours: int | None = None,
        scales: dict[str, list[float]] | None = None,
    ) -> None:
        if residual not in ("cv", "none"):
            raise ConfigError(f"residual must be 'cv' or 'none', got {residual!r}")
        if not isinstance(history, int) or history < 2:
            raise ConfigError(f"the traffic encoder needs at least 2 observed rows (a velocity), got {history!r}")
        self.history, self.horizon = int(history), int(horizon)
        self.rotate, self.residual = bool(rotate), residual
        self.neighbours = neighbours
        self.scales = scales

    # ----------------------------------------------------------------------------------- contract

    @property
    def columns(self) -> list[str] | None:
        """The loader's columns for the fitted number of neighbours: x, y, n1_dx ... (None before fitting)."""
        return None if self.neighbours is None else ["x", "y", *neighbour_columns(self.neighbours)]

    @property
    def dim(self) -> int:
        if self.neighbours is None:
            raise ConfigError("the encoder is not fitted; call fit(episodes) first")
        return 2 + FIELDS * self.neighbours

    @property
    def forecast_columns(self) -> list[int]:
        """Columns a forecast produces: the agent's own x and y."""
        return [0, 1]

    def mirrored(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens ``[..., T, D]`` reflected across the heading axis (y -> -y for the agent and its
        neighbours' offsets and velocities): as likely a motion as the original, since nothing here
        knows the scene's layout."""
        self._check_fitted()
        flip = np.ones(self.dim, dtype=np.float32)
        flip[1] = -1.0
        for k in range(self.neighbours or 0):
            base = 2 + FIELDS * k
            flip[base + NEIGHBOUR_FIELDS.index("dy")] = -1.0
            flip[base + NEIGHBOUR_FIELDS.index("dvy")] = -1.0
        return tokens * flip

    def fit(self, episodes: Episodes) -> TrackEncoder:
        """Infers the neighbour count from the columns and learns per-feature scales (std) from windows."""
        if len(episodes.columns) < 2 or (len(episodes.columns) - 2) % FIELDS:
            raise DataError(f"traffic episodes need columns x, y and {FIELDS} per neighbour; got {episodes.columns}")
        self.neighbours = (len(episodes.columns) - 2) // FIELDS
        self.scales = None
        length = self.history + self.horizon
        raw = [self._local(seq[s:s + length])[0]
               for seq in episodes.sequences if len(seq) >= length
               for s in range(0, len(seq) - length + 1, 2)]
        if not raw:
            raise DataError(f"no track has {length} rows (history {self.history} + horizon {self.horizon}); "
                            "use shorter windows or longer tracks")
        stack = np.stack(raw)  # [N, T, D]
        h = self.history
        hist = np.sqrt(np.mean(stack[:, :h, :2] ** 2, axis=(0, 1)))
        fut = np.sqrt(np.mean(stack[:, h:, :2] ** 2, axis=(0, 1)))
        nb = stack[:, :h, 2:].reshape(-1, max(self.neighbours, 1), FIELDS) if self.neighbours else np.zeros((0, 1, 5))
        on = nb[..., 4] > 0.5
        pos = float(np.sqrt(np.mean(nb[..., :2][on] ** 2))) if on.any() else 1.0
        vel = float(np.sqrt(np.mean(nb[..., 2:4][on] ** 2))) if on.any() else 1.0
        floor = 1e-3
        self.scales = {
            "history": np.maximum(hist, floor).tolist(),
            "future": np.maximum(fut, floor).tolist(),
            "neighbour": [max(pos, floor), max(pos, floor), max(vel, floor), max(vel, floor), 1.0],
        }
        return self

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        """A raw window ``[T, F]`` -> normalized tokens ``[T, D]`` and the frame (origin, angle, velocity)."""
        self._check_fitted()
        if history != self.history:
            raise ConfigError(f"this encoder was built for {self.history} observed rows, got history={history}")
        local, frame = self._local(np.asarray(window, dtype=np.float64))
        h = self.history
        local[:h, :2] /= self.scales["history"]
        local[h:, :2] /= self.scales["future"]
        if self.neighbours:
            local[:h, 2:] /= np.tile(self.scales["neighbour"], self.neighbours)
        return local.astype(np.float32), frame

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        """Tokens ``[..., T, D]`` -> raw ``[..., T, F]``; neighbour columns are NaN in forecast rows."""
        self._check_fitted()
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.dim:
            raise ShapeError(f"expected tokens with {self.dim} features, got shape {x.shape}")
        h = self.history
        out = np.full(x.shape, np.nan)
        back = _rotation(frame["angle"])  # v_world = v_local @ back
        hist = x[..., :h, :2] * self.scales["history"]
        fut = x[..., h:, :2] * self.scales["future"]
        if self.residual == "cv":
            steps = np.arange(1, x.shape[-2] - h + 1)[:, None]
            fut = fut + steps * np.asarray(frame["velocity"])
        origin = np.asarray(frame["origin"])
        out[..., :h, :2] = hist @ back + origin
        out[..., h:, :2] = fut @ back + origin
        if self.neighbours:
            nb = x[..., :h, 2:] * np.tile(self.scales["neighbour"], self.neighbours)
            nb = nb.reshape(*nb.shape[:-1], self.neighbours, FIELDS)
            nb[..., 0:2] = nb[..., 0:2] @ back
            nb[..., 2:4] = nb[..., 2:4] @ back
            out[..., :h, 2:] = nb.reshape(*nb.shape[:-2], -1)
        return out

    def decode_windows(self, x: np.ndarray, frames: list[dict[str, Any]], start: int = 0) -> np.ndarray:
        """`decode` of N windows in one pass, rows ``start`` on: tokens ``[S, N, T, D]``, one frame per window ->
        ``[S, N, T - start, F]``."""
        self._check_fitted()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 4 or x.shape[1] != len(frames) or x.shape[-1] != self.dim:
            raise ShapeError(f"expected tokens [S, {len(frames)}, T, {self.dim}], got shape {x.shape}")
        h = self.history
        angle = np.array([frame["angle"] for frame in frames], dtype=np.float64)
        c, s = np.cos(angle), np.sin(angle)
        back = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # [N, 2, 2]: _rotation of each frame
        origin = np.array([frame["origin"] for frame in frames], dtype=np.float64)[:, None, :]  # [N, 1, 2]
        out = np.full(x.shape, np.nan)
        hist = x[..., :h, :2] * self.scales["history"]
        fut = x[..., h:, :2] * self.scales["future"]
        if self.residual == "cv":
            velocity = np.array([frame["velocity"] for frame in frames], dtype=np.float64)  # [N, 2]
            fut = fut + np.arange(1, x.shape[-2] - h + 1)[None, :, None] * velocity[:, None, :]
        if start >= h:  # future rows only (what a forecast keeps): neighbour columns are NaN there
            out = np.full((*x.shape[:2], x.shape[2] - start, x.shape[3]), np.nan)
            out[..., :2] = np.einsum("sntd,nde->snte", fut[:, :, start - h:], back) + origin
            return out
        out[..., :h, :2] = np.einsum("sntd,nde->snte", hist, back) + origin
        out[..., h:, :2] = np.einsum("sntd,nde->snte", fut, back) + origin
        if self.neighbours:
            nb = x[..., :h, 2:] * np.tile(self.scales["neighbour"], self.neighbours)
            nb = nb.reshape(*nb.shape[:-1], self.neighbours, FIELDS)
            nb[..., 0:2] = np.einsum("sntkd,nde->sntke", nb[..., 0:2], back)
            nb[..., 2:4] = np.einsum("sntkd,nde->sntke", nb[..., 2:4], back)
            out[..., :h, 2:] = nb.reshape(*nb.shape[:-2], -1)
        return out[:, :, start:]

    def base(self, frame: dict[str, Any]) -> np.ndarray | None:
        """The constant-velocity forecast the model refines (``residual="cv"``), ``[horizon, F]``: x, y, the
        neighbour columns NaN; None with ``residual="none"``."""
        if not frame.get("cv"):
            return None
        steps = np.arange(1, self.horizon + 1)[:, None] * np.asarray(frame["velocity"], dtype=np.float64)
        out = np.full((self.horizon, self.dim), np.nan)
        out[:, :2] = steps @ _rotation(frame["angle"]) + np.asarray(frame["origin"])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "history": self.history, "horizon": self.horizon, "rotate": self.rotate,
                "residual": self.residual, "neighbours": self.neighbours, "scales": self.scales}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrackEncoder:
        if state.get("kind") != KIND:
            raise ConfigError(f"encoder state of kind {state.get('kind')!r} is not a traffic encoder ({KIND!r})")
        return cls(history=state["history"], horizon=state["horizon"], rotate=state["rotate"],
                   residual=state["residual"], neighbours=state["neighbours"], scales=state["scales"])

    # ----------------------------------------------------------------------------------- helpers

    def _check_fitted(self) -> None:
        if self.neighbours is None or self.scales is None:
            raise ConfigError("the traffic encoder is not fitted; call fit(episodes) first")

    def _local(self, window: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Unscaled local features ``[T, D]`` and the frame."""
        if window.ndim != 2 or window.shape[1] < 2 or (window.shape[1] - 2) % FIELDS:
            raise ShapeError(f"a traffic window is [T, 2 + {FIELDS} K], got shape {window.shape}")
        if self.neighbours is not None and window.shape[1] != self.dim:
            raise ShapeError(f"this encoder was fitted on {self.neighbours} neighbour(s) ({self.dim} columns), "
                             f"got {window.shape[1]} columns; load the data with neighbours={self.neighbours}")
        h = self.history
        if len(window) <= h:
            raise ShapeError(f"a window needs more than {h} rows, got {len(window)}")
        xy = window[:, :2]
        origin = xy[h - 1].copy()
        angle = heading(xy[:h]) if self.rotate else 0.0
        rot = _rotation(angle)
        local = np.zeros(window.shape)
        rel = (xy - origin) @ rot.T
        velocity = rel[h - 1] - rel[h - 2]
        local[:, :2] = rel
        if self.residual == "cv":
            local[h:, :2] -= np.arange(1, len(window) - h + 1)[:, None] * velocity
        k = (window.shape[1] - 2) // FIELDS
        if k:
            nb = window[:h, 2:].reshape(h, k, FIELDS).copy()
            nb[..., 0:2] = nb[..., 0:2] @ rot.T
            nb[..., 2:4] = nb[..., 2:4] @ rot.T
            local[:h, 2:] = nb.reshape(h, -1)
        frame = {"origin": origin, "angle": angle, "velocity": velocity, "history": h, "cv": self.residual == "cv",
                 "scale": list(self.scales["future"]) if self.scales else [1.0, 1.0]}
        return local, frame
