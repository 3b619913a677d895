"""trajdiff's channel-independent window-MLP configuration for `timeseries_peers.py` (``--trajdiff window-mlp-ci``).

Each of ETTh1's 7 variables is its own univariate series (the loader's ``split_columns``), all sharing one
network: 7 times the training windows (PatchTST's channel independence, Nie et al., 2023). The training months
go in already standardized per column with their own statistics, as the protocol scores them; the encoder then
forecasts each series by the ridge base over ``LOOKBACK`` rows, shared by all variables, and the network
(`window_mlp`, the domain's ``window-mlp`` recipe: one MLP over the window, x0 target) models the residual. The
options below were chosen on the validation months only (`_timeseries_search.py`, log in the results JSON).

Training runs in rounds with the validation MSE of the median of 8 samples after each, keeping the best round
and stopping before a round would pass the CPU cap; the weight on the diffusion median against the ridge base is
calibrated on validation windows (centre only), and every test window is scored with 100 antithetic samples.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from etth1 import CONTEXT, TEST_END, TRAIN_END, VAL_END, point_scores

from trajdiff import api
from trajdiff.core import metrics
from trajdiff.core.calibration import fit_calibration

LOOKBACK = 336  # chosen on validation (_timeseries_search.py): the ridge base over 336 rows 0.6477 vs 0.6562
RECIPE = "window-mlp"
NETWORK = {"kind": "window_mlp", "dim": None, "length": None, "width": 256, "depth": 3}
ENCODER = {"instance_norm": True, "global_base": True}
NAME = "trajdiff window MLP, channel-independent"
VAL_POINT_SAMPLES = 20  # samples per window for the median on every validation window (the Gaussian reference)


def sample_sums(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Sums over the elements of the median's squared and absolute error, the samples' CRPS, 90% coverage."""
    s, t = torch.from_numpy(samples).float(), torch.from_numpy(np.array(truth, dtype=np.float32))
    median = np.median(samples, axis=0)
    return np.array([((median - truth) ** 2).sum(), np.abs(median - truth).sum(),
                     float(metrics.crps_samples(s, t).sum()),
                     float(metrics.interval_coverage(s, t, 0.9, reduction="none").sum())])


def ci_windows(z: np.ndarray, first: int, last: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose first target row is in ``[first, last - horizon]``: histories ``[N, LOOKBACK, 7]``, targets."""
    view = np.lib.stride_tricks.sliding_window_view(z[first - LOOKBACK:last], LOOKBACK + horizon, axis=0)
    view = view.transpose(0, 2, 1)
    return view[:, :LOOKBACK], view[:, LOOKBACK:]


class Forecaster:
    """A trained model's samples and ridge base for multivariate windows, one univariate series per variable."""

    def __init__(self, model_dir: Path) -> None:
        self.loaded = api.load_model(model_dir)
        self.encoder = self.loaded.encoder

    def _encode(self, x: np.ndarray, horizon: int) -> tuple[np.ndarray, list[dict]]:
        flat = x.transpose(0, 2, 1).reshape(-1, x.shape[1], 1)
        raw = self.encoder.normalizer.inverse(np.concatenate([flat, np.zeros((len(flat), horizon, 1))], axis=1))
        tokens, frames = zip(*(self.encoder.encode(w, LOOKBACK) for w in raw), strict=True)
        return np.stack(tokens).astype(np.float32), list(frames)

    def _back(self, values: np.ndarray, windows: int) -> np.ndarray:
        """``[..., N * 7, H, 1]`` -> ``[..., N, H, 7]`` in standardized units."""
        values = self.encoder.normalizer.transform(values)[..., LOOKBACK:, 0]
        values = values.reshape(*values.shape[:-2], windows, -1, values.shape[-1])
        return np.swapaxes(values, -1, -2)

    def base(self, x: np.ndarray, horizon: int) -> np.ndarray:
        tokens, frames = self._encode(x, horizon)
        tokens[:, LOOKBACK // self.encoder.rows_per_token:] = 0.0
        return self._back(np.stack([self.encoder.decode(t, f) for t, f in zip(tokens, frames, strict=True)]), len(x))

    def samples(self, x: np.ndarray, horizon: int, count: int, seed: int) -> np.ndarray:
        tokens, frames = self._encode(x, horizon)
        drawn = api.sample_futures(self.loaded, tokens, samples=count, nfe=10, seed=seed, antithetic=True)
        decoded = np.stack([self.encoder.decode(drawn[:, j], frames[j]) for j in range(len(frames))], axis=1)
        return self._back(decoded, len(x))


def train_in_rounds(label: str, model_dir: Path, best_dir: Path, args: argparse.Namespace,
                    train_to: Callable[[int], None], validation_samples: Callable[[], np.ndarray],
                    y_val: np.ndarray) -> dict:
    """Trains in rounds of ``args.round_steps`` up to ``args.steps`` (``train_to(end)`` continues the model in
    ``model_dir`` to ``end`` steps), scores the median of ``validation_samples()`` after each round and keeps the
    round with the lowest validation MSE in ``best_dir``; stops before a round would pass ``args.cap_minutes``
    CPU minutes. Returns what the results rows record about training."""
    best, history, used, stopped = (float("inf"), 0), [], 0.0, "steps"
    cap = 60 * args.cap_minutes
    for end in range(args.round_steps, args.steps + 1, args.round_steps):
        if history and used + used / len(history) > cap:
            stopped = "cpu cap"
            break
        before = time.process_time()
        train_to(end)
        val_mse = float(np.mean((np.median(validation_samples(), 0) - y_val) ** 2))
        used += time.process_time() - before
        history.append({"steps": end, "val_mse": val_mse, "cpu_minutes": used / 60})
        print(f"  {label} steps={end} validation MSE {val_mse:.4f} ({used / 60:.1f} CPU-min)", flush=True)
        if val_mse < best[0]:
            best = (val_mse, end)
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(model_dir, best_dir)
    return {"train_cpu_minutes": used / 60, "steps": history[-1]["steps"], "best_step": best[1],
            "stopped_by": stopped, "validation_rounds": history}


def train(train_frame: pd.DataFrame, x_val: np.ndarray, y_val: np.ndarray, horizon: int,
          args: argparse.Namespace, workdir: Path) -> tuple[Path, dict]:
    """`train_in_rounds` for this configuration; validation by the median of 8 samples."""
    model_dir, best_dir = workdir / f"trajdiff-ci-h{horizon}", workdir / f"trajdiff-ci-h{horizon}-best"

    def train_to(end: int) -> None:
        api.train("timeseries", train_frame, model_dir, steps=end, history=LOOKBACK, horizon=horizon,
                  batch_size=args.batch_size, seed=args.seed, progress=False, resume=end > args.round_steps,
                  overwrite=end == args.round_steps, recipe=RECIPE, network=NETWORK, encoder=ENCODER,
                  load_options={"split_columns": True})

    meta = train_in_rounds(f"{NAME} h={horizon}", model_dir, best_dir, args, train_to,
                           lambda: Forecaster(model_dir).samples(x_val, horizon, 8, args.seed), y_val)
    return best_dir, meta


def run(frame: pd.DataFrame, z: np.ndarray, horizon: int, test_windows: int, args: argparse.Namespace,
        workdir: Path) -> tuple[list[dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Rows (calibrated and raw median) on the first ``test_windows`` test windows, and the point forecasts (the
    calibrated median, the ridge base) on every validation window and on those test windows, by name (for the
    Gaussian reference)."""
    train_frame = frame.iloc[:TRAIN_END].copy()
    train_frame.iloc[:, 1:] = z[:TRAIN_END]  # standardized per column with the training months' statistics
    x_val, y_val = ci_windows(z, TRAIN_END, VAL_END, horizon)
    pick = np.linspace(0, len(x_val) - 1, min(len(x_val), args.val_windows)).round().astype(int)
    best_dir, info = train(train_frame, x_val[pick], y_val[pick], horizon, args, workdir)
    model = Forecaster(best_dir)
    val_samples = model.samples(x_val[pick], horizon, args.samples, args.seed + 1)
    centred = fit_calibration(val_samples, y_val[pick], model.base(x_val[pick], horizon), spread=False)
    val_point, val_base = [], model.base(x_val, horizon)
    for lo in range(0, len(x_val), args.chunk):  # every validation window, for the Gaussian reference's sigma
        drawn = model.samples(x_val[lo:lo + args.chunk], horizon, VAL_POINT_SAMPLES, args.seed + 3 + lo)
        val_point.append(np.median(centred.apply(drawn, val_base[lo:lo + args.chunk]), 0))
    x_test, y_test = ci_windows(z, VAL_END, TEST_END, horizon)
    x_test, y_test = x_test[:test_windows], y_test[:test_windows]
    sums = {"raw": np.zeros(4), "calibrated": np.zeros(4)}
    points, bases, started = [], [], time.process_time()
    for lo in range(0, len(x_test), args.chunk):
        part = x_test[lo:lo + args.chunk]
        samples = model.samples(part, horizon, args.samples, args.seed + 2 + lo)
        bases.append(model.base(part, horizon))
        calibrated = centred.apply(samples, bases[-1])
        truth = y_test[lo:lo + args.chunk]
        sums["raw"] += sample_sums(samples, truth)
        sums["calibrated"] += sample_sums(calibrated, truth)
        points.append(np.median(calibrated, 0))
        print(f"  {NAME} h={horizon}: {min(lo + args.chunk, len(x_test))}/{len(x_test)} test windows", flush=True)
    common = {"dataset": "ETTh1", "horizon": horizon, "windows": len(y_test), "samples": args.samples, "nfe": 10,
              "input_size": LOOKBACK, "validation_point_samples": VAL_POINT_SAMPLES, "recipe": RECIPE,
              "network": NETWORK, "encoder": ENCODER, **info,
              "median_weight": centred.median_weight, "sampling_cpu_minutes": (time.process_time() - started) / 60}
    rows = []
    for key, label in (("calibrated", "centre calibrated on validation"), ("raw", "raw median")):
        mse, mae, crps, coverage = sums[key] / y_test.size
        rows.append({"method": f"{NAME} ({label})", **common, "mse": mse, "mae": mae, "crps": crps,
                     "coverage90": coverage})
    val_point = np.concatenate(val_point)
    for row in rows:
        row["validation_mse"] = point_scores(val_point, y_val)["mse"]
    rows[1]["validation_mse"] = None  # the raw median was not scored on every validation window
    ridge = f"ridge base over {LOOKBACK} rows (trajdiff encoder, anchor {model.encoder.forecaster.anchor})"
    test_base = np.concatenate(bases)
    if LOOKBACK != CONTEXT:  # etth1.py's ridge base over 96 rows has its own row
        rows.append({"method": ridge, "dataset": "ETTh1", "horizon": horizon, "windows": len(y_test),
                     "input_size": LOOKBACK, **point_scores(test_base, y_test), "coverage90": None,
                     "train_cpu_minutes": None, "validation_mse": point_scores(val_base, y_val)["mse"]})
        rows[-1]["crps"] = rows[-1]["mae"]
    return rows, {rows[0]["method"]: (val_point, np.concatenate(points)), ridge: (val_base, test_base)}
