"""The future as a residual over a body-centred constant-velocity guess, and left/right mirroring of features.

Why a residual: the features are already body-centred (root velocity and turn rate in the heading frame, bone
vectors in each frame's heading), so holding the last observed frame's features while the root keeps its recent
velocity and turn rate is a constant-velocity forecast in the body's frame. A model that predicts only the
deviation from it starts from a sensible motion for any activity, seen in training or not, instead of having to
recall a clip's future from its history.

Why mirroring: a motion's mirror image (left and right swapped) is as plausible as the motion; adding it doubles
the training data without inventing motion.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from trajdiff.plugins.motion.features import ROOT_FEATURES, Layout

__all__ = ["AVERAGE_FRAMES", "mirror_features", "mirror_map", "reference", "residual_statistics"]

AVERAGE_FRAMES = 4
"""Frames over which the root's velocity and turn rate are averaged for the guess (a step's sway averages out)."""


def reference(history: Tensor) -> Tensor:
    """Unnormalized history features ``[..., H, F]`` -> the body-centred constant-velocity guess ``[..., F]``: the
    last frame's pose and height, the root's velocity and turn rate averaged over the last `AVERAGE_FRAMES`."""
    last = history[..., -1, :]
    moving = history[..., -AVERAGE_FRAMES:, :3].mean(dim=-2)
    return torch.cat([moving, last[..., 3:]], dim=-1)


def residual_statistics(features: list[np.ndarray], history: int, horizon: int,
                        stride: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature of future frames minus `reference` over windows of ``history +
    horizon`` frames (step ``stride``) of per-clip features ``[T, F]``."""
    pooled = []
    for f in features:
        for s in range(0, len(f) - history - horizon + 1, stride):
            ref = reference(torch.from_numpy(f[s:s + history])).numpy()
            pooled.append(f[s + history:s + history + horizon] - ref)
    if not pooled:
        width = features[0].shape[1] if features else 0
        return np.zeros(width), np.ones(width)
    stacked = np.concatenate(pooled)
    return stacked.mean(axis=0), stacked.std(axis=0)


def mirror_map(layout: Layout) -> list[int]:
    """Per kept joint, the kept index of its mirror image (itself for joints on the body's middle)."""
    index = {j: n for n, j in enumerate(layout.kept)}
    out = list(range(len(layout.kept)))
    for left, right in layout.pairs:
        if left in index and right in index:
            out[index[left]], out[index[right]] = index[right], index[left]
    return out


def mirror_features(layout: Layout, features: Tensor) -> Tensor:
    """Features ``[..., F]`` of the motion mirrored across the body's sagittal plane: sideways velocity and turn
    rate negated, left and right bones swapped with their sideways component negated."""
    mirror = mirror_map(layout)
    root = features[..., :ROOT_FEATURES] * features.new_tensor([-1.0, 1.0, -1.0, 1.0])
    bones = features[..., ROOT_FEATURES:].unflatten(-1, (len(layout.kept) - 1, 3))
    swapped = bones[..., [m - 1 for m in mirror[1:]], :] * features.new_tensor([-1.0, 1.0, 1.0])
    return torch.cat([root, swapped.flatten(-2)], dim=-1)


def fit_ridge(features: list[np.ndarray], history: int, horizon: int, normalize: tuple[np.ndarray, np.ndarray],
              residual: tuple[np.ndarray, np.ndarray], penalty: float = 1.0, stride: int = 5) -> np.ndarray:
    """Per feature, a ridge regression (penalty ``penalty``) of its standardized future residual (``horizon``
    frames, `reference` removed) on its own standardized ``history`` and a constant: weights
    ``[F, history + 1, horizon]``. Why per feature: 64 small regressions need about 120 k numbers, one over all
    features together about 7 M, for a validation ADE within 3%."""
    (mean, std), (res_mean, res_std) = normalize, residual
    xs, ys = [], []
    for f in features:
        for s in range(0, len(f) - history - horizon + 1, stride):
            window = f[s:s + history + horizon]
            ref = reference(torch.from_numpy(window[:history])).numpy()
            xs.append((window[:history] - mean) / std)
            ys.append((window[history:] - ref - res_mean) / res_std)
    x, y = np.stack(xs), np.stack(ys)  # [N, H, F], [N, horizon, F]
    weights = np.zeros((x.shape[2], history + 1, horizon))
    for n in range(x.shape[2]):
        design = np.concatenate([x[:, :, n], np.ones((len(x), 1))], axis=1)
        gram = design.T @ design + penalty * np.eye(history + 1)
        weights[n] = np.linalg.solve(gram, design.T @ y[:, :, n])
    return weights


def ridge_base(history: Tensor, weights: Tensor) -> Tensor:
    """Standardized history ``[..., H, F]`` -> the regression's standardized future residual ``[..., horizon, F]``."""
    design = torch.cat([history, torch.ones_like(history[..., :1, :])], dim=-2)
    return torch.einsum("...hf,fhk->...kf", design, weights)
