"""AIS vessel forecasting, 30 minutes ahead from 30 minutes of history, in three held-out settings.

One model (the vessel domain through `api.train`, as `trajdiff train` runs it; default recipe ``window-mlp``)
is trained on the New York week (``NYHarbor_2020_12_first_week.traj``) without 20% of its vessels, plus every
region of the coastal day (``US_coastal_2020_06_30.traj``) but the held-out one (``--region``, default the
Atlantic; regions by the latitude/longitude rule of `_vessel_settings`), less 10% of those vessels kept for
validation. It is tested, a window of 30 + 30 one-minute rows every ``--stride`` rows, on:

- held-out vessels: the 20% of the New York week's vessels it never saw;
- held-out day: ``NYHarbor_2020_12_08.traj`` (a later day, 38 trajectories);
- held-out region: the held-out coast from 12:00 UTC on (without tracks within 100 km of New York Harbor when
  that is the Atlantic); its 1 and 3 hours before 12:00 are the local data a new port would have.

Rows per setting, ADE/FDE in metres at 10, 20 and 30 minutes with standard errors over windows: the best of
``--samples`` samples; their mean, geometric median and medoid; the point forecast (the geometric median of
the samples after the calibration `trajdiff calibrate` fits on the validation vessels: how far to trust the
model's centre against constant velocity, and the spread; what `trajdiff evaluate --samples N` scores as
ade_m/fde_m, with N from ``--point-samples`` best on validation; all fixed before any test window is read) and
the calibrated samples' mean; in the held-out region also the point forecast calibrated on its local hours
instead; and the baselines constant velocity, constant turn rate and the nearest neighbour in the training
tracks.

    .venv/bin/python benchmarks/vessel.py                  # full run (30,000 steps: about 12 CPU-minutes)
    .venv/bin/python benchmarks/vessel.py --quick          # smoke run: a few hundred steps, few windows
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, results_path, write_results  # noqa: E402
from _vessel_model import cpu_seconds, train_or_reuse  # noqa: E402
from _vessel_points import NearestNeighbour, best_of, distances, medoid, scores  # noqa: E402
from _vessel_settings import make_splits  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.api.backtesting import fit_backtest  # noqa: E402
from trajdiff.api.sampling import encoder_bases  # noqa: E402
from trajdiff.core.data import Episodes  # noqa: E402
from trajdiff.plugins.vessel import VesselDomain, constant_turn_rate, constant_velocity  # noqa: E402
from trajdiff.plugins.vessel.metrics import geometric_median  # noqa: E402

AIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ais"
FILES = ("NYHarbor_2020_12_first_week.traj", "NYHarbor_2020_12_08.traj", "US_coastal_2020_06_30.traj")
POINT = "point forecast (calibrated geometric median)"


def _subsample(episodes: Episodes, count: int, seed: int) -> Episodes:
    if len(episodes) <= count:
        return episodes
    return episodes.select(sorted(np.random.default_rng(seed).choice(len(episodes), count, replace=False).tolist()))


def _run(loaded: api.LoadedModel, episodes: Episodes, args: argparse.Namespace,
         max_windows: int | None = None) -> api.Backtest:
    """A backtest drawing as many samples as the largest of --samples and --point-samples."""
    return api.backtest(loaded, episodes, samples=max(args.samples, *args.point_samples), nfe=args.nfe,
                        stride=args.stride, max_windows=max_windows, seed=args.seed, progress=False)


def _first(run: api.Backtest, count: int) -> api.Backtest:
    """The backtest with its first ``count`` samples."""
    return replace(run, futures=run.futures[:count])


def _calibrated(loaded: api.LoadedModel, run: api.Backtest, calibration) -> np.ndarray:  # noqa: ANN001
    """The point forecast ``[N, H, 2]``: the geometric median of the calibrated samples."""
    return geometric_median(calibration.apply(run.futures, encoder_bases(loaded.encoder, run.frames))[..., :2])


def _centres(loaded: api.LoadedModel, run: api.Backtest, samples: int, calibration,  # noqa: ANN001
             point_samples: int) -> dict[str, np.ndarray]:
    """Every point forecast of a backtest ``[N, H, 2]``, by row name: the raw centres of its first ``samples``
    samples, and the point forecast from its first ``point_samples``."""
    raw = run.futures[:samples, ..., :2]
    calibrated = calibration.apply(raw, encoder_bases(loaded.encoder, run.frames)[..., :2])
    return {"sample mean": raw.mean(0), "sample median (geometric)": geometric_median(raw),
            "sample medoid": medoid(raw), "calibrated mean": calibrated.mean(0),
            POINT: _calibrated(loaded, _first(run, point_samples), calibration)}


def _rows(setting: str, run: api.Backtest, samples: int, points: dict[str, np.ndarray], nn: NearestNeighbour,
          horizon: int) -> list[dict]:
    truth = run.truth[..., :2]
    cv = distances(constant_velocity(run.histories, horizon), truth)
    ade, fde = best_of(run.futures[:samples, ..., :2], truth)
    rows = [{"setting": setting, "method": f"best of {samples}", **scores(fde, cv, ade)}]
    for name, point in points.items():
        rows.append({"setting": setting, "method": name, **scores(distances(point, truth), cv)})
    baselines = {"constant velocity": constant_velocity(run.histories, horizon),
                 "constant turn rate": constant_turn_rate(run.histories, horizon),
                 "nearest neighbour (training tracks)": nn.forecast(run.histories)}
    for name, forecast in baselines.items():
        rows.append({"setting": setting, "method": name, **scores(distances(forecast, truth), cv)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few steps, tracks and windows (smoke run)")
    parser.add_argument("--recipe", default="window-mlp", help="the vessel domain's recipe ('none': its default)")
    parser.add_argument("--minutes", type=float, default=45.0, help="training time budget (wall clock)")
    parser.add_argument("--steps", type=int, default=30_000, help="training steps (the schedule's length)")
    parser.add_argument("--samples", type=int, default=20, help="samples of the best-of and the raw centres")
    parser.add_argument("--point-samples", type=int, nargs="+", default=[20, 40], help="sample counts the point "
                        "forecast may use (`trajdiff evaluate --samples N`): the one best on validation is used")
    parser.add_argument("--nfe", type=int, default=None, help="function evaluations (default: the domain's)")
    parser.add_argument("--stride", type=int, default=30, help="rows between test windows")
    parser.add_argument("--region", default="atlantic", help="the held-out region of the coastal day")
    parser.add_argument("--validation-windows", type=int, default=1500, help="validation windows, evenly spread")
    parser.add_argument("--models", type=Path, default=None, help="keep the trained model here (reused if its "
                        "settings match); default: a temporary folder")
    parser.add_argument("--data", type=Path, default=AIS, help="folder holding the three AIS files")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="vessel", help="results name: benchmarks/results/NAME.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    missing = [name for name in FILES if not (args.data / name).is_file()]
    if missing:
        sys.exit(f"{missing} not found in {args.data}: see datasets/ais.md for how to obtain them")
    recipe = None if args.recipe == "none" else args.recipe
    domain = VesselDomain()
    week, day, coastal = (domain.load(args.data / name) for name in FILES)
    splits = make_splits(week, day, coastal, held_out_region=args.region, seed=args.seed)
    train, validation = splits.train, splits.validation
    if args.quick:
        args.steps, args.minutes, args.validation_windows = min(args.steps, 200), min(args.minutes, 1.0), 100
        train, validation = _subsample(train, 150, args.seed), _subsample(validation, 30, args.seed)
        splits.tests = {name: _subsample(e, 25, args.seed) for name, e in splits.tests.items()}
    temporary = tempfile.TemporaryDirectory()
    models = args.models or Path(temporary.name)
    model_dir = models / f"vessel-{args.region}-{args.recipe}{'-quick' if args.quick else ''}"
    training = train_or_reuse(train, model_dir, recipe=recipe, steps=args.steps, minutes=args.minutes, seed=args.seed)
    print(f"model: {training['steps_done']} steps, {training['cpu_minutes']:.1f} CPU-minutes"
          f"{' (reused)' if training['reused'] else ''} -> {model_dir}")
    loaded = api.load_model(model_dir)
    d = loaded.defaults
    args.nfe = args.nfe or d.nfe
    cpu = cpu_seconds()

    # every choice on validation vessels (training regions, not trained on) before a test window is read
    checked = _run(loaded, validation, args, args.validation_windows)
    choices = {}
    for count in args.point_samples:
        fitted = fit_backtest(loaded, _first(checked, count), data=f"validation: {len(checked.truth)} windows")
        point = _calibrated(loaded, _first(checked, count), fitted)
        choices[count] = (float(distances(point, checked.truth[..., :2])[:, -1].mean()), fitted)
    point_samples = min(choices, key=lambda count: choices[count][0])
    calibration = choices[point_samples][1]
    validation_points = _centres(loaded, checked, args.samples, calibration, point_samples)
    validation_fde = {name: float(distances(p, checked.truth[..., :2])[:, -1].mean())
                      for name, p in validation_points.items()}
    by_count = {str(count): fde for count, (fde, _) in choices.items()}
    print(f"validation ({len(checked.truth)} windows): point forecast FDE 30 by sample count {by_count} -> "
          f"{point_samples}; calibration {asdict(calibration)}; FDE 30 {validation_fde}")
    nn = NearestNeighbour(loaded, train, stride=d.stride, seed=args.seed)

    rows, local_calibrations, sampling = [], {}, {}
    for setting, episodes in splits.tests.items():
        started = time.perf_counter()
        run = _run(loaded, episodes, args, 200 if args.quick else None)
        sampling[setting] = {"windows": len(run.truth), "seconds": time.perf_counter() - started}
        points = _centres(loaded, run, args.samples, calibration, point_samples)
        if setting.startswith("held-out region"):
            for hours, local in splits.local.items():
                local_run = _first(_run(loaded, local, args), point_samples)
                fitted = fit_backtest(loaded, local_run, data=f"{args.region} {hours} before 12:00")
                local_calibrations[hours] = asdict(fitted)
                points[f"point forecast, calibrated on {hours} local"] = _calibrated(loaded, _first(run, point_samples),
                                                                                   fitted)
        rows += _rows(setting, run, args.samples, points, nn, d.horizon)
        print(f"{setting}: {len(run.truth)} windows")
    for row in rows:
        row["samples"], row["nfe"] = point_samples if row["method"].startswith("point") else args.samples, args.nfe

    columns = ["setting", "method", "windows", "ade_10", "fde_10", "ade_20", "fde_20", "ade_30", "fde_30",
               "fde_30_se", "fde_30_vs_cv", "fde_30_vs_cv_se"]
    print(markdown_table(rows, columns, ["setting", "method", "windows", "ADE 10", "FDE 10", "ADE 20", "FDE 20",
                                         "ADE 30", "FDE 30", "FDE 30 s.e.", "FDE 30 vs CV", "s.e."]))
    print(f"errors in metres; evaluation {(cpu_seconds() - cpu) / 60:.1f} CPU-minutes ({machine()})")
    command = " ".join(["python benchmarks/vessel.py", *sys.argv[1:]])
    path = write_results(
        args.name, command, rows, results_path(args.name, args.quick),
        point_forecast={"method": POINT, "why": "the geometric median of the calibrated samples is what `trajdiff "
                        "evaluate` scores as the vessel point forecast (ade_m, fde_m) once `trajdiff calibrate` has "
                        "run; validation_fde_30 compares it with the other centres on the validation windows",
                        "calibration": asdict(calibration), "chosen_on": "validation vessels",
                        "samples": point_samples, "validation_fde_30_by_samples": by_count,
                        "validation_windows": len(checked.truth), "validation_fde_30": validation_fde},
        local_calibrations=local_calibrations,
        training={**training, "recipe": args.recipe, "network": d.network, "batch_size": d.batch_size},
        sampling={"nfe": args.nfe, "solver": d.solver, "samples": args.samples, "stride": args.stride,
                  "per_setting": sampling},
        nearest_neighbour={"training_windows": nn.windows, "frame": "the model's encoded frame (history tokens)"},
        split={**splits.record, "files": list(FILES)},
    )
    print(f"-> {path}")
    temporary.cleanup()


if __name__ == "__main__":
    main()
