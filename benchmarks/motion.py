"""Human motion (CMU mocap, mb2 subset): prediction, physical plausibility with and without guides, and a
60-second stream, each beside baselines from the same run.

Protocol: all 86 clips of ``mb2/`` at 30 fps (subjects retargeted onto the first clip's skeleton), split by
clip: every fifth clip of the sorted list (index % 5 == 2) is held out whole. Prediction windows: 1 s of history
(30 frames), 2 s of future (60 frames), taken every 30 frames from the held-out clips. Metrics on the 31 joints'
positions in metres, in the world frame (root motion included):

- ADE / FDE, best of 10 samples and the mean over samples; APD (mean per-joint distance between two samples);
  baselines: zero velocity (the last observed pose held) and constant velocity (each joint continues its last
  observed velocity);
- bone-length error (mm), foot skating (m/s of foot joints in contact), ground penetration (mm below y = 0),
  for samples without guides and with the guides (bone-length projection, floor projection, foot lock, applied
  to the x0 prediction and to finished tokens, plus the skating cost's gradient at scale 300), and for the true
  futures;
- path following: the same windows guided by the timed root-path cost (scale 10) towards a straight 2.5 m path
  turned 45 degrees left: mean distance of the root to where it should be, and to the goal, with and without;
- a 60-second stream per label through the rolling plan (a model trained with rolling noise levels), with and
  without guides, the same physical figures per 10-second block plus root speed and mean joint speed (a frozen
  stream has joint speed 0), and the true clips' figures beside them.

    .venv/bin/python benchmarks/motion.py            # full run (about 50 min on 2 cores), writes results/motion.json
    .venv/bin/python benchmarks/motion.py --models runs/bench --stream-minutes 9   # keep / reuse the models
    .venv/bin/python benchmarks/motion.py --quick    # a smoke run (a few minutes)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.core.data import Episodes  # noqa: E402
from trajdiff.core.model import DiffusionModel  # noqa: E402
from trajdiff.plugins.motion import metrics as M  # noqa: E402
from trajdiff.plugins.motion.encoder import MotionEncoder  # noqa: E402
from trajdiff.plugins.motion.loader import load_motion  # noqa: E402
from trajdiff.plugins.motion.synthesis import sample_forecasts, synthesize  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_mocap" / "mb2"
HISTORY, HORIZON, PATCH, FPS = 30, 60, 2, 30.0
GUIDES = ("bone_lengths", "ground", "foot_lock")
GUIDE_COSTS = {"skating": 300.0}


def split(episodes: Episodes) -> tuple[Episodes, Episodes]:
    test = [i for i in range(len(episodes)) if i % 5 == 2]
    train = [i for i in range(len(episodes)) if i % 5 != 2]
    return episodes.select(train), episodes.select(test)


def test_windows(episodes: Episodes, stride: int, limit: int) -> np.ndarray:
    out = [seq[s:s + HISTORY + HORIZON] for seq in episodes.sequences
           for s in range(0, len(seq) - HISTORY - HORIZON + 1, stride)]
    windows = np.stack(out)
    if len(windows) > limit:
        windows = windows[np.linspace(0, len(windows) - 1, limit).round().astype(int)]
    return windows


def physical(encoder: MotionEncoder, positions: np.ndarray) -> dict[str, float]:
    layout = encoder.layout
    assert layout is not None
    return {"bone_error_mm": 1000 * M.bone_length_error(layout, positions),
            "skating_m_s": M.foot_skating(layout, positions, encoder.foot_floor, encoder.fps),
            "penetration_mm": 1000 * M.ground_penetration(positions)}


def prediction(model: DiffusionModel, encoder: MotionEncoder, windows: np.ndarray, samples: int, nfe: int,
               rows: list[dict]) -> None:
    history, truth = windows[:, :HISTORY], windows[:, HISTORY:]
    encoded = [encoder.encode(np.concatenate([h, np.repeat(h[-1:], HORIZON, 0)]), HISTORY) for h in history]
    contexts = np.stack([e[0] for e in encoded])
    frames = [e[1] for e in encoded]
    common = {"windows": len(windows), "history_s": HISTORY / FPS, "horizon_s": HORIZON / FPS}
    last, before = history[:, -1:], history[:, -2:-1]
    zero = np.repeat(last, HORIZON, axis=1)[None]
    steps = np.arange(1, HORIZON + 1)[None, :, None]
    constant = (last + (last - before) * steps)[None]
    for name, guess in (("zero velocity", zero), ("constant velocity", constant)):
        rows.append({"task": "prediction", "method": name, **common, "samples": 1,
                     "ade_best": M.ade(guess, truth), "fde_best": M.fde(guess, truth),
                     "ade_mean": M.ade(guess, truth), "fde_mean": M.fde(guess, truth), "apd": 0.0,
                     **physical(encoder, guess[0])})
    rows.append({"task": "prediction", "method": "ground truth", **common, **physical(encoder, truth)})
    for guided in (False, True):
        started = time.monotonic()
        drawn = sample_forecasts(model, encoder, contexts, HISTORY // PATCH, samples=samples, nfe=nfe,
                                 constraints=GUIDES if guided else (), costs=GUIDE_COSTS if guided else None, seed=1)
        seconds = time.monotonic() - started
        futures = np.stack([encoder.decode(drawn[:, j], frames[j])[:, HISTORY:] for j in range(len(frames))], axis=1)
        rows.append({"task": "prediction", "method": "trajdiff + guides" if guided else "trajdiff", **common,
                     "samples": samples, "nfe": nfe, "ade_best": M.ade(futures, truth),
                     "fde_best": M.fde(futures, truth),
                     "ade_mean": M.ade(futures, truth, best=False), "fde_mean": M.fde(futures, truth, best=False),
                     "apd": M.apd(futures), **physical(encoder, futures), "seconds": seconds})


def path_following(model: DiffusionModel, encoder: MotionEncoder, windows: np.ndarray, nfe: int, scale: float,
                   rows: list[dict]) -> None:
    """Futures guided by the timed root-path cost towards a straight 2.5 m path turned 45 degrees left of the
    heading at the last observed frame: mean distance of the root to where the path says it should be."""
    from trajdiff.core.guidance import CostGradient
    from trajdiff.plugins.motion import guides
    from trajdiff.plugins.motion.features import root_trajectory

    angle = np.deg2rad(45.0)
    path = np.array([[0.0, 0.0], [2.5 * np.sin(angle), 2.5 * np.cos(angle)]])
    targets = guides.path_targets(path, HORIZON)
    history = windows[:, :HISTORY]
    contexts = np.stack([encoder.encode(np.concatenate([h, np.repeat(h[-1:], HORIZON, 0)]), HISTORY)[0]
                         for h in history])
    cost = guides.root_path_cost(encoder, path, anchor=HISTORY - 1, start=HISTORY, timed=True)
    for weight in (0.0, scale):
        extra = [CostGradient(cost, scale=weight)] if weight else []
        drawn = sample_forecasts(model, encoder, contexts, HISTORY // PATCH, samples=4, nfe=nfe, constraints=GUIDES,
                                 costs=GUIDE_COSTS, seed=2, extra_guides=extra)
        root, _ = root_trajectory(encoder.from_tokens(torch.from_numpy(drawn).double()), HISTORY - 1)
        root = root[..., HISTORY:, :].numpy()
        rows.append({"task": "path", "method": "trajdiff + guides" + (f" + path cost {weight:g}" if weight else ""),
                     "windows": len(windows), "samples": 4, "path_error_m": float(np.linalg.norm(root - targets,
                                                                                                  axis=-1).mean()),
                     "goal_error_m": float(np.linalg.norm(root[..., -1, :] - path[-1], axis=-1).mean())})


def blocks(encoder: MotionEncoder, motions: np.ndarray, block_s: float) -> list[dict[str, float]]:
    per = int(block_s * encoder.fps)
    assert encoder.skeleton is not None
    names = encoder.skeleton.names
    head = names.index("Head") if "Head" in names else len(names) - 1
    out = []
    for b in range(motions.shape[1] // per):
        chunk = motions[:, b * per:(b + 1) * per]
        joints = chunk.reshape(*chunk.shape[:2], -1, 3)
        speed = np.linalg.norm(np.diff(joints, axis=1), axis=-1) * encoder.fps
        root = np.linalg.norm(np.diff(joints[..., 0, :][..., [0, 2]], axis=1), axis=-1) * encoder.fps
        out.append({"block": f"{b * block_s:.0f}-{(b + 1) * block_s:.0f} s", **physical(encoder, chunk),
                    "root_speed_m_s": float(root.mean()), "joint_speed_m_s": float(speed.mean()),
                    "head_height_m": float(joints[..., head, 1].mean())})
    return out


def streaming(model: DiffusionModel, encoder: MotionEncoder, test: Episodes, seconds: float, labels: list[str],
              rows: list[dict]) -> None:
    for guided in (False, True):
        for label in labels:
            started = time.monotonic()
            motions = synthesize(model, encoder, seconds=seconds, label=label, samples=2, guidance=2.0,
                                 constraints=GUIDES if guided else (), costs=GUIDE_COSTS if guided else None, seed=3)
            elapsed = time.monotonic() - started
            for block in blocks(encoder, motions, 10.0):
                rows.append({"task": "stream", "method": "trajdiff + guides" if guided else "trajdiff",
                             "label": label, "seconds": seconds, "wall_s": elapsed, **block})
    real = [seq for seq in test.sequences if len(seq) >= 10 * FPS]
    clip = np.stack([seq[: int(10 * FPS)] for seq in real])
    rows.append({"task": "stream", "method": "held-out clips (first 10 s)", "label": "all",
                 **blocks(encoder, clip, 10.0)[0]})


def fit(train: Episodes, out: Path, mode: str, history: int, horizon: int, minutes: float,
        network: dict, more_minutes: float = 0.0) -> dict:
    """Trains the motion recipe ``mode`` for ``minutes`` (or reuses the model in ``out``, training it
    ``more_minutes`` on from its checkpoint); returns its steps and training seconds (all runs together)."""
    exists = (out / "config.json").exists()
    if not exists or more_minutes > 0:
        done = float((out / "seconds.txt").read_text()) if (out / "seconds.txt").exists() else 0.0
        started = time.monotonic()
        api.train("motion", train, out, recipe=mode, history=history, horizon=horizon, encoder={"patch": PATCH},
                  steps=100_000, minutes=more_minutes if exists else minutes, batch_size=64, stride=5, network=network,
                  resume=exists, progress=False)
        (out / "seconds.txt").write_text(f"{done + time.monotonic() - started:.1f}\n")
    import json

    steps = json.loads((out / "metrics.json").read_text())["step"]
    seconds = float((out / "seconds.txt").read_text()) if (out / "seconds.txt").exists() else None
    return {"steps": steps, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and few windows: a smoke run")
    parser.add_argument("--minutes", type=float, default=17.0, help="training minutes per model (full run)")
    parser.add_argument("--stream-minutes", type=float, default=None, help="training minutes of the stream model "
                        "(default: --minutes)")
    parser.add_argument("--windows", type=int, default=120, help="held-out prediction windows (evenly spread)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=None,
                        help="folder for the two trained models; models already there are reused, not retrained")
    parser.add_argument("--more-minutes", type=float, default=0.0,
                        help="train a reused forecast model this many minutes more (resumed from its checkpoint)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    started = time.monotonic()
    files = sorted(DATA.rglob("*.bvh"))
    if quick:
        files = [f for f in files if f.parent.name in ("02", "07", "08")]
    episodes = load_motion(files, fps=FPS)
    train, test = split(episodes)
    print(f"{len(train)} training clips, {len(test)} held-out clips ({time.monotonic() - started:.0f} s to load)")
    network = ({"kind": "transformer", "width": 48, "depth": 2, "heads": 4} if quick else
               {"kind": "transformer", "width": 96, "depth": 3, "heads": 4})
    minutes = 0.5 if quick else args.minutes
    work = args.models or Path(tempfile.mkdtemp(prefix="trajdiff-motion-"))
    rows: list[dict] = []
    trained = fit(train, work / "forecast", "forecast", HISTORY, HORIZON, minutes, network, args.more_minutes)
    print(f"forecast model: {trained} -> {work / 'forecast'}")
    model = DiffusionModel.load(work / "forecast")
    encoder = MotionEncoder.from_state(model.extra["encoder"])
    windows = test_windows(test, stride=30, limit=24 if quick else args.windows)
    path = results_path("motion", quick)

    def save(**extra: object) -> None:
        write_results("motion", " ".join(["benchmarks/motion.py", *sys.argv[1:]]), rows, path,
                      training={"forecast": trained, "network": network, "train_clips": len(train),
                                "test_clips": len(test), "held_out": test.ids, **extra},
                      seconds=time.monotonic() - started)

    prediction(model, encoder, windows, samples=10, nfe=10 if quick else 20, rows=rows)
    report(rows, "prediction")
    save()
    path_following(model, encoder, windows, nfe=10 if quick else 20, scale=10.0, rows=rows)
    report(rows, "path")
    save()
    stream_minutes = minutes if quick or args.stream_minutes is None else args.stream_minutes
    stream_trained = fit(train, work / "stream", "stream", 30, 30, stream_minutes, network)
    print(f"stream model: {stream_trained} -> {work / 'stream'}")
    stream_model = DiffusionModel.load(work / "stream")
    stream_encoder = MotionEncoder.from_state(stream_model.extra["encoder"])
    streaming(stream_model, stream_encoder, test, 20.0 if quick else 60.0, ["walk"] if quick else ["walk", "dance"],
              rows)
    report(rows, "stream")
    save(stream=stream_trained)
    print(f"-> {path}")


COLUMNS = {
    "prediction": ["method", "samples", "ade_best", "fde_best", "ade_mean", "fde_mean", "apd", "bone_error_mm",
                   "skating_m_s", "penetration_mm"],
    "path": ["method", "windows", "path_error_m", "goal_error_m"],
    "stream": ["method", "label", "block", "bone_error_mm", "skating_m_s", "penetration_mm", "root_speed_m_s",
               "joint_speed_m_s", "head_height_m"],
}


def report(rows: list[dict], task: str) -> None:
    print(markdown_table([r for r in rows if r["task"] == task], COLUMNS[task]), flush=True)
    print(flush=True)


if __name__ == "__main__":
    main()
