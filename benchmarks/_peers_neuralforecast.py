"""Trains one neuralforecast model on ETTh1 windows and writes its forecasts (run by timeseries_peers.py).

This module runs in a separate environment that has neuralforecast (never trajdiff's); it imports only
neuralforecast, pytorch_lightning, torch, pandas and numpy. It reads the standardized series from an
.npz file (``values`` [rows, 7], ``val_size``, ``test_size``), fits the model on the rows before the test
months with the last ``val_size`` rows as neuralforecast's validation split (early stopping on it), and
predicts every window whose forecast lies in the validation or the test months (stride 1), all in one
``cross_validation(use_fitted=True)`` pass. Output .npz: ``point`` [windows, H, 7] (mean forecast),
``loc``/``scale`` for the Normal peer, ``truth`` and ``first_target`` (the row each window's forecast
starts at) so the caller can check the windows, and ``meta`` (JSON: steps, stopped_by, CPU seconds).

    /tmp/nfenv/bin/python benchmarks/_peers_neuralforecast.py --data in.npz --out out.npz --model PatchTST --horizon 96
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from neuralforecast import NeuralForecast
from neuralforecast.losses.pytorch import MAE, MSE, DistributionLoss, HuberLoss
from neuralforecast.models import NHITS, DLinear, PatchTST

PATCHTST_INPUT = 336  # PatchTST/42 and DLinear: L = 336 in their papers' ETTh1 scripts
PATCHTST_BATCH = 128  # multivariate windows per step in the PatchTST script; x7 univariate windows here
DLINEAR_BATCH = 8  # DLinear's ETTh1 script (batch_size 8)


class Budget(pl.Callback):
    """Stops training past a CPU-time budget and keeps the weights of the best validation check.

    The papers' scripts test the checkpoint with the lowest validation loss; neuralforecast's early
    stopping keeps the last weights, so the best ones are restored when training ends."""

    def __init__(self, cpu_seconds: float) -> None:
        self.cpu_seconds = cpu_seconds
        self.capped = False
        self.best = float("inf")
        self.best_step = 0
        self.best_state: dict | None = None
        self.checks: list[tuple[int, float]] = []
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if time.process_time() > self.cpu_seconds:
            self.capped = True
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.sanity_checking or "ptl/val_loss" not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics["ptl/val_loss"])
        self.checks.append((int(trainer.global_step), loss))
        if loss < self.best:
            self.best, self.best_step = loss, int(trainer.global_step)
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.steps = int(trainer.global_step)
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)


def build(name: str, horizon: int, train_windows: int, max_steps: int, seed: int, budget: Budget):
    """The model with its documented ETTh1 configuration (sources in the comments)."""
    common = {"h": horizon, "random_seed": seed, "max_steps": max_steps, "callbacks": [budget],
              "enable_progress_bar": False, "enable_model_summary": False, "logger": False,
              "batch_size": 7, "valid_batch_size": 7, "inference_windows_batch_size": 1024}
    if name == "PatchTST":
        # Nie et al. (2023), github.com/yuqinie98/PatchTST PatchTST_supervised/scripts/PatchTST/etth1.sh:
        # L=336, 3 layers, 4 heads, d_model 16, d_ff 128, dropout 0.3, fc_dropout 0.3, head_dropout 0,
        # patch 16, stride 8, batch 128, lr 1e-4 with the 'TST' one-cycle schedule (pct_start 0.3),
        # RevIN without affine, subtracting the mean (their defaults). Validation every 100 steps.
        return PatchTST(input_size=PATCHTST_INPUT, encoder_layers=3, n_heads=4, hidden_size=16,
                        linear_hidden_size=128, dropout=0.3, fc_dropout=0.3, head_dropout=0.0,
                        patch_len=16, stride=8, revin=True, revin_affine=False, revin_subtract_last=False,
                        loss=MSE(), valid_loss=MSE(), learning_rate=1e-4,
                        windows_batch_size=PATCHTST_BATCH * 7, val_check_steps=100,
                        early_stop_patience_steps=10, lr_scheduler=torch.optim.lr_scheduler.OneCycleLR,
                        lr_scheduler_kwargs={"max_lr": 1e-4, "total_steps": max_steps + 1, "pct_start": 0.3},
                        **common)
    if name == "DLinear":
        # Zeng et al. (2023), github.com/cure-lab/LTSF-Linear scripts/EXP-LongForecasting/DLinear/etth1.sh:
        # L=336, batch 8, moving average 25, run_longExp.py defaults: lr 1e-4 halved every epoch
        # ('type1'), 10 epochs, early stopping patience 3 epochs; validation once an epoch.
        epoch = max(1, train_windows // DLINEAR_BATCH)
        return DLinear(input_size=PATCHTST_INPUT, moving_avg_window=25, loss=MSE(), valid_loss=MSE(),
                       learning_rate=1e-4, windows_batch_size=DLINEAR_BATCH * 7, val_check_steps=epoch,
                       early_stop_patience_steps=3, lr_scheduler=torch.optim.lr_scheduler.StepLR,
                       lr_scheduler_kwargs={"step_size": epoch, "gamma": 0.5}, **common)
    # Challu et al. (2023) as run by neuralforecast, github.com/Nixtla/neuralforecast
    # experiments/long_horizon/run_nhits.py: input 7 x horizon, 3 stacks of one block, MLP 2 x 512,
    # pooling kernels [2, 2, 2], downsampling [84, 12, 1] (the hourly choice of its search space),
    # dropout 0.5, linear interpolation, 256 windows per step, Huber loss (delta 0.5), validation MAE
    # every 100 steps, at most 1000 steps; lr 1e-3 (the fixed value commented in that script; the
    # search draws it from loguniform(1e-5, 5e-3)). Early stopping: 5 checks.
    nhits = {"input_size": 7 * horizon, "n_blocks": [1, 1, 1], "mlp_units": [[512, 512]] * 3,
             "n_pool_kernel_size": [2, 2, 2], "n_freq_downsample": [84, 12, 1], "dropout_prob_theta": 0.5,
             "interpolation_mode": "linear", "activation": "ReLU", "learning_rate": 1e-3,
             "windows_batch_size": 256, "val_check_steps": 100, "early_stop_patience_steps": 5}
    if name == "NHITS":
        return NHITS(loss=HuberLoss(delta=0.5), valid_loss=MAE(), **nhits, **common)
    if name == "NHITS-Normal":
        # The same NHITS trained by the Normal negative log-likelihood (neuralforecast's DistributionLoss),
        # validated on it; the Normal's parameters are returned, so CRPS and intervals are exact.
        loss = DistributionLoss(distribution="Normal", level=[90], return_params=True, num_samples=8)
        return NHITS(loss=loss, valid_loss=loss, alias="NHITS-Normal", **nhits, **common)
    raise SystemExit(f"--model {name}: choose PatchTST, DLinear, NHITS or NHITS-Normal")


def frame(values: np.ndarray) -> pd.DataFrame:
    rows, series = values.shape
    return pd.DataFrame({"unique_id": np.repeat([f"c{j}" for j in range(series)], rows),
                         "ds": np.tile(np.arange(rows), series), "y": values.T.reshape(-1)})


def to_windows(forecasts: pd.DataFrame, column: str, series: int, horizon: int) -> np.ndarray:
    """cross_validation's long frame -> [windows, H, series], windows in cutoff order."""
    ordered = forecasts.sort_values(["unique_id", "cutoff", "ds"])
    return ordered[column].to_numpy(np.float64).reshape(series, -1, horizon).transpose(1, 2, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--cap-minutes", type=float, default=20.0, help="CPU minutes of training at most")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = np.load(args.data)
    values, val_size, test_size = data["values"], int(data["val_size"]), int(data["test_size"])
    series, horizon = values.shape[1], args.horizon
    train_rows = len(values) - test_size - val_size
    budget = Budget(60 * args.cap_minutes)  # counted from the process start, imports included
    input_size = 7 * horizon if args.model.startswith("NHITS") else PATCHTST_INPUT
    model = build(args.model, horizon, train_rows - input_size - horizon + 1, args.max_steps, args.seed, budget)
    nf = NeuralForecast(models=[model], freq=1)
    started = time.process_time()
    nf.fit(frame(values[: len(values) - test_size]), val_size=val_size)
    train_cpu = time.process_time()
    # fit trains deep copies of the models given: read the callback the trainer used
    budget = next(cb for cb in nf.models[0].trainer_kwargs["callbacks"] if isinstance(cb, Budget))
    # every window whose forecast starts in the validation or test months, stride 1
    predicted = nf.cross_validation(df=frame(values), use_fitted=True, n_windows=None, step_size=1,
                                    test_size=val_size + test_size)
    name = model.alias or type(model).__name__
    model = nf.models[0]
    out = {"point": to_windows(predicted, name, series, horizon),
           "truth": to_windows(predicted, "y", series, horizon),
           "first_target": np.sort(predicted["cutoff"].unique()).astype(np.int64) + 1}
    if args.model == "NHITS-Normal":
        out["loc"] = to_windows(predicted, f"{name}-loc", series, horizon)
        out["scale"] = to_windows(predicted, f"{name}-scale", series, horizon)
        out["point"] = out["loc"]
    stopped = "cpu cap" if budget.capped else ("max_steps" if budget.steps >= args.max_steps else "early stopping")
    meta = {"steps": budget.steps, "best_step": budget.best_step, "best_val_loss": budget.best,
            "stopped_by": stopped, "validation_checks": budget.checks, "max_steps": args.max_steps,
            "input_size": input_size, "train_cpu_s": train_cpu, "fit_cpu_s": train_cpu - started,
            "predict_cpu_s": time.process_time() - train_cpu, "neuralforecast_config": {
                k: (v if isinstance(v, (int, float, str, bool, list, type(None))) else repr(v))
                for k, v in model.hparams.items() if k not in ("callbacks",)}}
    np.savez(args.out, meta=json.dumps(meta), **out)


if __name__ == "__main__":
    main()
