"""Writing motions out: BVH through inverse kinematics (opens in Blender or MotionBuilder), a CSV of joint
positions, and pictures and videos (see `render`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trajdiff.errors import ConfigError
from trajdiff.plugins.motion.bvh import Skeleton, write_bvh
from trajdiff.plugins.motion.kinematics import inverse_kinematics, local_to_channels

__all__ = ["positions_to_channels", "write_motion", "write_positions_bvh", "write_positions_csv"]


def positions_to_channels(skeleton: Skeleton, positions: np.ndarray, unit: float = 1.0) -> np.ndarray:
    """Joint positions ``[T, J, 3]`` (metres, skeleton in metres) -> BVH channel values in file units
    (``unit`` metres per file unit) and degrees."""
    rotations, translations = inverse_kinematics(skeleton, positions)
    return local_to_channels(skeleton, rotations, translations / unit)


def write_positions_bvh(path: str | Path, skeleton: Skeleton, positions: np.ndarray, fps: float,
                        unit: float = 1.0) -> Path:
    """Writes joint positions ``[T, J, 3]`` or ``[T, 3 J]`` (metres) as a BVH file on ``skeleton`` (metres),
    in the source files' unit (``unit`` metres per file unit)."""
    positions = np.asarray(positions, float).reshape(len(positions), skeleton.joints, 3)
    values = positions_to_channels(skeleton, positions, unit)
    return write_bvh(path, skeleton.scaled(1.0 / unit), values, 1.0 / fps)


def write_positions_csv(path: str | Path, skeleton: Skeleton, motions: list[np.ndarray], fps: float) -> Path:
    """Writes motions' joint positions (metres) as CSV: columns sample, time, then ``<joint>_x/_y/_z``."""
    tables = []
    for n, motion in enumerate(motions):
        positions = np.asarray(motion, float).reshape(len(motion), -1)
        table = pd.DataFrame(positions, columns=[f"{j}_{a}" for j in skeleton.names for a in "xyz"])
        table.insert(0, "time", np.arange(len(positions)) / fps)
        table.insert(0, "sample", n)
        tables.append(table)
    frame = pd.concat(tables, ignore_index=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.5f")
    return path


def write_motion(path: str | Path, skeleton: Skeleton, motions: list[np.ndarray], fps: float, unit: float = 1.0,
                 labels: list[str] | None = None, history: int = 0) -> Path:
    """Writes motions by extension: .bvh (the first motion at ``path``, the others at ``<stem>_<n>.bvh``),
    .csv (all motions, a ``sample`` column), .gif or .mp4 (all overlaid) or .png (a strip of frames, one row per
    motion)."""
    from trajdiff.plugins.motion.render import render_gif, render_strip, render_video

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        for n, motion in enumerate(motions):
            target = path if n == 0 else path.with_name(f"{path.stem}_{n}{path.suffix}")
            write_positions_bvh(target, skeleton, motion, fps, unit)
        return path
    if suffix == ".csv":
        return write_positions_csv(path, skeleton, motions, fps)
    if suffix == ".gif":
        return render_gif(path, motions, skeleton.parents, fps, labels, history)
    if suffix == ".mp4":
        return render_video(path, motions, skeleton.parents, fps, labels, history)
    if suffix == ".png":
        return render_strip(path, motions, skeleton.parents, fps, labels, history=history)
    raise ConfigError(f"cannot write {path}: the motion domain writes .bvh, .csv, .gif, .mp4 or .png")
