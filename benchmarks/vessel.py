"""AIS vessel forecasting: 30 minutes ahead from 30 minutes of history, New York Harbor, December 2020.

Trains the vessel domain's default model (or a smaller one with --quick) on the tracks of 80% of the
vessels (split by MMSI) of ``NYHarbor_2020_12_first_week.traj`` (tracktable-data 1.7.3.1, see
datasets/ais.md), then forecasts every window of 30 + 30 one-minute rows (step --stride) of the
held-out vessels' tracks. Reports, at 10, 20 and 30 minutes, ADE and FDE in metres of:

- trajdiff: minADE/minFDE over --samples samples, and the error of the samples' mean;
- constant velocity (CV) and constant turn rate (CTR), computed on the same windows in the same run.

Also: windows where the vessel moves (at least 2 knots over the last observed minute), training time,
steps, NFE, and sampling throughput in forecast trajectories per second.

    .venv/bin/python benchmarks/vessel.py            # full run (train --minutes, default 12)
    .venv/bin/python benchmarks/vessel.py --quick    # smoke run: tiny model, a minute or two
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

from trajdiff import __version__, api  # noqa: E402
from trajdiff.core.model import DiffusionModel  # noqa: E402
from trajdiff.core.training import TrainConfig, TrainData, Trainer  # noqa: E402
from trajdiff.plugins.vessel import VesselDomain, constant_turn_rate, constant_velocity  # noqa: E402
from trajdiff.plugins.vessel.geo import KNOT_M_S, haversine_m  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ais" / "NYHarbor_2020_12_first_week.traj"
MARKS = (10, 20, 30)


def split_by_vessel(episodes, fraction: float, seed: int):  # noqa: ANN001, ANN201
    """(train, test) episodes with every track of a vessel (MMSI) on the same side."""
    vessels = sorted({m["mmsi"] for m in episodes.meta})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(vessels, size=max(1, round(len(vessels) * fraction)), replace=False).tolist())
    test = [i for i, m in enumerate(episodes.meta) if m["mmsi"] in held]
    train = [i for i, m in enumerate(episodes.meta) if m["mmsi"] not in held]
    return episodes.select(train), episodes.select(test), sorted(held)


def errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """ADE/FDE at each mark for point forecasts ``[N, H, 2]`` against ``[N, H, 2]`` (metres)."""
    d = haversine_m(pred[..., 0], pred[..., 1], truth[..., 0], truth[..., 1])
    return {**{f"ade_{m}": float(d[:, :m].mean()) for m in MARKS}, **{f"fde_{m}": float(d[:, m - 1].mean())
                                                                       for m in MARKS}}


def min_errors(samples: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """minADE/minFDE at each mark over the sample axis of ``[S, N, H, 2]``."""
    d = haversine_m(samples[..., 0], samples[..., 1], truth[None, ..., 0], truth[None, ..., 1])
    out = {}
    for m in MARKS:
        out[f"ade_{m}"] = float(d[:, :, :m].mean(-1).min(0).mean())
        out[f"fde_{m}"] = float(d[:, :, m - 1].min(0).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps and windows (smoke run)")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time budget")
    parser.add_argument("--steps", type=int, default=6000, help="training steps (upper bound)")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--nfe", type=int, default=None, help="function evaluations (default: the domain's)")
    parser.add_argument("--stride", type=int, default=30, help="rows between test windows")
    parser.add_argument("--width", type=int, default=None, help="transformer width (default: the domain's)")
    parser.add_argument("--depth", type=int, default=None, help="transformer depth (default: the domain's)")
    parser.add_argument("--place", action="store_true", help="encoder option place=True (position features)")
    parser.add_argument("--name", default="vessel", help="results name: benchmarks/results/NAME.json")
    parser.add_argument("--plot", type=Path, default=None, help="also draw 6 held-out forecasts of moving vessels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/vessel.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    if not args.data.is_file():
        sys.exit(f"{args.data} not found: see datasets/ais.md for how to obtain it")

    domain = VesselDomain()
    episodes = domain.load(args.data)
    train_eps, test_eps, held = split_by_vessel(episodes, 0.2, args.seed)
    defaults = domain.defaults()
    network = {**defaults.network, **{k: v for k, v in (("width", args.width), ("depth", args.depth)) if v}}
    defaults = replace(defaults, network=network, encoder={**defaults.encoder, "place": args.place})
    args.nfe = args.nfe or defaults.nfe
    if args.quick:
        defaults = replace(defaults, network={**defaults.network, "width": 32, "depth": 2}, batch_size=32)
        args.minutes, args.steps, args.stride = min(args.minutes, 1.0), min(args.steps, 300), max(args.stride, 30)
    defaults = replace(defaults, steps=args.steps)
    encoder = api.make_encoder(domain, defaults).fit(train_eps)
    x, _, _ = api.encode_windows(train_eps, encoder, defaults.history, defaults.length, defaults.stride)
    network = {**defaults.network, "dim": encoder.dim}
    model = DiffusionModel(network, schedule=defaults.schedule, parametrization=defaults.parametrization,
                           extra={"domain": domain.name, "encoder": encoder.state_dict(), "defaults": asdict(defaults),
                                  "trajdiff_version": __version__})
    context_tokens = defaults.history // encoder.rows_per_token
    config = TrainConfig(steps=defaults.steps, batch_size=defaults.batch_size, lr=defaults.lr, history=context_tokens,
                         history_prob=0.75, max_minutes=args.minutes, seed=args.seed, progress=False)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as out_dir:
        result = Trainer(model, TrainData(torch.from_numpy(x)), config, out_dir=out_dir, resume=False).fit()
    print(f"trained {result.step} steps in {result.seconds:.0f} s on {len(x)} windows of {len(train_eps)} tracks")

    # test windows from held-out vessels
    frames: list[dict] = []
    contexts, index, _ = api.encode_windows(test_eps, encoder, defaults.history, defaults.length, args.stride,
                                            frames=frames)
    h, length = defaults.history, defaults.length
    truth = np.stack([test_eps.sequences[i][s + h:s + length, :2] for i, s in index])
    histories = [test_eps.sequences[i][s:s + h] for i, s in index]
    moving = np.array([haversine_m(*hist[-2, :2], *hist[-1, :2]) / encoder.interval_s >= 2 * KNOT_M_S
                       for hist in histories])
    masked = contexts.copy()
    masked[:, context_tokens:] = 0.0
    loaded = api.LoadedModel(model, domain, encoder, defaults)
    started = time.perf_counter()
    drawn = api.sample_futures(loaded, masked, samples=args.samples, nfe=args.nfe, seed=args.seed)
    sampling = time.perf_counter() - started
    decoded = np.stack([encoder.decode(drawn[:, j], frames[j])[:, h:, :2] for j in range(len(index))], axis=1)
    cv = np.stack([constant_velocity(hist, defaults.horizon) for hist in histories])
    ctr = np.stack([constant_turn_rate(hist, defaults.horizon) for hist in histories])

    rows = []
    for subset, mask in (("all", np.ones(len(index), dtype=bool)), ("moving", moving)):
        common = {"subset": subset, "windows": int(mask.sum()), "horizon_min": defaults.horizon,
                  "history_min": defaults.history}
        rows.append({"method": "trajdiff minADE/minFDE", **common, "samples": args.samples, "nfe": args.nfe,
                     **min_errors(decoded[:, mask], truth[mask])})
        rows.append({"method": "trajdiff sample mean", **common, "samples": args.samples, "nfe": args.nfe,
                     **errors(decoded[:, mask].mean(0), truth[mask])})
        rows.append({"method": "constant velocity", **common, **errors(cv[mask], truth[mask])})
        rows.append({"method": "constant turn rate", **common, **errors(ctr[mask], truth[mask])})
    for row in rows:
        cv_row = next(r for r in rows if r["method"] == "constant velocity" and r["subset"] == row["subset"])
        row["fde_30_vs_cv"] = row["fde_30"] / cv_row["fde_30"] - 1.0
    throughput = args.samples * len(index) / sampling
    if args.plot is not None:
        from trajdiff.plugins.vessel.plot import plot_map

        chosen = np.flatnonzero(moving)[:: max(1, int(moving.sum()) // 6)][:6]
        names = [f"{test_eps.ids[index[j][0]]} +{index[j][1]} min" for j in chosen]
        plot_map(args.plot, {n: histories[j] for n, j in zip(names, chosen, strict=True)},
                 {n: decoded[:, j] for n, j in zip(names, chosen, strict=True)},
                 {n: truth[j] for n, j in zip(names, chosen, strict=True)})
    columns = ["method", "subset", "windows", "ade_10", "fde_10", "ade_20", "fde_20", "ade_30", "fde_30",
               "fde_30_vs_cv"]
    print(markdown_table(rows, columns, ["method", "windows", "n", "ADE 10 min", "FDE 10 min", "ADE 20 min",
                                         "FDE 20 min", "ADE 30 min", "FDE 30 min", "FDE 30 vs CV"]))
    print(f"errors in metres; {len(held)} held-out vessels, {len(test_eps)} tracks; training {result.seconds:.0f} s, "
          f"{result.step} steps; sampling {args.samples} x {len(index)} trajectories at {args.nfe} NFE in "
          f"{sampling:.1f} s = {throughput:.0f} trajectories/s ({machine()})")
    command = " ".join(["python benchmarks/vessel.py", *sys.argv[1:]])
    path = write_results(
        args.name, command, rows, args.out or results_path(args.name, args.quick),
        training={"seconds": result.seconds, "steps": result.step, "windows": int(len(x)),
                  "train_tracks": len(train_eps), "network": network, "batch_size": defaults.batch_size,
                  "encoder": {k: v for k, v in encoder.state_dict().items() if k not in ("mean", "std")}},
        sampling={"seconds": sampling, "trajectories_per_second": throughput, "nfe": args.nfe,
                  "solver": defaults.solver, "samples": args.samples, "windows": len(index)},
        split={"held_out_vessels": held, "test_tracks": len(test_eps), "seed": args.seed, "data": args.data.name},
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
