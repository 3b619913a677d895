"""Human motion (CMU mocap, mb2 subset): prediction on held-out clips and on held-out subjects, and endless
streams per label, each beside baselines from the same run.

Protocol: all 86 clips of ``mb2/`` at 30 fps. Prediction windows: 1 s of history (30 frames), 2 s of future (60),
every 30 frames; joint positions in metres in the world frame (root motion included).

- split "clips": every fifth clip of the sorted list (index % 5 == 2) held out whole; the model is trained on
  the rest (choices were made on every fifth training clip, see ``choices`` in the JSON);
- split "<subject>": leave one subject out across the seven (01, 02, 03, 05, 06, 07, 08): a model trained on
  the other six subjects' clips, tested on every clip of the held-out subject, whose activities the others may
  not do (01 playground, 05 dance, 06 basketball); "subjects (mean)" averages the seven;
- per split: zero velocity, constant velocity (per joint), body-centred constant velocity (the pose held, the
  root's recent velocity and turn rate kept) and trajdiff (10 samples, unconditional, with the bone-length,
  floor and foot-lock projections and the skating cost): ADE best of 10 and mean over samples, FDE mean, APD,
  mean joint speed and acceleration, root speed, foot skating, bone error; the true futures' figures beside;
- streams (the "clips" model, conditioned on a label, chunk by chunk: `plugins.motion.chunked`): 60 s per label
  and 10 min for walk and dance, per-label statistics against the label's real clips, per minute for the long
  ones (drift), and a Frechet distance on pose + velocity features to the label's held-out clips, beside a
  nearest-clip stream (motion matching on the training clips) and the training clips themselves.

    .venv/bin/python benchmarks/motion.py --models /tmp/motion_models   # full run, writes results/motion.json
    .venv/bin/python benchmarks/motion.py --quick                         # a smoke run (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402
from _motion_eval import (  # noqa: E402
    HISTORY,
    HORIZON,
    PATCH,
    baseline_rows,
    clip_split,
    model_rows,
    subject_splits,
    windows,
)
from _motion_streams import stream_rows  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.core.data import Episodes  # noqa: E402
from trajdiff.core.model import DiffusionModel  # noqa: E402
from trajdiff.plugins.motion.encoder import MotionEncoder  # noqa: E402
from trajdiff.plugins.motion.loader import load_motion  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_mocap" / "mb2"
NETWORK = {"kind": "window_mlp", "dim": None, "length": None, "width": 256, "depth": 2}
ENCODER = {"patch": PATCH, "residual": True, "mirror": True, "ridge": True}
CHOICES = {
    "recipe": "forecast-mlp", "network": NETWORK, "encoder": ENCODER, "batch_size": 64, "stride": 5, "nfe": 10,
    "samples": 10, "prediction_label": None, "residual_scales": (0.5,), "stream_guidance": 2.0,
    "stream_keep_frames": 30,
    "made_on": "validation clips: every fifth clip of the 'clips' training split (index % 5 == 0), 111 windows, a "
               "model of the same settings trained on the rest (1,225 steps)",
    "validation": {
        "zero velocity ade": 0.4813, "ridge base ade": 0.4085, "guidance 2 vs 4, keep 30 vs 60 (streams)":
            "walk joint speed 0.695 / 0.699 / 0.649 m/s, dance 0.662 / 0.593 / 0.607 m/s against real 1.197 / 0.808",
        "residual scale: ade_best / ade_mean": {"1.0": [0.3524, 0.545], "0.3": [0.3497, 0.4271],
                                                "0.4": [0.3389, 0.437], "0.5": [0.3346, 0.4502],
                                                "0.6": [0.3342, 0.4664], "0.7": [0.3362, 0.4837],
                                                "0.8": [0.3399, 0.5019]},
        "window MLP 512x3 without ridge (758 steps) / 256x2 without ridge (1,951 steps) / 256x2 with ridge (1,225)":
            "ade_best 0.394 / 0.390 / 0.352, ade_mean 0.628 / 0.606 / 0.545 (guided)",
    },
}


def fit(train: Episodes, out: Path, minutes: float) -> dict:
    """Trains the forecast-mlp recipe for ``minutes`` of wall time (or reuses the model in ``out``); returns its
    steps and the process's CPU seconds spent training."""
    if not (out / "config.json").exists():
        cpu = time.process_time()
        api.train("motion", train, out, recipe=CHOICES["recipe"], history=HISTORY, horizon=HORIZON, encoder=ENCODER,
                  steps=1_000_000, minutes=minutes, batch_size=CHOICES["batch_size"], stride=CHOICES["stride"],
                  network=NETWORK, progress=False)
        (out / "cpu_seconds.txt").write_text(f"{time.process_time() - cpu:.1f}\n")
    steps = json.loads((out / "metrics.json").read_text())["step"]
    cpu_file = out / "cpu_seconds.txt"
    return {"steps": steps, "cpu_minutes": float(cpu_file.read_text()) / 60 if cpu_file.exists() else None}


def load(path: Path) -> tuple[DiffusionModel, MotionEncoder]:
    model = DiffusionModel.load(path)
    return model, MotionEncoder.from_state(model.extra["encoder"])


def predict(split: str, model: DiffusionModel, encoder: MotionEncoder, test: Episodes, limit: int,
            rows: list[dict], unguided: bool = False) -> None:
    chosen = windows(test, stride=30, limit=limit)
    rows.extend(baseline_rows(split, encoder, chosen))
    for guided in ((False, True) if unguided else (True,)):
        rows.extend(model_rows(split, model, encoder, chosen, samples=CHOICES["samples"], nfe=CHOICES["nfe"],
                               guided=guided, scales=CHOICES["residual_scales"] if guided else ()))


def subject_mean(rows: list[dict], subjects: list[str]) -> list[dict]:
    """Per method, the mean over the held-out subjects' rows (each subject weighted equally)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows if r.get("split") in subjects):
        picked = [r for r in rows if r.get("split") in subjects and r["method"] == method]
        keys = [k for k, v in picked[0].items() if isinstance(v, float)]
        out.append({"task": "prediction", "split": "subjects (mean)", "method": method, "label": "all",
                    "windows": sum(r["windows"] for r in picked),
                    **{k: float(np.mean([r[k] for r in picked])) for k in keys}})
    return out


KEYS = ["task", "split", "method", "label", "ade_best", "ade_mean", "fde_mean", "apd", "joint_speed_m_s",
        "joint_accel_m_s2", "root_speed_m_s", "skating_m_s", "bone_error_mm"]
COLUMNS = ["split", "method", "ade_best", "ade_mean", "fde_mean", "apd", "joint_speed_m_s", "joint_accel_m_s2",
           "root_speed_m_s", "skating_m_s", "bone_error_mm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--minutes", type=float, default=12.0, help="training minutes (wall) of the clips model")
    parser.add_argument("--subject-minutes", type=float, default=5.0, help="training minutes per subject model")
    parser.add_argument("--windows", type=int, default=120, help="held-out windows of the clips split")
    parser.add_argument("--subject-windows", type=int, default=60, help="windows per held-out subject")
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the long streams")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=None, help="folder for the models (reused when there)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["prediction", "subjects", "streams"],
                        help="parts to leave out; their rows are kept from the results file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    files = sorted(DATA.rglob("*.bvh"))
    episodes = load_motion(files, fps=30.0)
    work = args.models or Path(tempfile.mkdtemp(prefix="trajdiff-motion-"))
    quick = args.quick
    rows: list[dict] = []
    trained: dict[str, dict] = {}
    path = results_path("motion", quick)

    commands = [" ".join(["benchmarks/motion.py", *sys.argv[1:]])]
    if args.skip and path.exists():
        earlier = json.loads(path.read_text())
        rows.extend(r for r in earlier["rows"] if (r["task"] == "stream" and "streams" in args.skip) or
                    (r["task"] == "prediction" and ((r["split"] == "clips" and "prediction" in args.skip) or
                                                    (r["split"] != "clips" and "subjects" in args.skip))))
        trained.update(earlier.get("training", {}))
        commands = [*earlier.get("commands", [earlier["command"]]), *commands]

    def save() -> None:
        for row in rows:  # every row carries the keys (None where a figure does not apply)
            row.setdefault("split", "clips")
            for key in KEYS:
                row.setdefault(key, None)
        write_results("motion", commands[-1], rows, path, commands=commands, choices=CHOICES, training=trained,
                      seconds=time.monotonic() - started)

    train, test = clip_split(episodes)
    trained["clips"] = fit(train, work / "clips", 0.3 if quick else args.minutes)
    model, encoder = load(work / "clips")
    if "prediction" not in args.skip:
        predict("clips", model, encoder, test, 24 if quick else args.windows, rows, unguided=True)
        print(markdown_table(rows, COLUMNS), flush=True)
        save()
    if "subjects" not in args.skip:
        subjects = []
        for subject, rest, held in subject_splits(episodes):
            trained[subject] = fit(rest, work / f"subject_{subject}", 0.2 if quick else args.subject_minutes)
            m, e = load(work / f"subject_{subject}")
            predict(subject, m, e, held, 12 if quick else args.subject_windows, rows)
            subjects.append(subject)
            print(f"subject {subject}: {trained[subject]}", flush=True)
            save()
        rows.extend(subject_mean(rows, subjects))
        print(markdown_table([r for r in rows if r["split"] != "clips"], COLUMNS), flush=True)
        save()
    if "streams" not in args.skip:
        rows.extend(stream_rows(model, encoder, train, test, seconds=10.0 if quick else args.stream_seconds,
                                long_seconds=20.0 if quick else 60 * args.long_minutes,
                                labels=["walk"] if quick else ["walk", "run", "dance", "basketball"],
                                long_labels=["walk"] if quick else ["walk", "dance"],
                                guidance=CHOICES["stream_guidance"], keep=CHOICES["stream_keep_frames"],
                                nfe=CHOICES["nfe"], out=work / "streams"))
        print(markdown_table([r for r in rows if r["task"] == "stream"],
                             ["method", "label", "seconds", "block", "joint_speed_m_s", "joint_accel_m_s2",
                              "root_speed_m_s", "skating_m_s", "bone_error_mm", "frechet"]), flush=True)
        save()
    save()
    print(f"-> {path}")


if __name__ == "__main__":
    main()
