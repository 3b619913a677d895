"""Forecasting past the trained horizon: a model's window rolled forward beside a model trained for the
long horizon and a simple baseline, on the same test windows, in one run.

- AIS (New York Harbor, first week of December 2020; 20% of the vessels held out, as in
  `benchmarks/vessel.py`): a vessel model trained for 30 minutes (30 rows of history) asked for 60
  and 120 minutes, beside models trained for 60 and 120 minutes and constant velocity. Metrics at the
  last step, in metres: FDE of the point forecast (the samples' mean position) and minFDE of 20.
- ETTh1 (12/4/4 months, every variable standardized with the training months' statistics): a model
  trained for 96 hours (96 rows of history) asked for 192, 384 and 720, beside models trained for those
  horizons and the long model's own linear base (its encoder's ridge forecast, fitted for that
  horizon). Metrics: MSE of the point forecast (the samples' median) and CRPS, standardized.

Rolled forecasts go through `api.backtest(..., horizon=H)`: each sample keeps its window's future, the
last history rows (observed or sampled) become the next window's clean history. Every model trains
through the same code path for the same number of steps (``--steps-*``); CPU minutes are recorded.
Target: at 4x the trained horizon (AIS 120 minutes, ETTh1 384 hours) the rolled forecast's error at
most 1.1x that of the model trained for it, on both metrics.

    .venv/bin/python benchmarks/long_horizon.py --threads 1                   # writes results/long_horizon.json
    .venv/bin/python benchmarks/long_horizon.py --quick                       # a smoke run

The two parts can run side by side on two cores (``--part ais`` and ``--part etth1`` write
results/long_horizon-ais.json and -etth1.json); ``--combine`` then writes results/long_horizon.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402
from vessel import split_by_vessel  # noqa: E402

from trajdiff import __version__, api  # noqa: E402
from trajdiff.api.sampling import encoder_bases  # noqa: E402
from trajdiff.core import metrics  # noqa: E402
from trajdiff.core.model import DiffusionModel  # noqa: E402
from trajdiff.core.training import TrainConfig, TrainData, Trainer  # noqa: E402
from trajdiff.plugins.manager import get_plugins  # noqa: E402
from trajdiff.plugins.vessel.baselines import constant_velocity  # noqa: E402
from trajdiff.plugins.vessel.geo import haversine_m  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AIS = SHARED / "ais" / "NYHarbor_2020_12_first_week.traj"
ETTH1 = SHARED / "ett" / "ETTh1.csv"
TRAIN_END, VAL_END, TEST_END = 12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24
ETT_NETWORK = {"kind": "transformer", "width": 128, "depth": 3, "heads": 4, "dropout": 0.1}


def train_model(domain_name: str, episodes: Any, *, history: int, horizon: int, steps: int, seed: int,
                network: dict[str, Any] | None = None) -> tuple[api.LoadedModel, dict[str, Any]]:
    """A model for ``domain_name`` trained on ``episodes`` for ``steps`` steps through the Trainer that
    `api.train` uses; returns it loaded, with steps and CPU minutes."""
    domain = get_plugins().domain(domain_name)
    defaults = replace(domain.defaults(), history=history, horizon=horizon, steps=steps)
    if network is not None:
        defaults = replace(defaults, network=network)
    encoder = api.make_encoder(domain, defaults).fit(episodes)
    x, _, _ = api.encode_windows(episodes, encoder, defaults.history, defaults.length, defaults.stride)
    x = domain.augment_windows(x, encoder)
    model = DiffusionModel({**defaults.network, "dim": encoder.dim}, schedule=defaults.schedule,
                           parametrization=defaults.parametrization,
                           extra={"domain": domain.name, "encoder": encoder.state_dict(), "defaults": asdict(defaults),
                                  "trajdiff_version": __version__})
    config = TrainConfig(steps=steps, batch_size=defaults.batch_size, lr=defaults.lr,
                         history=api.context_tokens(encoder, defaults), history_prob=defaults.history_prob,
                         noise=defaults.noise, seed=seed, progress=False)
    torch.manual_seed(seed)
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as out_dir:
        result = Trainer(model, TrainData(torch.from_numpy(x)), config, out_dir=out_dir, resume=False).fit()
    info = {"steps": result.step, "train_cpu_minutes": (time.process_time() - cpu) / 60,
            "train_windows": int(len(x))}
    print(f"  {domain_name} history {history} horizon {horizon}: {result.step} steps, "
          f"{info['train_cpu_minutes']:.1f} CPU-min", flush=True)
    return api.LoadedModel(model, domain, encoder, defaults), info


def ais_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    domain = get_plugins().domain("vessel")
    train_eps, test_eps, _ = split_by_vessel(domain.load(AIS), 0.2, args.seed)
    history, trained, longer = 30, 30, [60, 120]
    models = {h: train_model("vessel", train_eps, history=history, horizon=h, steps=args.steps_ais, seed=args.seed,
                             network=args.ais_network)
              for h in [trained, *longer]}
    rows = []
    for horizon in longer:
        # the same windows for every method: history + horizon rows, step --stride, evenly thinned
        runs = {}
        for label, (loaded, info) in (("rolled", models[trained]), ("trained", models[horizon])):
            started = time.perf_counter()
            run = api.backtest(loaded, test_eps, samples=args.samples, nfe=args.nfe, stride=args.ais_stride,
                               max_windows=args.max_windows, seed=args.seed, horizon=horizon, plan=args.plan)
            runs[label] = (run, info, time.perf_counter() - started)
        truth = runs["trained"][0].truth[:, -1, :2]
        for label, (run, info, seconds) in runs.items():
            futures = run.futures[..., :2]  # lat, lon
            mean_end = futures[:, :, -1].mean(axis=0)
            fde = haversine_m(mean_end[:, 0], mean_end[:, 1], truth[:, 0], truth[:, 1])
            ends = futures[:, :, -1]
            min_fde = haversine_m(ends[..., 0], ends[..., 1], truth[None, :, 0], truth[None, :, 1]).min(axis=0)
            trained_horizon = trained if label == "rolled" else horizon
            common = {"method": "trajdiff", "domain": "ais", "trained_horizon": trained_horizon, "horizon": horizon,
                      "plan": args.plan if label == "rolled" else "full", "windows": len(truth),
                      "samples": args.samples, "nfe": args.nfe, "sample_seconds": seconds, **info}
            rows.append({**common, "metric": "fde_point_m", "value": float(np.mean(fde))})
            rows.append({**common, "metric": "min_fde_20_m", "value": float(np.mean(min_fde))})
        histories = runs["trained"][0].histories
        cv = constant_velocity(histories, horizon)[:, -1]
        rows.append({"method": "constant velocity", "domain": "ais", "trained_horizon": None, "horizon": horizon,
                     "plan": None, "windows": len(truth), "metric": "fde_point_m",
                     "value": float(np.mean(haversine_m(cv[:, 0], cv[:, 1], truth[:, 0], truth[:, 1])))})
    return rows


def etth1_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    frame = pd.read_csv(ETTH1)
    domain = get_plugins().domain("timeseries")
    train_eps = domain.load(frame.iloc[:TRAIN_END])
    test_eps = domain.load(frame.iloc[VAL_END - 96 - max(args.etth1_horizons):TEST_END])
    values = frame.drop(columns=["date"]).to_numpy(dtype=np.float64)[:TRAIN_END]
    mean, std = values.mean(0), values.std(0)
    history, trained = 96, 96
    models = {h: train_model("timeseries", train_eps, history=history, horizon=h, steps=args.steps_etth1,
                             seed=args.seed, network=ETT_NETWORK)
              for h in [trained, *args.etth1_horizons]}
    rows = []
    for horizon in args.etth1_horizons:
        runs = {}
        for label, (loaded, info) in (("rolled", models[trained]), ("trained", models[horizon])):
            started = time.perf_counter()
            run = api.backtest(loaded, test_eps, samples=args.samples, nfe=args.nfe, stride=args.etth1_stride,
                               max_windows=args.max_windows, seed=args.seed, horizon=horizon, plan=args.plan,
                               antithetic=args.samples % 2 == 0)
            runs[label] = (run, info, time.perf_counter() - started, loaded)
        truth = (runs["trained"][0].truth - mean) / std
        for label, (run, info, seconds, _) in runs.items():
            futures = (run.futures - mean) / std
            median = np.median(futures, axis=0)
            crps = float(metrics.crps_samples(torch.from_numpy(futures).float(),
                                              torch.from_numpy(truth).float()).mean())
            common = {"method": "trajdiff", "domain": "etth1",
                      "trained_horizon": trained if label == "rolled" else horizon, "horizon": horizon,
                      "plan": args.plan if label == "rolled" else "full", "windows": len(truth),
                      "samples": args.samples, "nfe": args.nfe, "sample_seconds": seconds, **info}
            rows.append({**common, "metric": "mse", "value": float(np.mean((median - truth) ** 2))})
            rows.append({**common, "metric": "crps", "value": crps})
        run, _, _, loaded = runs["trained"]
        base = (encoder_bases(loaded.encoder, run.frames) - mean) / std
        rows.append({"method": "linear base", "domain": "etth1", "trained_horizon": horizon, "horizon": horizon,
                     "plan": None, "windows": len(truth), "metric": "mse",
                     "value": float(np.mean((base - truth) ** 2))})
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rolled error / trained-for-it error per domain, horizon and metric."""
    out = []
    for row in rows:
        if row["method"] != "trajdiff" or row["trained_horizon"] == row["horizon"]:
            continue
        peer = next(r for r in rows if r["method"] == "trajdiff" and r["domain"] == row["domain"]
                    and r["horizon"] == row["horizon"] and r["trained_horizon"] == row["horizon"]
                    and r["metric"] == row["metric"])
        out.append({"domain": row["domain"], "horizon": row["horizon"], "trained_horizon": row["trained_horizon"],
                    "metric": row["metric"], "rolled": row["value"], "trained_for_it": peer["value"],
                    "ratio": row["value"] / peer["value"]})
    return out


def combine() -> None:
    """results/long_horizon.json from the part files written by ``--part ais`` and ``--part etth1`` (run
    side by side as two processes); every row keeps the command that produced it."""
    rows, ratio_rows, commands, machines = [], [], [], {}
    for part in ("ais", "etth1"):
        payload = json.loads(results_path(f"long_horizon-{part}", False).read_text())
        rows += [{**row, "command": payload["command"]} for row in payload["rows"]]
        ratio_rows += payload["ratios"]
        commands.append(payload["command"])
        machines[part] = payload["machine"]
    path = write_results("long_horizon", " && ".join(commands) + " && python benchmarks/long_horizon.py --combine",
                         rows, results_path("long_horizon", False), ratios=ratio_rows, part_machines=machines)
    print(markdown_table(ratio_rows, ["domain", "horizon", "trained_horizon", "metric", "rolled", "trained_for_it",
                                      "ratio"], ["domain", "horizon", "rolled from", "metric", "rolled",
                                                 "trained for it", "ratio"]))
    print(f"-> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", default=["ais", "etth1"], choices=["ais", "etth1"])
    parser.add_argument("--steps-ais", type=int, default=3000, help="training steps of every AIS model")
    parser.add_argument("--steps-etth1", type=int, default=1500, help="training steps of every ETTh1 model")
    parser.add_argument("--etth1-horizons", type=int, nargs="+", default=[192, 384, 720])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--nfe", type=int, default=10, help="network evaluations per window")
    parser.add_argument("--plan", default="full", help="plan of each rolled window (full, autoregressive, pyramid)")
    parser.add_argument("--max-windows", type=int, default=300, help="test windows, evenly spread")
    parser.add_argument("--ais-stride", type=int, default=10, help="rows between AIS test windows")
    parser.add_argument("--etth1-stride", type=int, default=1, help="rows between ETTh1 test windows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny models, few windows (smoke run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default results/long_horizon.json, or long_horizon-PART.json for one part)")
    parser.add_argument("--combine", action="store_true",
                        help="write results/long_horizon.json from the part files (each keeps its command)")
    args = parser.parse_args()
    if args.combine:
        combine()
        return
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    args.ais_network = None
    if args.quick:
        args.steps_ais, args.steps_etth1, args.max_windows, args.samples = 30, 30, 8, 4
        args.etth1_horizons = [192, 384]
        args.ais_network = {"kind": "transformer", "dim": None, "width": 32, "depth": 1, "heads": 2}
    missing = [str(p) for part, p in (("ais", AIS), ("etth1", ETTH1)) if part in args.part and not p.is_file()]
    if missing:
        sys.exit(f"not found: {missing}; see datasets/ for how to obtain them")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    if "ais" in args.part:
        rows += ais_rows(args)
    if "etth1" in args.part:
        rows += etth1_rows(args)
    table = ratios(rows)
    print(markdown_table(rows, ["domain", "method", "trained_horizon", "horizon", "metric", "value", "windows"],
                         ["domain", "method", "trained for", "asked for", "metric", "value", "windows"]))
    print(markdown_table(table, ["domain", "horizon", "trained_horizon", "metric", "rolled", "trained_for_it", "ratio"],
                         ["domain", "horizon", "rolled from", "metric", "rolled", "trained for it", "ratio"]))
    command = " ".join(["python benchmarks/long_horizon.py", *sys.argv[1:]])
    name = "long_horizon" if len(args.part) == 2 else f"long_horizon-{args.part[0]}"
    path = write_results("long_horizon", command, rows, args.out or results_path(name, args.quick),
                         ratios=table, seconds=time.monotonic() - started)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
