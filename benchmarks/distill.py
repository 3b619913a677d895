"""Distillation on ETTh1: a teacher trained through the public API, distilled into few-step students
(`api.distill`), teacher and students scored on the same test windows and timed in the same process.

Protocol as `etth1.py` (Informer splits, 7 standardized variables, 96 rows of context; h = 96 by default):
the teacher is the `timeseries` domain's model with `etth1.py`'s transformer (width 128, depth 3), trained
for --teacher-steps on the training months. Students: `api.distill` for --student-minutes each, from the
teacher's own samples (the default, no data) and from the training months' windows (`data=`); one student
serves every NFE (it learns the ends of the teacher's ODE at every level; NFE only sets its plan).

Settings chosen on --val-windows validation windows (lowest CRPS): the teacher's solver at each NFE
(DPM-Solver++(2M) on the uniform spacing, its default, or UniPC on the log-SNR spacing), the students'
re-noising (fresh noise, eta 1, or the predicted noise, eta 0). Test rows: CRPS, MSE and MAE of the
samples' median, 50% / 90% coverage over --max-windows evenly spread test windows (--samples each, independent
noise), and windows per second of sampling plus decoding, timed in interleaved rounds on --time-windows windows
so that a shared machine's slow phases hit every row alike; ratios against the teacher at 10 NFE.

    .venv/bin/python benchmarks/distill.py --threads 1          # writes benchmarks/results/distill.json
    .venv/bin/python benchmarks/distill.py --quick              # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, markdown_table, median, results_path, write_results  # noqa: E402
from etth1 import CONTEXT, DATA, NETWORK, _encode, sample_scores, split, windows  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.core.solvers import get_solver  # noqa: E402

TEACHER_SETTINGS = {"dpmpp2m, uniform": ("dpmpp2m", None), "unipc, logsnr": ("unipc", {"spacing": "logsnr"})}
STUDENT_SETTINGS = {"eta 1": 1.0, "eta 0": 0.0}


def forecast(loaded: api.LoadedModel, contexts: np.ndarray, frames: list[dict], *, samples: int, nfe: int,
             solver: object, plan_options: dict | None, seed: int) -> np.ndarray:
    """Standardized samples ``[S, N, H, F]`` of the future (sampling and decoding, as a forecast does)."""
    encoder = loaded.encoder
    drawn = api.sample_futures(loaded, contexts, samples=samples, nfe=nfe, solver=solver, seed=seed,
                               plan_options=plan_options)
    decoded = np.stack([encoder.decode(drawn[:, j], frames[j]) for j in range(len(frames))], axis=1)
    return encoder.normalizer.transform(decoded)[:, :, CONTEXT:]


def finished(model_dir: Path, steps: int | None = None) -> bool:
    """Whether ``model_dir`` holds a model trained for ``steps`` (any for a student, which is written once at the
    end), not a checkpoint of an interrupted run."""
    config = model_dir / "config.json"
    return config.exists() and (steps is None or json.loads(config.read_text()).get("step") == steps)


def evenly(count: int, most: int) -> np.ndarray:
    return np.linspace(0, count - 1, min(count, most)).round().astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--teacher-steps", type=int, default=3000)
    parser.add_argument("--student-minutes", type=float, default=10.0)
    parser.add_argument("--student-steps", type=int, default=100_000, help="most student steps (minutes stop first)")
    parser.add_argument("--sources", nargs="+", default=["teacher", "data"], choices=["teacher", "data"],
                        help="where the students' trajectories start: the teacher's samples, the training months")
    parser.add_argument("--teacher-nfe", type=int, nargs="+", default=[1, 2, 4, 10, 20])
    parser.add_argument("--student-nfe", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--val-windows", type=int, default=200)
    parser.add_argument("--max-windows", type=int, default=1000)
    parser.add_argument("--time-windows", type=int, default=100)
    parser.add_argument("--time-rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=None, help="keep the models here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="reuse the teacher and students in --models")
    parser.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/distill.json)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.teacher_steps, args.student_minutes, args.student_steps, args.samples = 100, 0.2, 30, 4
        args.val_windows, args.max_windows, args.time_windows, args.time_rounds = 16, 32, 16, 1
    torch.set_num_threads(args.threads)
    if not DATA.exists():
        raise SystemExit(f"ETTh1 not found at {DATA}; see datasets/etth1.md for how to obtain it")
    train_frame, _, val, test = split(pd.read_csv(DATA))
    with tempfile.TemporaryDirectory() as scratch:
        root = args.models or Path(scratch)
        rows, extra = run(args, train_frame, val, test, root)
    command = "python benchmarks/distill.py " + " ".join(sys.argv[1:])
    path = write_results("distill", command.strip(), rows, args.out or results_path("distill", args.quick), **extra)
    print(markdown_table(rows, ["method", "nfe", "setting", "crps", "mse", "mae", "coverage50", "coverage90",
                                "windows_per_s", "speed_vs_teacher_10", "crps_vs_teacher_10"]))
    print(f"\nwrote {path}")


def run(args: argparse.Namespace, train_frame: pd.DataFrame, val: np.ndarray, test: np.ndarray,
        root: Path) -> tuple[list[dict], dict]:
    horizon, extra = args.horizon, {}
    teacher_dir = root / f"teacher-h{horizon}"
    if not (args.reuse and finished(teacher_dir, args.teacher_steps)):
        started = time.monotonic()
        api.train("timeseries", train_frame, teacher_dir, steps=args.teacher_steps, history=CONTEXT, horizon=horizon,
                  batch_size=64, seed=args.seed, network=NETWORK, progress=False, overwrite=True)
        extra["teacher_train_s"] = time.monotonic() - started
    models = {"teacher": api.load_model(teacher_dir)}
    for source in args.sources:
        student_dir = root / f"student-{source}-h{horizon}"
        if not (args.reuse and finished(student_dir)):
            summary = api.distill(teacher_dir, student_dir, nfe=2, steps=args.student_steps,
                                  minutes=args.student_minutes, data=train_frame if source == "data" else None,
                                  seed=args.seed, progress=False, overwrite=True)
            extra[f"student_{source}"] = {"steps": summary.steps, "seconds": summary.seconds,
                                          "final_loss": summary.final_loss, "windows": summary.windows}
            print(f"  student from {summary.windows}: {summary.steps} steps in {summary.seconds:.0f} s", flush=True)
        models[f"student ({source})"] = api.load_model(student_dir)
    encoder = models["teacher"].encoder
    x_val, y_val = windows(val, horizon)
    pick = evenly(len(x_val), args.val_windows)
    val_contexts, val_frames = _encode(encoder, x_val[pick], horizon)
    x_test, y_test = windows(test, horizon)
    keep = evenly(len(x_test), args.max_windows)
    contexts, frames = _encode(encoder, x_test[keep], horizon)
    y_test = y_test[keep]

    def candidates(name: str, nfe: int) -> dict[str, tuple[object, dict | None]]:
        if name == "teacher":
            return {key: value for key, value in TEACHER_SETTINGS.items() if nfe > 1 or key.startswith("dpmpp2m")}
        return {key: (get_solver("consistency", eta=eta), None) for key, eta in STUDENT_SETTINGS.items()
                if nfe > 1 or eta == 1.0}

    chosen: list[tuple[str, int, str, object, dict | None]] = []
    validation = []
    for name, loaded in models.items():
        for nfe in args.teacher_nfe if name == "teacher" else args.student_nfe:
            scored = {}
            for key, (solver, options) in candidates(name, nfe).items():
                drawn = forecast(loaded, val_contexts, val_frames, samples=args.samples, nfe=nfe, solver=solver,
                                 plan_options=options, seed=args.seed + 1)
                scored[key] = sample_scores(drawn, y_val[pick])["crps"]
                validation.append({"method": name, "nfe": nfe, "setting": key, "validation_crps": scored[key]})
            best = min(scored, key=scored.get)
            chosen.append((name, nfe, best, *candidates(name, nfe)[best]))
            print(f"  {name} at {nfe} NFE: {best} (validation CRPS {scored[best]:.4f})", flush=True)
    rows = []
    for name, nfe, key, solver, options in chosen:
        drawn = forecast(models[name], contexts, frames, samples=args.samples, nfe=nfe, solver=solver,
                         plan_options=options, seed=args.seed)
        rows.append({"method": name, "horizon": horizon, "nfe": nfe, "setting": key, "samples": args.samples,
                     "windows": len(keep), **sample_scores(drawn, y_test)})
    timed = evenly(len(contexts), args.time_windows)
    calls = {f"{name}@{nfe}": (lambda loaded=models[name], nfe=nfe, solver=solver, options=options: forecast(
        loaded, contexts[timed], [frames[i] for i in timed], samples=args.samples, nfe=nfe, solver=solver,
        plan_options=options, seed=args.seed)) for name, nfe, _, solver, options in chosen}
    seconds = interleaved(calls, repeats=args.time_rounds, warmup=1)
    for row in rows:
        row["windows_per_s"] = len(timed) / median(seconds[f"{row['method']}@{row['nfe']}"])
    reference = next((row for row in rows if row["method"] == "teacher" and row["nfe"] == 10), rows[0])
    for row in rows:
        row["speed_vs_teacher_10"] = row["windows_per_s"] / reference["windows_per_s"]
        row["crps_vs_teacher_10"] = row["crps"] / reference["crps"]
    extra["validation"] = validation
    extra["threads"] = args.threads
    return rows, extra


if __name__ == "__main__":
    main()
