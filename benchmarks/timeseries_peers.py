"""ETTh1: trajdiff beside the models a user would pick instead (neuralforecast), in one run on the same windows.

Protocol (Informer; as DLinear, PatchTST and `etth1.py`): train / validation / test = first 12 / next 4 /
next 4 months of hourly rows; the 7 variables standardized with the training months' statistics; every
test window (stride 1, 2,880 - H + 1 of them); MSE, MAE, CRPS and 90% interval coverage over every
window, lead time and variable (channel-independent scoring: each variable counts alike).

Peers (neuralforecast, each with its documented ETTh1 configuration, cited in `_peers_neuralforecast.py`):
PatchTST (input 336, as its paper's ETTh1 script), DLinear (input 336, as its paper's script), NHITS
(input 7 x H, as neuralforecast's long-horizon experiment) and, probabilistic, the same NHITS trained by
the Normal likelihood. Each trains on the training months with early stopping on the validation months
(neuralforecast's ``val_size``, ``early_stop_patience_steps``; the best validation check is kept) and
at most --cap-minutes CPU minutes (``max_steps`` sized from measured step costs on a 2-core VM, and a
callback that stops at the cap). The peers never become trajdiff dependencies: they run in their own
environment, a subprocess of --peer-python, and exchange arrays through .npz files:

    python3 -m venv /tmp/nfenv && /tmp/nfenv/bin/pip install torch==2.13.0   # the CPU build first
    /tmp/nfenv/bin/pip install neuralforecast                                # 3.3.0 here

trajdiff: the configuration of `etth1.py`'s table (transformer width 128, depth 3; rounds of
--round-steps up to --steps, the round with the lowest validation MSE kept, stopping early at the CPU
cap; the median of --samples antithetic samples at 10 NFE; the weight on the diffusion median against
the encoder's ridge base calibrated on 300 validation windows, centre only). Reference: Gaussian errors
around the point forecast with the lowest validation MSE (sigma per lead time and variable, the RMS of
its validation residuals). Point forecasts' CRPS is their MAE; the Normal peer's and the Gaussian
reference's CRPS and coverage are exact (closed form); trajdiff's come from its samples (fair estimator).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/timeseries_peers.py --peer-python /tmp/nfenv/bin/python
    .venv/bin/python benchmarks/timeseries_peers.py --quick                  # a smoke run (temporary file)

Results merge into benchmarks/results/timeseries_peers.json by (method, horizon), so horizons can run apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timeseries_ci  # noqa: E402
from _common import markdown_table, results_path, write_results  # noqa: E402
from _timeseries_ci import sample_sums  # noqa: E402
from etth1 import (  # noqa: E402
    CONTEXT,
    DATA,
    NETWORK,
    TEST_END,
    TRAIN_END,
    VAL_END,
    _base,
    _encode,
    _forecast,
    point_scores,
    split,
    windows,
)

from trajdiff import api  # noqa: E402
from trajdiff.core.calibration import fit_calibration  # noqa: E402

RUNNER = Path(__file__).resolve().parent / "_peers_neuralforecast.py"
PEERS = ("PatchTST", "DLinear", "NHITS", "NHITS-Normal")
# Training steps at most, per peer and horizon: the documented schedules where they fit in the CPU cap
# (DLinear: 5 of its 10 epochs, its rate is then 1/32 of the start; NHITS: 1000 steps), else what the
# measured CPU seconds per step allow (PatchTST; its one-cycle schedule spans these steps).
MAX_STEPS = {"PatchTST": {96: 1100, 192: 1000, 336: 900, 720: 700},
             "DLinear": {h: 5 * ((TRAIN_END - 336 - h + 1) // 8) for h in (96, 192, 336, 720)},
             "NHITS": dict.fromkeys((96, 192, 336, 720), 1000),
             "NHITS-Normal": dict.fromkeys((96, 192, 336, 720), 1000)}
PUBLISHED = {  # (MSE, MAE) on the same protocol
    "PatchTST": ({96: (0.370, 0.400), 192: (0.413, 0.429), 336: (0.422, 0.440), 720: (0.447, 0.468)},
                 "Nie et al. (2023), Table 3, ETTh1"),
    "DLinear": ({96: (0.375, 0.399), 192: (0.405, 0.416), 336: (0.439, 0.443), 720: (0.472, 0.490)},
                "Zeng et al. (2023), Table 2, ETTh1"),
    "NHITS": ({96: (0.378, 0.393), 192: (0.427, 0.436), 336: (0.458, 0.484), 720: (0.561, 0.501)},
              "neuralforecast experiments/long_horizon/README.md (AutoNHITS), ETTh1"),
}
Z90 = 1.6448536269514722


def child_cpu_seconds(process: subprocess.Popen) -> float:
    """Waits for ``process``; its CPU seconds (user + system, its own children included)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def normal_scores(loc: np.ndarray, scale: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Closed-form CRPS of N(loc, scale^2) (Gneiting & Raftery, 2007, eq. 21) and its 90% interval's coverage."""
    z = (truth - loc) / scale
    cdf = 0.5 * torch.special.erfc(torch.from_numpy(-z / math.sqrt(2.0))).numpy()
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    crps = scale * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    return {**point_scores(loc, truth), "crps": float(crps.mean()), "coverage90": float((np.abs(z) <= Z90).mean())}


def run_peer(name: str, horizon: int, data: Path, args: argparse.Namespace, workdir: Path) -> dict:
    """Runs one peer in the peer environment; its forecasts split into validation and test windows."""
    out = workdir / f"{name}-h{horizon}.npz"
    steps = 60 if args.quick else MAX_STEPS[name][horizon]
    command = [args.peer_python, str(RUNNER), "--data", str(data), "--out", str(out), "--model", name,
               "--horizon", str(horizon), "--max-steps", str(steps), "--cap-minutes", str(args.cap_minutes),
               "--seed", str(args.seed)]
    log = workdir / f"{name}-h{horizon}.log"
    started = time.monotonic()
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        process_cpu = child_cpu_seconds(process)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"peer {name} (h={horizon}) failed with exit code {process.returncode}:\n{tail}")
    peer = load_peer(out, horizon)
    peer["meta"].update(process_cpu_s=process_cpu, wall_s=time.monotonic() - started)
    return peer


def load_peer(out: Path, horizon: int) -> dict:
    """A peer's stored forecasts (``.npz`` of `_peers_neuralforecast.py`) split into validation and test windows."""
    if not out.exists():
        raise SystemExit(f"{out} not found: --reuse-peers reads the peers' forecasts of an earlier run in --workdir")
    with np.load(out) as result:
        arrays = {key: result[key] for key in result.files}
    meta = json.loads(str(arrays.pop("meta")))
    first = arrays.pop("first_target")
    val = (first >= TRAIN_END) & (first + horizon <= VAL_END)
    test = first >= VAL_END
    return {"meta": meta, "val": {k: v[val] for k, v in arrays.items()},
            "test": {k: v[test] for k, v in arrays.items()}, "first_test": first[test]}


def run_peers(names: list[str], horizon: int, data: Path, args: argparse.Namespace, workdir: Path,
              results: dict) -> list[threading.Thread]:
    """Starts each peer in its own thread (their subprocesses train at once); a failure is stored, not raised."""

    def one(name: str) -> None:
        try:
            results[name] = run_peer(name, horizon, data, args, workdir)
        except RuntimeError as error:
            results[name] = error
            return
        meta = results[name]["meta"]
        print(f"  {name} h={horizon}: {meta['steps']} steps ({meta['stopped_by']}), "
              f"{meta['train_cpu_s'] / 60:.1f} CPU-min of training", flush=True)

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    return threads


def check_windows(peer: dict, y_test: np.ndarray, name: str) -> None:
    """The peer's test windows must be etth1.py's: same count, same first rows, same values."""
    first = peer["first_test"]
    if len(first) != len(y_test) or not np.array_equal(first, VAL_END + np.arange(len(y_test))):
        raise SystemExit(f"{name}: {len(first)} test windows starting at row {first[:1]}, expected {len(y_test)} "
                         f"starting at row {VAL_END} (etth1.py's windows)")
    if not np.allclose(peer["test"]["truth"], y_test, atol=1e-5):
        raise SystemExit(f"{name}: test targets differ from etth1.py's windows")


def peer_row(name: str, horizon: int, peer: dict) -> dict:
    test, meta = peer["test"], peer["meta"]
    if "scale" in test:
        scores = normal_scores(test["loc"], test["scale"], test["truth"])
    else:
        scores = {**point_scores(test["point"], test["truth"]), "coverage90": None}
        scores["crps"] = scores["mae"]  # a point forecast's CRPS is its absolute error
    row = {"method": f"{name} (neuralforecast)", "dataset": "ETTh1", "horizon": horizon, **scores,
           "train_cpu_minutes": meta["train_cpu_s"] / 60, "windows": len(test["truth"]),
           "input_size": meta["input_size"], "steps": meta["steps"], "best_step": meta["best_step"],
           "max_steps": meta["max_steps"], "stopped_by": meta["stopped_by"],
           "process_cpu_minutes": meta["process_cpu_s"] / 60, "wall_minutes": meta["wall_s"] / 60,
           "validation_mse": float(np.mean((peer["val"]["point"] - peer["val"]["truth"]) ** 2)),
           "validation_checks": meta["validation_checks"], "config": meta["neuralforecast_config"]}
    base = name.split("-")[0]
    if base in PUBLISHED and name == base:
        figures, source = PUBLISHED[base]
        row.update(published_mse=figures[horizon][0], published_mae=figures[horizon][1], published_source=source,
                   mse_vs_published=scores["mse"] / figures[horizon][0])
    return row


def train_trajdiff(train_frame: pd.DataFrame, x_val: np.ndarray, y_val: np.ndarray, horizon: int,
                   args: argparse.Namespace, workdir: Path) -> tuple[Path, dict]:
    """etth1.py's rounds (`_timeseries_ci.train_in_rounds`: validation MSE of the median of 8 samples after each;
    best round kept), stopped before a round would pass the CPU cap."""
    model_dir, best_dir = workdir / f"trajdiff-h{horizon}", workdir / f"trajdiff-h{horizon}-best"

    def train_to(end: int) -> None:
        api.train("timeseries", train_frame, model_dir, steps=end, history=CONTEXT, horizon=horizon,
                  batch_size=args.batch_size, seed=args.seed, progress=False, resume=end > args.round_steps,
                  network=NETWORK)

    def validation_samples() -> np.ndarray:
        loaded = api.load_model(model_dir)
        contexts, frames = _encode(loaded.encoder, x_val, horizon)
        return _forecast(loaded, contexts, frames, 8, 10, args.seed, True)

    meta = _timeseries_ci.train_in_rounds(f"trajdiff h={horizon}", model_dir, best_dir, args, train_to,
                                          validation_samples, y_val)
    return best_dir, meta


def run_trajdiff(train_frame: pd.DataFrame, val: np.ndarray, test: np.ndarray, horizon: int,
                 args: argparse.Namespace, workdir: Path) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """trajdiff rows on every test window, and the ridge base on every validation and test window."""
    x_val, y_val = windows(val, horizon)
    pick = np.linspace(0, len(x_val) - 1, min(len(x_val), args.val_windows)).round().astype(int)
    best_dir, info = train_trajdiff(train_frame, x_val[pick], y_val[pick], horizon, args, workdir)
    loaded = api.load_model(best_dir)
    encoder = loaded.encoder
    contexts, frames = _encode(encoder, x_val[pick], horizon)
    val_samples = _forecast(loaded, contexts, frames, args.samples, 10, args.seed + 1, True)
    centred = fit_calibration(val_samples, y_val[pick], _base(encoder, contexts, frames), spread=False)
    val_base = _base(encoder, *_encode(encoder, x_val, horizon))
    x_test, y_test = windows(test, horizon)
    sums = {"raw": np.zeros(4), "calibrated": np.zeros(4)}  # mse, mae, crps, coverage90 sums
    bases, started = [], time.process_time()
    for lo in range(0, len(x_test), args.chunk):
        contexts, frames = _encode(encoder, x_test[lo : lo + args.chunk], horizon)
        base = _base(encoder, contexts, frames)
        samples = _forecast(loaded, contexts, frames, args.samples, 10, args.seed + 2 + lo, True)
        truth = y_test[lo : lo + args.chunk]
        for key, drawn in (("raw", samples), ("calibrated", centred.apply(samples, base))):
            sums[key] += sample_sums(drawn, truth)
        bases.append(base)
        print(f"  trajdiff h={horizon}: {min(lo + args.chunk, len(x_test))}/{len(x_test)} test windows", flush=True)
    test_base = np.concatenate(bases)
    count = y_test.size
    common = {"dataset": "ETTh1", "horizon": horizon, "windows": len(y_test), "samples": args.samples, "nfe": 10,
              **info, "sampling_cpu_minutes": (time.process_time() - started) / 60}
    rows = []
    for key, label in (("calibrated", "trajdiff (centre calibrated on validation)"), ("raw", "trajdiff (raw median)")):
        mse, mae, crps, coverage = sums[key] / count
        rows.append({"method": label, **common, "mse": mse, "mae": mae, "crps": crps, "coverage90": coverage,
                     "median_weight": centred.median_weight})
    ridge = {"method": f"ridge base (trajdiff encoder, anchor {encoder.forecaster.anchor})", "dataset": "ETTh1",
             "horizon": horizon, "windows": len(y_test), **point_scores(test_base, y_test), "coverage90": None,
             "train_cpu_minutes": None, "validation_mse": float(np.mean((val_base - y_val) ** 2))}
    ridge["crps"] = ridge["mae"]
    return rows + [ridge], val_base, test_base


def gaussian_reference(candidates: dict[str, tuple[np.ndarray, np.ndarray]], y_val: np.ndarray,
                       y_test: np.ndarray, horizon: int) -> dict:
    """Gaussian errors around the point forecast with the lowest validation MSE; sigma per lead time and
    variable = the RMS of its validation residuals."""
    chosen = min(candidates, key=lambda name: float(np.mean((candidates[name][0] - y_val) ** 2)))
    val_pred, test_pred = candidates[chosen]
    sigma = np.sqrt(np.mean((val_pred - y_val) ** 2, axis=0))
    scores = normal_scores(test_pred, np.broadcast_to(sigma, test_pred.shape), y_test)
    return {"method": "Gaussian errors around the best point forecast", "dataset": "ETTh1", "horizon": horizon,
            "windows": len(y_test), **scores, "train_cpu_minutes": None, "centre": chosen,
            "centre_chosen_by": "lowest validation MSE", "sigma": "RMS of validation residuals per lead time, variable"}


def merge(path: Path, rows: list[dict], command: str) -> Path:
    """Rows replace those of the same (method, horizon) already in the results file."""
    kept = []
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        done = {(r["method"], r["horizon"]) for r in rows}
        kept = [r for r in old["rows"] if (r["method"], r["horizon"]) not in done]
    merged = sorted(kept + rows, key=lambda r: (r["horizon"], r["method"]))
    return write_results("timeseries_peers", command, merged, path,
                         peers_environment="python3 -m venv /tmp/nfenv && /tmp/nfenv/bin/pip install torch==2.13.0 "
                                           "&& /tmp/nfenv/bin/pip install neuralforecast (3.3.0)")


def show(path: Path) -> None:
    """Prints the results file as one side-by-side table per horizon."""
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    for row in rows:
        if row.get("published_mse") is not None:
            row["published"] = f"{row['published_mse']:.3f} / {row['published_mae']:.3f}"
        if row.get("steps") is not None:
            row["steps (best)"] = f"{row['steps']} ({row['best_step']}), {row['stopped_by']}"
    columns = ["method", "mse", "mae", "crps", "coverage90", "train_cpu_minutes", "steps (best)", "published",
               "mse_vs_published"]
    for horizon in sorted({r["horizon"] for r in rows}):
        print(f"\nh = {horizon} ({next(r['windows'] for r in rows if r['horizon'] == horizon)} test windows)")
        print(markdown_table([r for r in rows if r["horizon"] == horizon], columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    parser.add_argument("--peer-python", default="/tmp/nfenv/bin/python", help="interpreter with neuralforecast")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), help=f"subset of {', '.join(PEERS)}")
    parser.add_argument("--no-trajdiff", dest="trajdiff", action="store_false")
    parser.add_argument("--trajdiff", dest="config", choices=["transformer", "window-mlp-ci"], default="transformer",
                        help="trajdiff's configuration: etth1.py's transformer, or the channel-independent window "
                             "MLP of _timeseries_ci.py")
    parser.add_argument("--reuse-peers", action="store_true",
                        help="read the peers' forecasts from --workdir (an earlier run's .npz) for the Gaussian "
                             "reference instead of training them; their rows in the results file stay as they are")
    parser.add_argument("--cap-minutes", type=float, default=20.0, help="CPU minutes of training per model and horizon")
    parser.add_argument("--steps", type=int, default=3000, help="trajdiff's most training steps")
    parser.add_argument("--round-steps", type=int, default=1000, help="trajdiff steps between validation checks")
    parser.add_argument("--val-windows", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=200, help="test windows sampled at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/timeseries_peers.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep models and peer outputs here")
    parser.add_argument("--show", action="store_true", help="print the results file's tables and exit")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, written to a temporary file")
    args = parser.parse_args()
    if args.show:
        show(args.out or results_path("timeseries_peers", False))
        return
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown or any(h not in MAX_STEPS["NHITS"] for h in args.horizons):
        raise SystemExit(f"--peers takes {', '.join(PEERS)} (got {unknown}); --horizons takes 96, 192, 336, 720")
    if args.quick:
        args.steps, args.round_steps, args.samples, args.val_windows = 100, 50, 4, 16
    if args.peers and not args.reuse_peers and not Path(args.peer_python).exists():
        raise SystemExit(f"--peer-python {args.peer_python} not found; build it with the two commands in this "
                         "script's docstring")
    if not DATA.exists():
        raise SystemExit(f"ETTh1 not found at {DATA}; see datasets/etth1.md for how to obtain it")
    torch.set_num_threads(1)
    frame = pd.read_csv(DATA)
    train_frame, train, val, test = split(frame)
    path = args.out or results_path("timeseries_peers", args.quick)
    command = "python benchmarks/timeseries_peers.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        z = (frame.drop(columns=["date"]).to_numpy(np.float64)[:TEST_END] - train_frame.drop(columns=["date"])
             .to_numpy(np.float64).mean(0)) / train_frame.drop(columns=["date"]).to_numpy(np.float64).std(0)
        data = workdir / "etth1.npz"
        np.savez(data, values=z, val_size=VAL_END - TRAIN_END, test_size=TEST_END - VAL_END)
        for horizon in args.horizons:
            rows, candidates = [], {}
            _, y_val = windows(val, horizon)
            x_test, y_test = windows(test, horizon)
            if args.quick:
                y_test = y_test[:300]
            peers: dict[str, dict | Exception] = {}
            if args.reuse_peers:
                stored = {name: workdir / f"{name}-h{horizon}.npz" for name in args.peers}
                runners = []
                for name, npz in stored.items():
                    peers[name] = load_peer(npz, horizon)
            else:
                runners = run_peers(args.peers, horizon, data, args, workdir, peers)  # they train while trajdiff does
            ours = []
            if args.trajdiff:
                test_part = test[: len(y_test) + CONTEXT + horizon - 1]
                try:
                    if args.config == "window-mlp-ci":
                        ours, points = _timeseries_ci.run(frame, z, horizon, len(y_test), args, workdir)
                        candidates.update(points)
                        for row in ours:
                            row["command"] = command.strip()
                    else:
                        ours, val_base, test_base = run_trajdiff(train_frame, val, test_part, horizon, args, workdir)
                        candidates[ours[-1]["method"]] = (val_base, test_base)
                except Exception:  # keep the peers' rows; rerun trajdiff alone with --peers (no names)
                    traceback.print_exc()
            for runner in runners:
                runner.join()
            for name in args.peers:
                peer = peers[name]
                if isinstance(peer, Exception):
                    print(f"skipped: {peer}", flush=True)
                    continue
                if args.quick:
                    peer["first_test"], peer["test"] = peer["first_test"][:300], {
                        k: v[:300] for k, v in peer["test"].items()}
                check_windows(peer, y_test, name)
                candidates[f"{name} (neuralforecast)"] = (peer["val"]["point"], peer["test"]["point"])
                if not args.reuse_peers:
                    rows.append(peer_row(name, horizon, peer))
            if args.reuse_peers and not ours:
                raise SystemExit("trajdiff failed (above) and the peers were not rerun: nothing to write")
            rows += ours
            if candidates:
                rows.append(gaussian_reference(candidates, y_val, y_test, horizon))
            path = merge(path, rows, command.strip())
            print(markdown_table(rows, ["method", "horizon", "mse", "mae", "crps", "coverage90",
                                        "train_cpu_minutes", "stopped_by"]), flush=True)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
