"""The motion encoder: joint-position windows <-> normalized tokens of root motion + pose features.

Raw windows are ``[T, 3 J]`` global joint positions in metres (the columns `load_motion` writes). Each
frame becomes `features.encode_positions` features, standardized per feature with training statistics;
``patch`` consecutive frames form one token. ``encode`` returns the frame (the root's ground position and
heading at the last history frame) that ``decode`` needs to put the motion back in the world. With ``residual``,
the frames after the ``history`` are stored as their difference from a body-centred constant-velocity guess
(`residual.reference`), standardized with their own statistics, minus (with ``ridge``) a per-feature linear
forecast of that residual from the history fitted in training (`residual.fit_ridge`); ``mirror`` asks the
domain to train on each window's mirror image too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, ShapeError
from trajdiff.plugins.motion.bvh import Skeleton
from trajdiff.plugins.motion.features import Layout, decode_world, encode_positions
from trajdiff.plugins.motion.loader import joint_columns, skeleton_of
from trajdiff.plugins.motion.residual import fit_ridge, reference, residual_statistics, ridge_base
from trajdiff.plugins.spec import Encoder

__all__ = ["MotionEncoder"]

STD_FLOOR = 1e-3


class MotionEncoder(Encoder):
    """Root motion + root-relative joint positions, standardized, ``patch`` frames per token."""

    def __init__(self, patch: int = 1, fps: float = 30.0, skeleton: Skeleton | None = None,
                 history: int = 0, horizon: int = 0, residual: bool = False, mirror: bool = False,
                 ridge: bool = False, **_: Any) -> None:
        if int(patch) < 1:
            raise ConfigError(f"patch must be >= 1, got {patch}")
        for name, value in (("residual", residual), ("mirror", mirror), ("ridge", ridge)):
            if not isinstance(value, bool):
                raise ConfigError(f"motion encoder option {name} must be true or false, got {value!r}")
        if residual and int(history) < 2:
            raise ConfigError(f"the motion encoder's residual needs a history of >= 2 frames, got {history}")
        if ridge and not residual:
            raise ConfigError("the motion encoder's ridge option forecasts the residual: set residual too")
        self.residual, self.mirror, self.ridge = residual, mirror, ridge
        self.ridge_weights: np.ndarray | None = None  # [F, history + 1, horizon] (with ``ridge``)
        self.horizon = int(horizon)
        self.res_mean: np.ndarray | None = None  # statistics of the future's residual (with ``residual``)
        self.res_std: np.ndarray | None = None
        self.patch = int(patch)
        self.rows_per_token = self.patch
        self.fps = float(fps)
        self.history = int(history)
        self.skeleton = skeleton
        self.layout = Layout.from_skeleton(skeleton) if skeleton is not None else None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.unit = 1.0  # metres per unit of the source files (BVH output is written back in them)
        self.foot_floor: list[float] = []  # per foot joint: its lowest height in training (2nd percentile)
        self.angle_min: list[float] = []  # per angle triple: the range seen in training (radians)
        self.angle_max: list[float] = []

    # ---------------------------------------------------------------------------------------- contract
    @property
    def columns(self) -> list[str] | None:
        """``<joint>_x/_y/_z`` of the skeleton's joints, as `load_motion` names them (None before fitting)."""
        return None if self.skeleton is None else joint_columns(self.skeleton)

    @property
    def dim(self) -> int:
        return self._layout().frame_dim * self.patch

    def _layout(self) -> Layout:
        if self.layout is None:
            raise ConfigError("the motion encoder has no skeleton yet; fit it on episodes from load_motion")
        return self.layout

    def fit(self, episodes: Episodes) -> MotionEncoder:
        if self.skeleton is None:
            self.skeleton = skeleton_of(episodes)
            self.layout = Layout.from_skeleton(self.skeleton)
        if episodes.meta and "fps" in episodes.meta[0]:
            self.fps = float(episodes.meta[0]["fps"])
            self.unit = float(episodes.meta[0].get("unit", 1.0))
        features = [self.features(seq) for seq in episodes.sequences if len(seq) >= 2]
        stacked = np.concatenate(features)
        self.mean = stacked.mean(axis=0)
        self.std = np.maximum(stacked.std(axis=0), STD_FLOOR)
        if self.residual:
            mean, std = residual_statistics(features, self.history, self.horizon)
            self.res_mean, self.res_std = mean, np.maximum(std, STD_FLOOR)
            if self.ridge:
                weights = fit_ridge(features, self.history, self.horizon, (self.mean, self.std),
                                    (self.res_mean, self.res_std))
                self.ridge_weights = np.round(weights, 6)  # as config.json keeps them
        self._fit_limits(stacked)
        return self

    def _fit_limits(self, features: np.ndarray) -> None:
        from trajdiff.plugins.motion.features import local_pose
        from trajdiff.plugins.motion.guides import joint_angles

        layout = self._layout()
        local = local_pose(layout, torch.from_numpy(features))
        self.foot_floor = np.percentile(local[:, layout.feet, 1].numpy(), 2, axis=0).tolist()
        if layout.angle_triples:
            angles = joint_angles(self, local).numpy()
            self.angle_min = np.percentile(angles, 0.1, axis=0).tolist()
            self.angle_max = np.percentile(angles, 99.9, axis=0).tolist()

    def features(self, window: np.ndarray) -> np.ndarray:
        """Raw positions ``[T, 3 J]`` -> unnormalized features ``[T, frame_dim]``."""
        layout = self._layout()
        joints = layout.skeleton.joints
        if window.ndim != 2 or window.shape[1] != 3 * joints:
            raise ShapeError(f"a motion window must be [T, {3 * joints}] (x, y, z of {joints} joints), "
                             f"got {window.shape}")
        return encode_positions(layout, window.reshape(len(window), joints, 3))[0]

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        if self.mean is None:
            raise ConfigError("fit the motion encoder before encoding")
        if len(window) % self.patch:
            raise ShapeError(f"window of {len(window)} frames is not a multiple of patch {self.patch}")
        layout = self._layout()
        positions = window.reshape(len(window), layout.skeleton.joints, 3)
        features, heading = encode_positions(layout, positions)
        anchor = max(history - 1, 0)
        frame = {"anchor": anchor, "origin": positions[anchor, layout.kept[0], [0, 2]].tolist(),
                 "heading": float(heading[anchor])}
        return self.to_tokens(features), frame

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        features = self.from_tokens(torch.as_tensor(np.asarray(x), dtype=torch.float64))
        world = decode_world(self._layout(), features, int(frame.get("anchor", 0)),
                             torch.tensor(frame.get("origin", [0.0, 0.0]), dtype=torch.float64),
                             float(frame.get("heading", 0.0)))
        return self.all_joints(world.numpy())

    def state_dict(self) -> dict[str, Any]:
        if self.mean is None or self.std is None or self.skeleton is None:
            raise ConfigError("the motion encoder is not fitted")
        return {"patch": self.patch, "fps": self.fps, "history": self.history, "skeleton": self.skeleton.to_state(),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "unit": self.unit,
                "foot_floor": list(self.foot_floor), "angle_min": list(self.angle_min),
                "angle_max": list(self.angle_max), "horizon": self.horizon, "residual": self.residual,
                "mirror": self.mirror, "ridge": self.ridge,
                **({"ridge_weights": self.ridge_weights.tolist()} if self.ridge_weights is not None
                   else {}),
                **({"res_mean": self.res_mean.tolist(), "res_std": self.res_std.tolist()}
                   if self.res_mean is not None and self.res_std is not None else {})}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MotionEncoder:
        enc = cls(patch=state["patch"], fps=state["fps"], skeleton=Skeleton.from_state(state["skeleton"]),
                  history=state.get("history", 0), horizon=state.get("horizon", 0),
                  residual=bool(state.get("residual", False)), mirror=bool(state.get("mirror", False)),
                  ridge=bool(state.get("ridge", False)))
        if enc.residual:
            enc.res_mean = np.asarray(state["res_mean"], float)
            enc.res_std = np.asarray(state["res_std"], float)
        if enc.ridge:
            enc.ridge_weights = np.asarray(state["ridge_weights"], float)
        enc.mean = np.asarray(state["mean"], float)
        enc.std = np.asarray(state["std"], float)
        enc.unit = float(state.get("unit", 1.0))
        enc.foot_floor = [float(v) for v in state.get("foot_floor", [])]
        enc.angle_min = [float(v) for v in state.get("angle_min", [])]
        enc.angle_max = [float(v) for v in state.get("angle_max", [])]
        if enc.mean.shape != (enc._layout().frame_dim,):
            raise ConfigError(f"encoder state has {enc.mean.shape} statistics for a skeleton of "
                              f"{enc._layout().frame_dim} features")
        return enc

    # ----------------------------------------------------------------------------------------- helpers
    def _residual_frames(self, frames: int) -> bool:
        return self.residual and frames > self.history

    def to_tokens(self, features: np.ndarray) -> np.ndarray:
        """Unnormalized features ``[T, F]`` -> normalized tokens ``[T / patch, patch F]``."""
        tokens = self.tokens_from_features(torch.from_numpy(np.asarray(features, dtype=np.float64)))
        return tokens.numpy().astype(np.float32)

    def _statistics(self, like: Tensor) -> tuple[Tensor, Tensor]:
        assert self.mean is not None and self.std is not None
        return (torch.as_tensor(self.mean, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.std, dtype=like.dtype, device=like.device))

    def _residual_statistics(self, like: Tensor) -> tuple[Tensor, Tensor]:
        if self.res_mean is None or self.res_std is None:
            raise ConfigError("the motion encoder's residual statistics are missing: fit it on episodes")
        return (torch.as_tensor(self.res_mean, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.res_std, dtype=like.dtype, device=like.device))

    def _base(self, history: Tensor, frames: int) -> Tensor | float:
        """The ridge forecast of the standardized residual from the standardized history (0 without ``ridge``)."""
        if self.ridge_weights is None:
            return 0.0
        if frames != self.horizon:
            raise ShapeError(f"a motion encoder with ridge forecasts {self.horizon} frames after the history, got "
                             f"a window with {frames}")
        return ridge_base(history, torch.as_tensor(self.ridge_weights, dtype=history.dtype, device=history.device))

    def from_tokens(self, x: Tensor) -> Tensor:
        """Normalized tokens ``[..., T, patch F]`` -> unnormalized features ``[..., T patch, F]`` (differentiable)."""
        frame_dim = self._layout().frame_dim
        if x.shape[-1] != frame_dim * self.patch:
            raise ShapeError(f"motion tokens must have {frame_dim * self.patch} features, got {x.shape[-1]}")
        flat = x.reshape(*x.shape[:-2], x.shape[-2] * self.patch, frame_dim)
        mean, std = self._statistics(x)
        if not self._residual_frames(flat.shape[-2]):
            return flat * std + mean
        history = flat[..., :self.history, :] * std + mean
        res_mean, res_std = self._residual_statistics(x)
        base = self._base(flat[..., :self.history, :], flat.shape[-2] - self.history)
        future = (flat[..., self.history:, :] + base) * res_std + res_mean + reference(history).unsqueeze(-2)
        return torch.cat([history, future], dim=-2)

    def tokens_from_features(self, features: Tensor) -> Tensor:
        """Inverse of `from_tokens` (differentiable)."""
        mean, std = self._statistics(features)
        if self._residual_frames(features.shape[-2]):
            history = features[..., :self.history, :]
            res_mean, res_std = self._residual_statistics(features)
            future = (features[..., self.history:, :] - reference(history).unsqueeze(-2) - res_mean) / res_std
            past = (history - mean) / std
            normalized = torch.cat([past, future - self._base(past, features.shape[-2] - self.history)], dim=-2)
        else:
            normalized = (features - mean) / std
        return normalized.reshape(*features.shape[:-2], features.shape[-2] // self.patch, -1)

    def all_joints(self, kept: np.ndarray) -> np.ndarray:
        """Kept-joint positions ``[..., T, K, 3]`` -> every joint ``[..., T, 3 J]`` (zero-offset joints share
        their parent's position)."""
        full = kept[..., self._layout().source_of, :]
        return full.reshape(*full.shape[:-2], -1)
