"""Motion prediction for benchmarks/motion.py: splits (held-out clips, leave one subject out), windows, baselines
and the rows of figures the issue asks for."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from trajdiff.core.data import Episodes
from trajdiff.core.model import DiffusionModel
from trajdiff.plugins.motion import metrics as M
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.residual import reference
from trajdiff.plugins.motion.synthesis import sample_forecasts

HISTORY, HORIZON, PATCH, FPS = 30, 60, 2, 30.0
GUIDES = ("bone_lengths", "ground", "foot_lock")
GUIDE_COSTS = {"skating": 300.0}


def subject_of(clip: str) -> str:
    """CMU clip ids are ``<subject>_<take>``."""
    return clip.split("_")[0]


def clip_split(episodes: Episodes) -> tuple[Episodes, Episodes]:
    """Every fifth clip of the sorted list (index % 5 == 2) held out whole."""
    test = [i for i in range(len(episodes)) if i % 5 == 2]
    return episodes.select([i for i in range(len(episodes)) if i % 5 != 2]), episodes.select(test)


def validation_split(train: Episodes) -> tuple[Episodes, Episodes]:
    """Every fifth training clip (index % 5 == 0) held out for choosing options; the rest to fit."""
    val = [i for i in range(len(train)) if i % 5 == 0]
    return train.select([i for i in range(len(train)) if i % 5 != 0]), train.select(val)


def subject_splits(episodes: Episodes) -> list[tuple[str, Episodes, Episodes]]:
    """Leave one subject out: (subject, the other subjects' clips, that subject's clips) per subject."""
    subjects = sorted({subject_of(c) for c in episodes.ids})
    out = []
    for s in subjects:
        held = [i for i, c in enumerate(episodes.ids) if subject_of(c) == s]
        rest = [i for i, c in enumerate(episodes.ids) if subject_of(c) != s]
        out.append((s, episodes.select(rest), episodes.select(held)))
    return out


def windows(episodes: Episodes, stride: int, limit: int) -> np.ndarray:
    """History + future windows every ``stride`` frames of every clip, at most ``limit`` (evenly spread)."""
    out = [seq[s:s + HISTORY + HORIZON] for seq in episodes.sequences
           for s in range(0, len(seq) - HISTORY - HORIZON + 1, stride)]
    stacked = np.stack(out)
    if len(stacked) > limit:
        stacked = stacked[np.linspace(0, len(stacked) - 1, limit).round().astype(int)]
    return stacked


def motion_stats(encoder: MotionEncoder, positions: np.ndarray) -> dict[str, float]:
    """Mean joint speed and acceleration, root (ground) speed, foot skating and bone error of motions
    ``[..., T, 3 J]`` in metres."""
    layout = encoder.layout
    assert layout is not None
    joints = positions.reshape(*positions.shape[:-1], -1, 3)[..., layout.kept, :]
    velocity = np.diff(joints, axis=-3) * encoder.fps
    accel = np.diff(velocity, axis=-3) * encoder.fps
    root = np.linalg.norm(velocity[..., 0, [0, 2]], axis=-1)
    return {"joint_speed_m_s": float(np.linalg.norm(velocity, axis=-1).mean()),
            "joint_accel_m_s2": float(np.linalg.norm(accel, axis=-1).mean()),
            "root_speed_m_s": float(root.mean()),
            "skating_m_s": M.foot_skating(layout, positions, encoder.foot_floor, encoder.fps),
            "bone_error_mm": 1000 * M.bone_length_error(layout, positions)}


def body_constant_velocity(encoder: MotionEncoder, history: np.ndarray) -> np.ndarray:
    """The last pose held while the root keeps its recent velocity and turn rate (`residual.reference`), in the
    world: ``[N, HORIZON, 3 J]``."""
    out = []
    for h in history:
        window = np.concatenate([h, np.repeat(h[-1:], HORIZON, 0)])
        tokens, frame = encoder.encode(window, HISTORY)
        features = encoder.from_tokens(torch.from_numpy(tokens).double())
        ref = reference(features[:HISTORY])
        features[HISTORY:] = ref
        world = encoder.decode(encoder.tokens_from_features(features).numpy(), frame)
        out.append(world[HISTORY:])
    return np.stack(out)


def encoder_base(encoder: MotionEncoder, history: np.ndarray) -> np.ndarray:
    """The future a residual encoder decodes when the model adds nothing (standardized residual 0): the
    body-centred constant velocity plus the mean residual, plus the ridge forecast with ``ridge``."""
    out = []
    for h in history:
        tokens, frame = encoder.encode(np.concatenate([h, np.repeat(h[-1:], HORIZON, 0)]), HISTORY)
        tokens[HISTORY // PATCH:] = 0.0
        out.append(encoder.decode(tokens, frame)[HISTORY:])
    return np.stack(out)


def _row(split: str, method: str, futures: np.ndarray, truth: np.ndarray, encoder: MotionEncoder,
         **extra: Any) -> dict[str, Any]:
    return {"task": "prediction", "split": split, "method": method, "label": "all", "windows": len(truth),
            "samples": len(futures), "ade_best": M.ade(futures, truth), "ade_mean": M.ade(futures, truth, best=False),
            "fde_best": M.fde(futures, truth), "fde_mean": M.fde(futures, truth, best=False), "apd": M.apd(futures),
            "ade_of_mean_pose": M.ade(futures.mean(axis=0, keepdims=True), truth),
            **motion_stats(encoder, futures), **extra}


def baseline_rows(split: str, encoder: MotionEncoder, windows_: np.ndarray) -> list[dict[str, Any]]:
    """Zero velocity, constant velocity (per joint), body-centred constant velocity and the truth's figures."""
    history, truth = windows_[:, :HISTORY], windows_[:, HISTORY:]
    last, before = history[:, -1:], history[:, -2:-1]
    steps = np.arange(1, HORIZON + 1)[None, :, None]
    rows = [_row(split, "zero velocity", np.repeat(last, HORIZON, axis=1)[None], truth, encoder),
            _row(split, "constant velocity", (last + (last - before) * steps)[None], truth, encoder),
            _row(split, "body-centred constant velocity", body_constant_velocity(encoder, history)[None], truth,
                 encoder)]
    if encoder.residual:
        name = "ridge (trajdiff's base)" if encoder.ridge else "mean residual (trajdiff's base)"
        rows.append(_row(split, name, encoder_base(encoder, history)[None], truth, encoder))
    rows.append({"task": "prediction", "split": split, "method": "ground truth", "label": "all",
                 "windows": len(truth), **motion_stats(encoder, truth)})
    return rows


def shrink(encoder: MotionEncoder, drawn: np.ndarray, scale: float, guided: bool) -> np.ndarray:
    """Samples' future tokens (the standardized residual over the encoder's base) times ``scale``: 0 gives the
    base, 1 the samples; the projections are applied again when ``guided`` (bone lengths stay exact)."""
    from trajdiff.plugins.motion import guides

    out = torch.from_numpy(drawn).double().clone()
    out[..., HISTORY // PATCH:, :] *= scale
    if guided:
        with torch.no_grad():
            for make in (guides.bone_projection, guides.ground_projection, guides.foot_lock_projection):
                out = make(encoder)(out)
    return out.numpy()


def model_rows(split: str, model: DiffusionModel, encoder: MotionEncoder, windows_: np.ndarray, *, samples: int,
               nfe: int, guided: bool, guidance: float = 1.0, label: str | None = None, name: str = "trajdiff",
               scales: tuple[float, ...] = ()) -> list[dict[str, Any]]:
    """``samples`` futures per window from ``model`` (with the projections and skating cost when ``guided``), and
    the same samples with their residual shrunk by each of ``scales`` (`shrink`)."""
    history, truth = windows_[:, :HISTORY], windows_[:, HISTORY:]
    encoded = [encoder.encode(np.concatenate([h, np.repeat(h[-1:], HORIZON, 0)]), HISTORY) for h in history]
    contexts = np.stack([e[0] for e in encoded])
    started = time.monotonic()
    drawn = sample_forecasts(model, encoder, contexts, HISTORY // PATCH, samples=samples, nfe=nfe, label=label,
                             guidance=guidance, constraints=GUIDES if guided else (),
                             costs=GUIDE_COSTS if guided else None, seed=1)
    seconds = time.monotonic() - started
    rows = []
    for scale in (1.0, *scales):
        tokens = drawn if scale == 1.0 else shrink(encoder, drawn, scale, guided)
        futures = np.stack([encoder.decode(tokens[:, j], encoded[j][1])[:, HISTORY:] for j in range(len(encoded))],
                           axis=1)
        method = name + (" + guides" if guided else "") + ("" if scale == 1.0 else f", residual x {scale:g}")
        rows.append(_row(split, method, futures, truth, encoder, nfe=nfe, sample_seconds=seconds))
    return rows
