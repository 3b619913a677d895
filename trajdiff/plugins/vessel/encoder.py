"""Encoding of vessel windows: a local metric frame at the last observed position, turned to the
vessel's course, with the future as a residual over constant velocity, scaled per step.

Why: a vessel in New York Harbor and one off Singapore move alike once seen from their own last
position and heading; the model then learns manoeuvres, not geography. Predicting the residual
over a constant-velocity forecast (the Residual Denoising Diffusion / LED idea) leaves the model
only the deviation from straight-line motion. Per-step scaling (mean and standard deviation of
every row and coordinate over the training windows) gives every token unit variance.

Rows become (along-course, cross-course) metres, history rows relative to the last observed
position, future rows minus the constant-velocity forecast, then standardized; ``patch`` consecutive
rows form one token of ``2 * patch`` features (PatchTST's patches: 60 rows in 12 tokens make
attention cheap). With ``place=True`` every token also carries where the vessel is and where it heads
(its last position, standardized over the training data, and the cosine and sine of its course), so that
the model can learn the local geography (channels, berths, ferry routes) of the waters it was trained
on. Decoding returns lat, lon and the speed (knots) and course (degrees) implied by consecutive positions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.core.data import Episodes
from trajdiff.core.window_source import WindowIndex
from trajdiff.errors import ConfigError, DataError, ShapeError
from trajdiff.plugins.spec import Encoder
from trajdiff.plugins.vessel.geo import KNOT_M_S, from_local, to_local
from trajdiff.plugins.vessel.loader import COLUMNS, derive_motion

__all__ = ["VesselEncoder"]

KIND = "vessel.local_cv"
STILL_M_S = 0.25  # below this speed (about half a knot) the course is noise: the frame is not turned
MAX_FIT_WINDOWS = 50_000
STD_FLOOR_M = 1.0
PLACE_FEATURES = 4


def _median_step(metas: list[dict[str, Any]]) -> float:
    """The median time step (seconds) over the meta "times" of every episode (60 without any), as ``np.median`` of
    all steps gives it, from each episode's distinct steps and their counts (no array of every step)."""
    counts: dict[int, int] = {}
    for meta in metas:
        if "times" in meta and len(meta["times"]) > 1:
            steps, n = np.unique(np.diff(meta["times"]).astype("timedelta64[ns]").astype(np.int64), return_counts=True)
            for step, k in zip(steps.tolist(), n.tolist(), strict=True):
                counts[step] = counts.get(step, 0) + k
    if not counts:
        return 60.0
    steps = sorted(counts)
    cumulative = np.cumsum([counts[step] for step in steps])
    total = int(cumulative[-1])

    def nth(k: int) -> float:  # the k-th smallest step (0-based), in seconds
        return steps[int(np.searchsorted(cumulative, k, side="right"))] / 1e9

    if total % 2:
        return float(nth(total // 2))
    return float((nth(total // 2 - 1) + nth(total // 2)) / 2)


class VesselEncoder(Encoder):
    """Local, course-aligned, constant-velocity-residual encoding of ``[T, 4]`` (lat, lon, sog, cog) windows.

    ``history`` and ``horizon`` (rows) fix the window; ``velocity_steps`` is how many history steps the
    velocity (course and speed of the frame and of the constant-velocity forecast) is averaged over;
    ``rotate=False`` keeps north up; ``residual=False`` encodes future positions as they are.
    """

    def __init__(
        self,
        history: int,
        horizon: int,
        *,
        velocity_steps: int = 1,
        patch: int = 1,
        place: bool = False,
        rotate: bool = True,
        residual: bool = True,
        interval_s: float | None = None,
        mean: Any = None,
        std: Any = None,
        place_stats: Any = None,
    ) -> None:
        for name, value in (("history", history), ("horizon", horizon), ("velocity_steps", velocity_steps),
                            ("patch", patch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer (rows), got {value!r}")
        if history < 2 and residual:
            raise ConfigError("the constant-velocity residual needs a history of at least 2 rows")
        self.history, self.horizon = int(history), int(horizon)
        if self.history % patch or self.horizon % patch:
            raise ConfigError(f"history ({history}) and horizon ({horizon}) must be multiples of patch ({patch})")
        self.patch = self.rows_per_token = int(patch)
        self.velocity_steps = int(velocity_steps)
        self.rotate, self.residual, self.place = bool(rotate), bool(residual), bool(place)
        self.place_stats = None if place_stats is None else np.asarray(place_stats, dtype=np.float64)
        self.interval_s = None if interval_s is None else float(interval_s)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        length = self.history + self.horizon
        for name, value in (("mean", self.mean), ("std", self.std)):
            if value is not None and value.shape != (length, 2):
                raise ConfigError(f"encoder {name} must have shape ({length}, 2), got {value.shape}")

    @property
    def columns(self) -> list[str]:
        """The loader's columns, by name and in order (lat, lon, sog, cog)."""
        return list(COLUMNS)

    @property
    def dim(self) -> int:
        """Features per token: 2 per row of the patch, plus 4 place features with ``place=True``."""
        return 2 * self.patch + (PLACE_FEATURES if self.place else 0)

    def _rows(self, x: Any) -> Any:
        """Tokens ``[..., T / patch, dim]`` -> rows ``[..., T, 2]`` (numpy or torch; place features dropped)."""
        return x[..., :2 * self.patch].reshape(*x.shape[:-2], x.shape[-2] * self.patch, 2)

    def place_features(self, frame: dict[str, Any]) -> np.ndarray:
        """The 4 place features of a frame: standardized latitude and longitude, cos and sin of the course."""
        c_lat, c_lon, s_lat, s_lon = self.place_stats  # type: ignore[misc]
        return np.array([(frame["lat0"] - c_lat) / s_lat, (frame["lon0"] - c_lon) / s_lon, math.cos(frame["theta"]),
                         math.sin(frame["theta"])])

    def _tokens(self, z: Any) -> Any:
        return z.reshape(*z.shape[:-2], z.shape[-2] // self.patch, 2 * self.patch)

    @property
    def length(self) -> int:
        return self.history + self.horizon

    @property
    def fitted(self) -> bool:
        return (self.mean is not None and self.std is not None and self.interval_s is not None
                and (self.place_stats is not None or not self.place))

    # ----------------------------------------------------------------------------------- frames

    def frame_of(self, history_rows: np.ndarray) -> dict[str, Any]:
        """The frame of a window from its observed rows ``[h, >=2]`` (lat, lon first): origin at the last
        one, course angle ``theta`` (radians, counter-clockwise from east) and ``velocity`` (metres per step
        in the turned frame) of the constant-velocity forecast; "encoder" is this encoder (for costs)."""
        lat0, lon0 = float(history_rows[-1, 0]), float(history_rows[-1, 1])
        k = min(self.velocity_steps, len(history_rows) - 1)
        if k < 1:
            return {"lat0": lat0, "lon0": lon0, "theta": 0.0, "velocity": [0.0, 0.0], "encoder": self}
        xy = to_local(history_rows[[-1 - k, -1], 0], history_rows[[-1 - k, -1], 1], lat0, lon0)
        v = (xy[1] - xy[0]) / k
        speed = float(np.hypot(v[0], v[1]))
        step = self.interval_s or 60.0
        theta = float(np.arctan2(v[1], v[0])) if self.rotate and speed > STILL_M_S * step else 0.0
        c, s = np.cos(theta), np.sin(theta)
        velocity = [float(v[0] * c + v[1] * s), float(-v[0] * s + v[1] * c)] if self.residual else [0.0, 0.0]
        return {"lat0": lat0, "lon0": lon0, "theta": theta, "velocity": velocity, "encoder": self}

    def _features(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        frame = self.frame_of(window[:history])
        xy = to_local(window[:, 0], window[:, 1], frame["lat0"], frame["lon0"])
        c, s = np.cos(frame["theta"]), np.sin(frame["theta"])
        along = xy[:, 0] * c + xy[:, 1] * s
        cross = -xy[:, 0] * s + xy[:, 1] * c
        feats = np.stack([along, cross], axis=1)
        feats[history:] -= np.outer(np.arange(1, len(window) - history + 1), frame["velocity"])
        return feats, frame

    def _check(self, window: np.ndarray, history: int) -> np.ndarray:
        arr = np.asarray(window, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ShapeError(f"VesselEncoder.encode expects a window [T, 4] (lat, lon, sog, cog), got {arr.shape}")
        if len(arr) != self.length or history != self.history:
            raise ShapeError(f"this encoder takes windows of {self.history} observed + {self.horizon} future rows; "
                             f"got {len(arr)} rows with history {history}")
        return arr

    # ------------------------------------------------------------------------------------ fit

    def fit(self, episodes: Episodes) -> VesselEncoder:
        """Per-row, per-coordinate mean and std of the features over (up to 50,000) training windows,
        and the sampling interval (median time step in meta "times")."""
        if not isinstance(episodes, Episodes):
            raise DataError(f"VesselEncoder.fit needs Episodes, got {type(episodes).__name__}")
        if list(episodes.columns[:2]) != ["lat", "lon"]:
            raise DataError(f"VesselEncoder expects columns starting with lat, lon; got {episodes.columns}")
        self.interval_s = _median_step(episodes.meta or [])
        index = WindowIndex(episodes.lengths, self.length)  # every window, in episode then start order
        if not len(index):
            raise DataError(f"no episode is long enough for one window of {self.length} rows ({self.history} + "
                            f"{self.horizon}); the longest has {max(episodes.lengths, default=0)} rows")
        positions = np.arange(len(index))
        if len(index) > MAX_FIT_WINDOWS:
            positions = np.sort(np.random.default_rng(0).choice(len(index), MAX_FIT_WINDOWS, replace=False))
        feats = np.stack([self._features(episodes.sequences[i][s:s + self.length], self.history)[0]
                          for i, s in zip(*index.locate(positions), strict=True)])
        self.mean = feats.mean(axis=0)
        self.mean[self.history - 1] = 0.0  # the origin row is 0 by construction
        self.std = np.maximum(feats.std(axis=0), STD_FLOOR_M)
        if self.place:
            rows = episodes.concat()
            self.place_stats = np.array([rows[:, 0].mean(), rows[:, 1].mean(), max(rows[:, 0].std(), 1e-3),
                                         max(rows[:, 1].std(), 1e-3)])
        return self

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.fitted:
            raise ConfigError("VesselEncoder is not fitted; call .fit(training_episodes) or use from_state(...)")
        return self.mean, self.std  # type: ignore[return-value]

    # ---------------------------------------------------------------------------- encode/decode

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        """A raw window ``[T, 4]`` -> (tokens ``[T / patch, 2 * patch]``, frame). Only the history rows define
        the frame."""
        mean, std = self._stats()
        feats, frame = self._features(self._check(window, history), history)
        tokens = self._tokens((feats - mean) / std)
        if self.place:
            extra = np.broadcast_to(self.place_features(frame), (len(tokens), PLACE_FEATURES))
            tokens = np.concatenate([tokens, extra], axis=1)
        return tokens.astype(np.float32), frame

    def encode_histories(self, histories: list[np.ndarray], horizon: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """`encode_history` of N histories of ``history`` rows in one pass: (tokens ``[N, T / patch, dim]``, frames)
        equal to each one's; other lengths go one by one."""
        k = min(self.velocity_steps, self.history - 1)
        if (horizon != self.horizon or k < 1 or not len(histories)
                or any(np.shape(rows) != np.shape(histories[0]) for rows in histories)):
            return super().encode_histories(histories, horizon)
        rows = np.stack([np.asarray(h, dtype=np.float64) for h in histories])  # [N, history, >= 2]
        if rows.ndim != 3 or rows.shape[1] != self.history or rows.shape[2] < 2:
            return super().encode_histories(histories, horizon)
        mean, std = self._stats()
        lat0, lon0 = rows[:, -1, 0], rows[:, -1, 1]
        ends = to_local(rows[:, [-1 - k, -1], 0], rows[:, [-1 - k, -1], 1], lat0[:, None], lon0[:, None])  # type: ignore[arg-type]
        v = (ends[:, 1] - ends[:, 0]) / k  # [N, 2] metres per step (east, north)
        moving = np.hypot(v[:, 0], v[:, 1]) > STILL_M_S * (self.interval_s or 60.0)
        theta = np.where(moving, np.arctan2(v[:, 1], v[:, 0]), 0.0) if self.rotate else np.zeros(len(rows))
        c, s = np.cos(theta), np.sin(theta)
        velocity = (np.stack([v[:, 0] * c + v[:, 1] * s, -v[:, 0] * s + v[:, 1] * c], axis=1) if self.residual
                    else np.zeros((len(rows), 2)))
        xy = to_local(rows[..., 0], rows[..., 1], lat0[:, None], lon0[:, None])  # type: ignore[arg-type]
        feats = np.zeros((len(rows), self.length, 2))
        feats[:, :self.history, 0] = xy[..., 0] * c[:, None] + xy[..., 1] * s[:, None]
        feats[:, :self.history, 1] = -xy[..., 0] * s[:, None] + xy[..., 1] * c[:, None]
        tokens = self._tokens((feats - mean) / std)
        if self.place:
            c_lat, c_lon, s_lat, s_lon = self.place_stats  # type: ignore[misc]
            place = np.stack([(lat0 - c_lat) / s_lat, (lon0 - c_lon) / s_lon, c, s], axis=1)
            tokens = np.concatenate([tokens, np.broadcast_to(place[:, None], (*tokens.shape[:2], PLACE_FEATURES))],
                                    axis=2)
        tokens[:, self.history // self.patch:] = 0.0
        frames = [{"lat0": float(lat0[j]), "lon0": float(lon0[j]), "theta": float(theta[j]),
                   "velocity": [float(velocity[j, 0]), float(velocity[j, 1])], "encoder": self}
                  for j in range(len(rows))]
        return tokens.astype(np.float32), frames

    def local_metres(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        """Tokens ``[..., T / patch, 2 * patch]`` -> (east, north) metres around the frame's origin, ``[..., T, 2]``."""
        mean, std = self._stats()
        feats = self._rows(np.asarray(x, dtype=np.float64)) * std + mean
        feats = feats.copy()
        feats[..., self.history:, :] += np.outer(np.arange(1, self.horizon + 1), frame["velocity"])
        c, s = np.cos(frame["theta"]), np.sin(frame["theta"])
        return np.stack([feats[..., 0] * c - feats[..., 1] * s, feats[..., 0] * s + feats[..., 1] * c], axis=-1)

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        """Tokens ``[..., T / patch, 2 * patch]`` -> ``[..., T, 4]``: lat, lon, and the speed (knots) and
        course (degrees) of the displacement ending at each row."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim < 2 or arr.shape[-1] != self.dim or arr.shape[-2] * self.patch != self.length:
            raise ShapeError(f"VesselEncoder.decode expects [..., {self.length // self.patch}, {self.dim}], got "
                             f"{arr.shape}")
        lat, lon = from_local(self.local_metres(arr, frame), frame["lat0"], frame["lon0"])
        sog, cog = derive_motion(lat, lon, self.interval_s or 60.0)
        return np.stack([lat, lon, sog, cog], axis=-1)

    def decode_windows(self, x: np.ndarray, frames: list[dict[str, Any]], start: int = 0) -> np.ndarray:
        """`decode` of N windows in one pass, rows ``start`` on: tokens ``[S, N, T / patch, dim]``, one frame per
        window -> ``[S, N, T - start, 4]`` (speed and course of row ``start`` from the row before it, as in
        `decode`)."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 4 or arr.shape[1] != len(frames) or arr.shape[-1] != self.dim \
                or arr.shape[-2] * self.patch != self.length:
            raise ShapeError(f"VesselEncoder.decode_windows expects [S, {len(frames)}, {self.length // self.patch}, "
                             f"{self.dim}], got {arr.shape}")
        mean, std = self._stats()
        first = max(start - 1, 0)  # the row before ``start`` gives row ``start`` its speed and course
        feats = (self._rows(arr) * std + mean)[..., first:, :]  # [S, N, T - first, 2]
        velocity = np.array([frame["velocity"] for frame in frames], dtype=np.float64)  # [N, 2]
        ramp = np.maximum(np.arange(first, self.length) - self.history + 1, 0)  # steps past the last observed row
        feats += ramp[None, :, None] * velocity[:, None, :]
        theta = np.array([frame["theta"] for frame in frames], dtype=np.float64)[:, None]  # [N, 1]
        c, s = np.cos(theta), np.sin(theta)
        xy = np.stack([feats[..., 0] * c - feats[..., 1] * s, feats[..., 0] * s + feats[..., 1] * c], axis=-1)
        lat0 = np.array([frame["lat0"] for frame in frames], dtype=np.float64)[:, None]
        lon0 = np.array([frame["lon0"] for frame in frames], dtype=np.float64)[:, None]
        lat, lon = from_local(xy, lat0, lon0)  # type: ignore[arg-type]  # origins broadcast over windows
        sog, cog = derive_motion(lat, lon, self.interval_s or 60.0)
        return np.stack([lat, lon, sog, cog], axis=-1)[..., start - first:, :]

    def base(self, frame: dict[str, Any]) -> np.ndarray | None:
        """The constant-velocity forecast the model refines, ``[horizon, 4]``: lat, lon of the frame's velocity
        carried on from its origin, speed and course NaN (they follow from the positions; calibration leaves them
        as drawn). None with ``residual=False``, where the model refines nothing."""
        if not self.residual:
            return None
        steps = np.arange(1, self.horizon + 1)[:, None] * np.asarray(frame["velocity"], dtype=np.float64)
        c, s = np.cos(frame["theta"]), np.sin(frame["theta"])
        east_north = np.stack([steps[:, 0] * c - steps[:, 1] * s, steps[:, 0] * s + steps[:, 1] * c], axis=-1)
        lat, lon = from_local(east_north, frame["lat0"], frame["lon0"])
        return np.stack([lat, lon, np.full_like(lat, np.nan), np.full_like(lat, np.nan)], axis=-1)

    # ----------------------------------------------------------------------------- torch view

    def _ramp(self, like: Tensor) -> Tensor:
        ramp = torch.zeros(self.length, dtype=like.dtype, device=like.device)
        ramp[self.history:] = torch.arange(1, self.horizon + 1, dtype=like.dtype, device=like.device)
        return ramp

    def torch_local(self, x: Tensor, theta: Tensor, velocity: Tensor) -> Tensor:
        """Differentiable `local_metres` for a batch: tokens ``[B, T / patch, 2 * patch]``, each row's frame
        ``theta [B]`` and ``velocity [B, 2]`` -> (east, north) metres ``[B, T, 2]`` around each row's origin."""
        mean, std = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in self._stats())
        feats = self._rows(x) * std + mean + self._ramp(x)[None, :, None] * velocity[:, None, :]
        c, s = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        return torch.stack([feats[..., 0] * c - feats[..., 1] * s, feats[..., 0] * s + feats[..., 1] * c], dim=-1)

    def torch_tokens(self, xy: Tensor, theta: Tensor, velocity: Tensor) -> Tensor:
        """The inverse of `torch_local`: metres ``[B, T, 2]`` -> tokens ``[B, T / patch, 2 * patch]`` (without
        place features: keep those of the tokens the metres came from)."""
        mean, std = (torch.as_tensor(a, dtype=xy.dtype, device=xy.device) for a in self._stats())
        c, s = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        feats = torch.stack([xy[..., 0] * c + xy[..., 1] * s, -xy[..., 0] * s + xy[..., 1] * c], dim=-1)
        return self._tokens((feats - self._ramp(xy)[None, :, None] * velocity[:, None, :] - mean) / std)

    # ---------------------------------------------------------------------------------- state

    @property
    def knots_per_step(self) -> float:
        """Metres per step that equal one knot."""
        return KNOT_M_S * (self.interval_s or 60.0)

    def state_dict(self) -> dict[str, Any]:
        mean, std = self._stats()
        return {"kind": KIND, "columns": list(COLUMNS), "history": self.history, "horizon": self.horizon,
                "velocity_steps": self.velocity_steps, "patch": self.patch, "rotate": self.rotate,
                "residual": self.residual, "place": self.place,
                "place_stats": None if self.place_stats is None else self.place_stats.tolist(),
                "interval_s": self.interval_s, "mean": mean.tolist(), "std": std.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> VesselEncoder:
        """Rebuilds a fitted encoder from :meth:`state_dict` output."""
        if not isinstance(state, dict) or state.get("kind") != KIND:
            got = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise ConfigError(f"not a VesselEncoder state (kind {got!r}, expected {KIND!r}); pass state_dict() output")
        try:
            return cls(state["history"], state["horizon"], velocity_steps=state.get("velocity_steps", 1),
                       patch=state.get("patch", 1), place=state.get("place", False),
                       place_stats=state.get("place_stats"),
                       rotate=state.get("rotate", True), residual=state.get("residual", True),
                       interval_s=state["interval_s"], mean=state["mean"], std=state["std"])
        except KeyError as e:
            raise ConfigError(f"VesselEncoder state lacks {e}; the state is corrupt - re-fit the encoder") from None
