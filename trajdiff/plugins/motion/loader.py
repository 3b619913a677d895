"""Loading a folder (or list) of BVH clips on one skeleton into `Episodes` of joint positions in metres.

Each clip becomes one episode: global joint positions ``[frames, 3 J]`` (columns ``<joint>_x/_y/_z``)
resampled to ``fps``. ``meta`` holds the entity (clip name), times (seconds), the source file, the clip's
label and category (from a ``labels.csv`` with columns clip, description, when one is found), the skeleton
in metres, the unit factor, and a report of what was changed (T-pose frame dropped, resampling). What was read
(clips, frames, the skeleton's joints) is one line in the log, which the command line prints.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.motion.bvh import BvhClip, Skeleton, read_bvh
from trajdiff.plugins.motion.kinematics import channels_to_local, clip_positions, forward_kinematics, rest_positions

__all__ = [
    "CATEGORIES", "UNITS", "category_of", "find_clips", "guess_unit", "joint_columns", "load_motion", "read_labels",
    "skeleton_mismatch", "skeleton_of",
]

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
"""Metres per file unit. ``cmu``: the CMU ASF length unit (``:units length 0.45``: 1/0.45 inch)."""

CATEGORIES = ("walk", "run", "dance", "basketball", "playground", "other")
_KEYWORDS = (("dance", "dance"), ("basketball", "basketball"), ("playground", "playground"), ("run", "run"),
             ("jog", "run"), ("walk", "walk"), ("stride", "walk"))
TYPICAL_HEIGHT_M = 1.6

logger = logging.getLogger(__name__)


def category_of(description: str) -> str:
    """A coarse category (walk, run, dance, basketball, playground, other) from a clip description."""
    text = description.lower()
    for word, category in _KEYWORDS:
        if word in text:
            return category
    return "other"


def guess_unit(skeleton: Skeleton) -> str:
    """The unit (a key of `UNITS`) that makes the rest pose about 1.6 m tall."""
    rest = rest_positions(skeleton)
    tops = [rest[j] + o for j, o in skeleton.end_sites] or [rest.max(axis=0)]
    height = max(float(np.max(np.asarray(tops)[:, 1])), float(rest[:, 1].max())) - float(rest[:, 1].min())
    if height <= 0:
        return "m"
    return min(UNITS, key=lambda u: abs(math.log(height * UNITS[u] / TYPICAL_HEIGHT_M)))


def find_clips(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """BVH files from a file, a folder (searched recursively) or a list of files, sorted by path."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.rglob("*.bvh"))
            if not files:
                raise DataError(f"{path}: the folder holds no .bvh files")
            return files
        if not path.exists():
            raise DataError(f"{path}: no such file or folder; pass a .bvh file or a folder of them")
        if path.suffix.lower() != ".bvh":
            raise DataError(f"{path}: the motion domain reads .bvh files (or a folder of them)")
        return [path]
    files = [Path(p) for p in source]
    if not files:
        raise DataError("no BVH files given")
    return files


def read_labels(path: str | Path) -> dict[str, str]:
    """clip -> description from a CSV with columns ``clip`` and ``description``."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"clip", "description"} <= set(reader.fieldnames):
            raise DataError(f"{path}, line 1: a labels file needs the columns clip,description; "
                            f"found {reader.fieldnames}")
        return {row["clip"]: row["description"] for row in reader}


def _labels_near(files: list[Path]) -> dict[str, str]:
    seen: set[Path] = set()
    labels: dict[str, str] = {}
    for f in files:
        for folder in (f.parent, f.parent.parent):
            candidate = folder / "labels.csv"
            if candidate not in seen and candidate.is_file():
                seen.add(candidate)
                labels.update(read_labels(candidate))
    return labels


def _is_tpose(clip: BvhClip, positions: np.ndarray) -> bool:
    """Frame 0 is an added reference pose: all its rotations are zero, or its largest joint jump to frame 1
    is more than 10 times the median largest jump between the following frames."""
    if clip.frames < 3:
        return False
    columns = [n for n, ch in enumerate(ch for chans in clip.skeleton.channels for ch in chans)
               if ch.endswith("rotation")]
    if np.all(clip.values[0, columns] == 0.0):
        return True
    jumps = np.linalg.norm(np.diff(positions[: min(len(positions), 1000)], axis=0), axis=-1).max(axis=-1)
    return bool(jumps[0] > 10 * np.median(jumps[1:]) and jumps[0] > 1e-9)


def _size(skeleton: Skeleton) -> float:
    """Total bone length: the ratio of two skeletons' sizes scales root translations when retargeting."""
    return float(np.linalg.norm(skeleton.offsets, axis=1).sum())


def _positions_on(reference: Skeleton, clip: BvhClip, root_scale: float) -> np.ndarray:
    """Global positions ``[F, J, 3]`` (file units) of a clip's rotations on the reference skeleton's bones."""
    if root_scale == 1.0 and reference is clip.skeleton:
        return clip_positions(clip)
    rotations, translations = channels_to_local(clip.skeleton, clip.values)
    moved = np.broadcast_to(reference.offsets, translations.shape).copy()
    for j, chans in enumerate(clip.skeleton.channels):
        if any(ch.endswith("position") for ch in chans):
            moved[:, j] = translations[:, j] * root_scale
    return forward_kinematics(reference, rotations, moved)[0]


def resample(positions: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Positions ``[F, ...]`` at ``fps_in`` -> ``fps_out`` (every n-th frame for an integer ratio, else linear)."""
    ratio = fps_in / fps_out
    if abs(ratio - round(ratio)) < 1e-3 and round(ratio) >= 1:
        return positions[:: int(round(ratio))]
    duration = (len(positions) - 1) / fps_in
    times = np.arange(0.0, duration + 1e-9, 1.0 / fps_out) * fps_in
    lo = np.floor(times).astype(int).clip(0, len(positions) - 1)
    hi = (lo + 1).clip(0, len(positions) - 1)
    w = (times - lo).reshape((-1,) + (1,) * (positions.ndim - 1))
    return positions[lo] * (1 - w) + positions[hi] * w


def load_motion(
    source: str | Path | Sequence[str | Path],
    *,
    fps: float = 30.0,
    unit: str | float = "auto",
    labels: str | Path | dict[str, str] | None = None,
    drop_tpose: bool | str = "auto",
    min_frames: int = 2,
    retarget: bool = True,
) -> Episodes:
    """Reads BVH clips that share one skeleton into Episodes of joint positions in metres at ``fps``.

    ``unit`` is metres per file unit (a number or a key of `UNITS`; "auto" guesses from the skeleton's
    height). ``labels``: a labels.csv path or a dict clip -> description (default: a labels.csv next to the
    files or one folder up). ``drop_tpose="auto"`` drops frame 0 when it is an added reference pose.

    Clips whose skeleton has the first clip's joints, tree and channels but other bone lengths (several subjects,
    as in CMU) are retargeted onto the first clip's skeleton with ``retarget=True``: their joint rotations are kept,
    the bones take the first skeleton's offsets and root translations scale by the ratio of total bone lengths.
    Skeletons with other joints are refused with an error naming the file.
    """
    if fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    files = find_clips(source)
    label_map = (read_labels(labels) if isinstance(labels, (str, Path)) else dict(labels) if labels is not None
                 else _labels_near(files))
    first: BvhClip | None = None
    factor = 1.0
    sequences, ids, meta = [], [], []
    for path in files:
        clip = read_bvh(path)
        if first is None:
            first = clip
            scale = 1.0
            name = guess_unit(clip.skeleton) if unit == "auto" else unit
            if isinstance(name, str) and name not in UNITS:
                raise ConfigError(f"unknown unit {name!r}; use a number of metres per unit or one of {list(UNITS)}")
            factor = UNITS[name] if isinstance(name, str) else float(name)
        scale = 1.0
        if clip is not first:
            problem = first.skeleton.difference(clip.skeleton)
            same_tree = problem is None or " has offset " in problem
            if problem and not (retarget and same_tree):
                hint = ("; pass retarget=True to map it onto the first clip's proportions" if same_tree else
                        "; one data set must use one skeleton: load clips of other skeletons separately")
                raise DataError(f"{path}, line 1: its skeleton differs from {first.source}'s ({problem}){hint}")
            if problem:
                scale = _size(first.skeleton) / max(_size(clip.skeleton), 1e-12)
        positions = _positions_on(first.skeleton, clip, scale) * factor
        dropped = bool(drop_tpose is True or (drop_tpose == "auto" and _is_tpose(clip, positions)))
        positions = positions[1 if dropped else 0:]
        positions = resample(positions, clip.fps, fps)
        if len(positions) < max(2, min_frames):
            raise DataError(f"{path}: only {len(positions)} frame(s) at {fps} fps; a clip needs at least "
                            f"{max(2, min_frames)}")
        entity = path.stem
        base = entity if entity not in ids else f"{path.parent.name}/{entity}"
        description = label_map.get(entity, "")
        sequences.append(positions.reshape(len(positions), -1))
        ids.append(base)
        meta.append({
            "entity": base, "times": np.arange(len(positions)) / fps, "source": str(path), "label": description,
            "category": category_of(description) if description else "other", "fps": fps, "unit": factor,
            "report": {"frames_in": clip.frames, "tpose_dropped": dropped, "fps_in": clip.fps,
                       "resampled": abs(clip.fps - fps) > 1e-6, "retargeted": scale != 1.0 or
                       first.skeleton.difference(clip.skeleton) is not None, "root_scale": scale},
        })
    assert first is not None
    skeleton = first.skeleton.scaled(factor)
    where = source if isinstance(source, (str, Path)) else f"{len(files)} files"
    logger.info(f"{where}: read {len(files)} clip(s), {sum(len(s) for s in sequences)} frame(s) at {fps:g} fps, a "
                f"skeleton of {skeleton.joints} joints ({', '.join(skeleton.names[:6])}"
                + (", ...)" if skeleton.joints > 6 else ")") + _changes(meta, first.source))
    for m in meta:
        m["skeleton"] = skeleton
    return Episodes(sequences, joint_columns(skeleton), ids, meta)


def _changes(meta: list[dict[str, Any]], first: Any) -> str:
    """What reading changed in the clips, counted (none: ""): retargeted, resampled, reference pose dropped."""
    reports = [m["report"] for m in meta]
    counts = [(sum(r["retargeted"] for r in reports), f"retargeted onto {Path(str(first)).name}'s bone lengths"),
              (sum(r["resampled"] for r in reports), "resampled to this frame rate"),
              (sum(r["tpose_dropped"] for r in reports), "with a reference pose as frame 0, dropped")]
    said = [f"{count} clip(s) {what}" for count, what in counts if count]
    return "; " + ", ".join(said) if said else ""


def joint_columns(skeleton: Skeleton) -> list[str]:
    """The columns of a skeleton's joint positions: ``<joint>_x, <joint>_y, <joint>_z`` per joint, in file order."""
    return [f"{name}_{axis}" for name in skeleton.names for axis in "xyz"]


def skeleton_mismatch(model: Skeleton, clips: Skeleton, shown: int = 8) -> str | None:
    """None when ``clips`` has the ``model``'s joints (by name, any order) on the same tree (each joint's parent by
    name), else what differs: the joints only one of them has, or the first joint whose parent differs."""
    def names(joints: list[str]) -> str:
        return "[" + ", ".join(joints[:shown]) + (f", ... {len(joints)} in all" if len(joints) > shown else "") + "]"

    only_model = [n for n in model.names if n not in clips.names]
    only_clips = [n for n in clips.names if n not in model.names]
    if only_model or only_clips:
        return (f"the model's skeleton has {model.joints} joints, the clips' {clips.joints}; joints only the model "
                f"has: {names(only_model)}, only the clips have: {names(only_clips)}")

    def parent(skeleton: Skeleton, name: str) -> str:
        p = skeleton.parents[skeleton.names.index(name)]
        return "none (root)" if p < 0 else skeleton.names[p]

    moved = [n for n in model.names if parent(model, n) != parent(clips, n)]
    if moved:
        return (f"both have joints {names(list(model.names))} but on other trees: joint {moved[0]!r} hangs from "
                f"{parent(model, moved[0])} in the model and from {parent(clips, moved[0])} in the clips"
                + (f" ({len(moved)} joints differ)" if len(moved) > 1 else ""))
    return None


def skeleton_of(episodes: Episodes) -> Skeleton:
    """The (metre) skeleton stored in the episodes' meta by `load_motion`."""
    if not episodes.meta or "skeleton" not in episodes.meta[0]:
        raise DataError("these episodes carry no skeleton; load them with the motion domain (load_motion)")
    return episodes.meta[0]["skeleton"]

