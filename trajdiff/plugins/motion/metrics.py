"""Motion metrics on joint positions in metres.

- prediction: ADE / FDE (mean per-joint Euclidean error over the future / at its last frame), best of S
  samples and the mean over samples; APD (diversity: mean per-joint distance between two different samples,
  averaged over all pairs, as in DLow but per joint and frame);
- physical plausibility (PhysDiff-style): bone-length error (mean |bone - skeleton length|), foot skating
  (mean planar speed of foot joints while in contact, in frames where they are in contact before and after),
  ground penetration (mean depth of the lowest joint below the floor, 0 where above).
"""

from __future__ import annotations

import numpy as np

from trajdiff.plugins.motion.features import Layout

__all__ = ["ade", "apd", "bone_length_error", "fde", "foot_skating", "ground_penetration"]


def _joints(x: np.ndarray) -> np.ndarray:
    """``[..., 3 J]`` -> ``[..., J, 3]`` (arrays already ``[..., J, 3]`` pass through)."""
    return x if x.shape[-1] == 3 and x.ndim >= 3 else x.reshape(*x.shape[:-1], -1, 3)


def _errors(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per sample, window and frame: mean joint distance ``[S, N, H]``."""
    return np.linalg.norm(_joints(samples) - _joints(truth)[None], axis=-1).mean(axis=-1)


def ade(samples: np.ndarray, truth: np.ndarray, best: bool = True) -> float:
    """Average displacement error: ``samples [S, N, H, 3 J]``, ``truth [N, H, 3 J]``; best of S or mean."""
    per = _errors(samples, truth).mean(axis=-1)
    return float((per.min(axis=0) if best else per.mean(axis=0)).mean())


def fde(samples: np.ndarray, truth: np.ndarray, best: bool = True) -> float:
    """Final displacement error at the last future frame; best of S or mean."""
    per = _errors(samples, truth)[..., -1]
    return float((per.min(axis=0) if best else per.mean(axis=0)).mean())


def apd(samples: np.ndarray) -> float:
    """Average pairwise distance between samples ``[S, N, H, 3 J]`` (per joint and frame, metres)."""
    s = samples.shape[0]
    if s < 2:
        return 0.0
    x = _joints(samples)
    total = 0.0
    for i in range(s):
        for j in range(i + 1, s):
            total += float(np.linalg.norm(x[i] - x[j], axis=-1).mean())
    return total / (s * (s - 1) / 2)


def bone_length_error(layout: Layout, positions: np.ndarray) -> float:
    """Mean absolute bone-length error (metres) of kept-joint or all-joint positions ``[..., J or K, 3]``."""
    p = _joints(positions)
    if p.shape[-2] == layout.skeleton.joints:
        p = p[..., layout.kept, :]
    parents = layout.kept_parent[1:]
    bones = np.linalg.norm(p[..., 1:, :] - p[..., parents, :], axis=-1)
    return float(np.abs(bones - layout.bone_length[1:]).mean())


def _feet(layout: Layout, positions: np.ndarray) -> np.ndarray:
    p = _joints(positions)
    if p.shape[-2] == layout.skeleton.joints:
        p = p[..., layout.kept, :]
    return p[..., layout.feet, :]


def foot_skating(layout: Layout, positions: np.ndarray, foot_floor: list[float], fps: float,
                 margin: float = 0.03) -> float:
    """Mean planar speed (m/s) of foot joints in contact (within ``margin`` of their floor) in two consecutive
    frames, over ``positions [..., T, J, 3]``; 0 when no foot is ever in contact."""
    feet = _feet(layout, positions)
    floor = np.asarray(foot_floor)
    contact = feet[..., 1] < floor + margin
    both = contact[..., 1:, :] & contact[..., :-1, :]
    slide = np.linalg.norm((feet[..., 1:, :, :] - feet[..., :-1, :, :])[..., [0, 2]], axis=-1) * fps
    return float(slide[both].mean()) if both.any() else 0.0


def ground_penetration(positions: np.ndarray, ground: float = 0.0) -> float:
    """Mean depth (metres) of the lowest joint below ``ground`` over frames (0 for frames above it)."""
    p = _joints(positions)
    return float(np.clip(ground - p[..., 1].min(axis=-1), 0.0, None).mean())
