"""Streams for benchmarks/motion.py: per-label statistics, a Frechet distance on pose + velocity features, and a
nearest-clip stream (motion matching on the training clips) as the baseline beside the model's streams."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from trajdiff.core.data import Episodes
from trajdiff.core.model import DiffusionModel
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.features import decode_world, heading_of, local_pose

HISTORY = 30


def pose_velocity(encoder: MotionEncoder, motions: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Per frame: the kept joints' positions relative to the root's ground point and their velocities (m/s), both
    in the body's heading frame: ``[frames, 6 K]`` over motions ``[T, 3 J]`` (frames of all motions pooled)."""
    layout = encoder.layout
    assert layout is not None
    out = []
    for motion in motions:
        joints = motion.reshape(len(motion), -1, 3)
        features = torch.from_numpy(encoder.features(motion))
        pose = local_pose(layout, features).numpy()[1:]
        heading = heading_of(joints, layout.pairs)[1:]
        velocity = np.diff(joints[:, layout.kept], axis=0) * encoder.fps
        c, s = np.cos(-heading)[:, None], np.sin(-heading)[:, None]
        x, z = velocity[..., 0], velocity[..., 2]
        turned = np.stack([c * x + s * z, velocity[..., 1], -s * x + c * z], axis=-1)
        out.append(np.concatenate([pose.reshape(len(pose), -1), turned.reshape(len(turned), -1)], axis=1))
    return np.concatenate(out)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``[n, d]`` and ``[m, d]``."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    root = np.real(root)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def nearest_clip_stream(encoder: MotionEncoder, clips: list[np.ndarray], seed: np.ndarray, frames: int,
                        keep: int = 30) -> np.ndarray:
    """A stream that copies training clips: from the seed's last second, append the ``keep`` frames that follow
    the training second nearest to it (features standardized, frame by frame), repeat. Positions ``[frames, 3 J]``
    (the seed first, at the origin facing +Z)."""
    scale = encoder.std
    assert scale is not None
    keys, follows = [], []
    for clip in clips:
        f = encoder.features(clip)
        for s in range(0, len(f) - HISTORY - keep + 1, 2):
            keys.append((f[s:s + HISTORY] / scale).ravel())
            follows.append(f[s + HISTORY:s + HISTORY + keep])
    table, after = np.stack(keys), np.stack(follows)
    produced = [encoder.features(seed)[:HISTORY]]
    done = HISTORY
    while done < frames:
        last = np.concatenate(produced)[-HISTORY:]
        nearest = int(np.argmin(((table - (last / scale).ravel()) ** 2).sum(axis=1)))
        produced.append(after[nearest])
        done += keep
    features = torch.from_numpy(np.concatenate(produced)[:frames])
    world = decode_world(encoder._layout(), features, 0)
    return encoder.all_joints(world.numpy())


def clip_stats(encoder: MotionEncoder, clips: list[np.ndarray]) -> dict[str, float]:
    """`motion_stats` of each clip, averaged with the clips' frames as weights (no jump between clips)."""
    from _motion_eval import motion_stats

    per = [motion_stats(encoder, clip[None]) for clip in clips]
    weights = np.array([len(clip) for clip in clips], float)
    return {key: float(np.average([p[key] for p in per], weights=weights)) for key in per[0]}


def _stats_rows(encoder: MotionEncoder, motions: np.ndarray, block_s: float, **common: object) -> list[dict]:
    """`motion_stats` per block of ``block_s`` seconds of streams ``[S, T, 3 J]`` (one block: the whole)."""
    from _motion_eval import motion_stats

    per = int(round(block_s * encoder.fps))
    out = []
    for b in range(max(1, motions.shape[1] // per)):
        chunk = motions[:, b * per:(b + 1) * per]
        out.append({"task": "stream", **common, "block": f"{b * block_s:g}-{(b + 1) * block_s:g} s",
                    **motion_stats(encoder, chunk)})
    return out


def stream_rows(model: DiffusionModel, encoder: MotionEncoder, train: Episodes, test: Episodes, *, seconds: float,
                long_seconds: float, labels: list[str], long_labels: list[str], guidance: float, keep: int,
                nfe: int, out: Path | None = None) -> list[dict]:
    """Per label: the real clips' statistics (all clips of the label), streams of ``seconds`` (2 per label) and
    ``long_seconds`` (1, per minute) from the model and from the nearest-clip baseline, seeded by the first second
    of a held-out clip of the label, with a Frechet distance to the label's held-out clips (all its clips where
    none is held out) and the training clips' own distance beside it. The nearest-clip stream copies the label's
    training clips, or every training clip where the label has none long enough."""
    from _motion_eval import GUIDE_COSTS, GUIDES

    from trajdiff.plugins.motion.chunked import synthesize_chunked
    from trajdiff.plugins.motion.export import write_motion

    rows: list[dict] = []
    for label in labels:
        real_test = [s for s, m in zip(test.sequences, test.meta, strict=True) if m["category"] == label]
        real_train = [s for s, m in zip(train.sequences, train.meta, strict=True) if m["category"] == label]
        reference = real_test or real_train
        seed_clip = (real_test or real_train)[0][:HISTORY]
        ref_features = pose_velocity(encoder, reference)
        rows.append({"task": "stream", "method": "real clips", "label": label, "seconds": None, "block": "all",
                     "clips": len(real_test + real_train), **clip_stats(encoder, real_test + real_train)})
        if real_test:
            rows[-1]["frechet"] = frechet(pose_velocity(encoder, real_train), ref_features)
            rows[-1]["frechet_of"] = "training clips against held-out clips"
        lengths = [(seconds, 2, seconds)] + ([(long_seconds, 1, 60.0)] if label in long_labels else [])
        for length, count, block in lengths:
            frames = int(round(length * encoder.fps))
            context = np.repeat(encoder.to_tokens(encoder.features(seed_clip))[None], count, axis=0)
            started = time.monotonic()
            motions = synthesize_chunked(model, encoder, context, seconds=length, label=label, guidance=guidance,
                                         keep=keep, nfe=nfe, constraints=GUIDES, costs=GUIDE_COSTS, seed=3)
            wall = time.monotonic() - started
            own = [c for c in real_train if len(c) >= HISTORY + keep]
            nearest = np.stack([nearest_clip_stream(encoder, own or list(train.sequences), seed_clip, frames, keep)])
            copier = "nearest clip" if own else "nearest clip (all labels' clips)"
            for method, motion, extra in (("trajdiff + guides", motions, {"wall_s": wall}), (copier, nearest, {})):
                whole = _stats_rows(encoder, motion, 1e9, method=method, label=label, seconds=length, **extra)[0]
                whole.update(block="all", frechet=frechet(pose_velocity(encoder, list(motion)), ref_features))
                rows.append(whole)
                if length > 2 * block:
                    rows.extend(_stats_rows(encoder, motion, block, method=method, label=label, seconds=length))
            if out is not None:
                write_motion(out / f"{label}_{length:g}s.mp4", train.meta[0]["skeleton"], [motions[0][:1800]],
                             encoder.fps, labels=[label])
    return rows
