"""The demo: probabilistic forecasting of the Lorenz-63 system through the ``timeseries`` domain.

What it does: integrates Lorenz trajectories with torchdiffeq, writes them as two CSV files (training
series and held-out series, one ``series`` id and one ``time`` column, as any user's file), then runs
the public API on them exactly as a user would: `api.train` for a fixed number of steps, `api.evaluate`
on the held-out series (the model beside the domain's baselines on the same windows) and
`api.forecast` for the plot.

Why this shape: the demo is the first thing a new user runs, so it shows the path they will take
with their own data, and its table is a fact anyone can check. Training runs a fixed number of
steps (never a time cap) with fixed seeds, so the printed table is the same on every machine with
the same torch build and thread count; only the wall time differs, and it is measured on a short
warm-up and said up front.

Rows are one 48th of the attractor's dominant period apart and stamped every 30 minutes, so the
domain's seasonal-naive baseline (one day back for half-hourly rows) repeats the last period.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchdiffeq
from torch import Tensor

from trajdiff import api
from trajdiff.api.baselines import comparison_table
from trajdiff.api.checks import check_seed

__all__ = ["DEFAULT", "QUICK", "DemoResult", "DemoSize", "lorenz_frame", "lorenz_trajectories", "run_demo"]

LORENZ_PERIOD = 1.5008  # dominant period of Lorenz-63 in model time units (as in dysts)
ROWS_PER_PERIOD = 48
STAMP_STEP = "30min"  # 48 rows per day: the seasonal-naive season is one Lorenz period
WARMUP_STEPS = 30


@dataclass(frozen=True)
class DemoSize:
    """How much data, model and training one demo run uses (`DEFAULT` or `QUICK`)."""

    train_series: int
    test_series: int
    rows: int  # rows per series
    steps: int
    network: dict[str, Any]
    history: int = 48  # one period: what the seasonal-naive baseline needs
    horizon: int = 32
    patch: int = 8  # rows per token
    batch_size: int = 64
    lr: float = 2e-3


DEFAULT = DemoSize(train_series=64, test_series=16, rows=400, steps=3000,
                   network={"kind": "transformer", "width": 64, "depth": 3, "heads": 4})
"""About 95 s of CPU time on one thread of this project's 2-core machine (measured), so 2-3 minutes of
wall time there with other jobs running; half the steps gave twice the held-out MSE."""
QUICK = DemoSize(train_series=16, test_series=8, rows=240, steps=200,
                 network={"kind": "transformer", "width": 32, "depth": 2, "heads": 4})
"""A smoke run in seconds (the test suite's)."""


@dataclass
class DemoResult:
    """What a demo run produced: ``evaluation`` is `api.evaluate`'s result (``metrics``, ``baselines``,
    ``ratios``, ``warnings`` ...), also written to ``evaluation.json``; times in seconds."""

    evaluation: dict[str, Any]
    table: list[str]
    model_dir: Path
    plot: Path
    data: dict[str, Path] = field(default_factory=dict)
    steps: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0


def lorenz_trajectories(count: int, length: int, dt: float, *, seed: int = 0, sigma: float = 10.0,
                        rho: float = 28.0, beta: float = 8.0 / 3.0) -> Tensor:
    """``count`` Lorenz-63 trajectories ``[count, length, 3]`` sampled every ``dt`` model time units, from
    seeded random starts settled onto the attractor (5 time units of burn-in); dopri5 in float64."""
    generator = torch.Generator().manual_seed(seed)

    def vector_field(_: Tensor, state: Tensor) -> Tensor:
        x, y, z = state.unbind(-1)
        return torch.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], dim=-1)

    start = torch.randn(count, 3, generator=generator, dtype=torch.float64) * 5.0 + torch.tensor([0.0, 0.0, 25.0])
    with torch.no_grad():
        settle = torch.tensor([0.0, 5.0], dtype=torch.float64)
        start = torchdiffeq.odeint(vector_field, start, settle, method="dopri5", rtol=1e-7, atol=1e-7)[-1]
        times = torch.arange(length, dtype=torch.float64) * dt
        path = torchdiffeq.odeint(vector_field, start, times, method="dopri5", rtol=1e-7, atol=1e-7)
    return path.permute(1, 0, 2)


def lorenz_frame(count: int, rows: int, *, seed: int, prefix: str) -> pd.DataFrame:
    """``count`` trajectories as the long table the timeseries loader reads: time, series, x, y, z."""
    values = lorenz_trajectories(count, rows, LORENZ_PERIOD / ROWS_PER_PERIOD, seed=seed).reshape(-1, 3).numpy()
    stamps = pd.date_range("2000-01-01", periods=rows, freq=STAMP_STEP)
    return pd.DataFrame({"time": np.tile(stamps.to_numpy(), count),
                         "series": np.repeat([f"{prefix}-{i}" for i in range(count)], rows),
                         "x": values[:, 0], "y": values[:, 1], "z": values[:, 2]})


def _about(seconds: float) -> str:
    """A duration without false precision: 10-second steps below a minute, half minutes above."""
    if seconds < 10:
        return "under 10 seconds"
    if seconds < 60:
        return f"about {max(10, round(seconds / 10) * 10):.0f} seconds"
    minutes = round(seconds / 30) / 2
    return f"about {minutes:g} minute{'s' if minutes != 1 else ''}"


def _clock(seconds: float) -> str:
    """Whole seconds, as minutes and seconds from one minute up."""
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def _plot(model_dir: Path, heldout: pd.DataFrame, horizon: int, path: Path, *, samples: int, nfe: int,
          seed: int) -> Path:
    """Forecasts of the last ``horizon`` rows of four held-out series from the rows before them
    (`api.forecast`), drawn beside what happened (`api.plot_forecasts`)."""
    shown = heldout[heldout["series"].isin(heldout["series"].unique()[:4])]
    known = shown.groupby("series", sort=False).head(-horizon)  # all but the last horizon rows
    result = api.forecast(model_dir, known, samples=samples, nfe=nfe, seed=seed)
    truths = {str(name): rows[["x", "y", "z"]].to_numpy()[-horizon:] for name, rows in shown.groupby("series")}
    return api.plot_forecasts(result.history, result.samples, ["x", "y", "z"], path, truths=truths)


def run_demo(
    out_dir: str | Path = "demo-output",
    *,
    steps: int | None = None,
    samples: int = 16,
    nfe: int = 20,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> DemoResult:
    """Generates the data, trains ``steps`` steps (default: `DEFAULT`'s or, with ``quick``, `QUICK`'s),
    evaluates on the held-out series beside the baselines, prints the table and plots forecasts.

    Writes under ``out_dir``: ``lorenz-train.csv``, ``lorenz-heldout.csv``, ``model/``,
    ``evaluation.json`` and ``forecast.png``. The table depends only on the arguments, the torch
    build and the thread count (set with ``torch.set_num_threads`` before calling)."""
    started = time.monotonic()
    seed = check_seed(seed)  # before anything is written
    size = QUICK if quick else DEFAULT
    steps = size.steps if steps is None else steps
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"train": out / "lorenz-train.csv", "heldout": out / "lorenz-heldout.csv"}
    log(f"Generating Lorenz-63 with torchdiffeq: {size.train_series} training and {size.test_series} held-out "
        f"series of {size.rows} rows ({ROWS_PER_PERIOD} rows per period of the attractor) ...")
    lorenz_frame(size.train_series, size.rows, seed=seed, prefix="train").to_csv(data["train"], index=False)
    heldout = lorenz_frame(size.test_series, size.rows, seed=seed + 1, prefix="heldout")
    heldout.to_csv(data["heldout"], index=False)

    options: dict[str, Any] = {
        "history": size.history, "horizon": size.horizon, "network": dict(size.network),
        "encoder": {"patch": size.patch}, "batch_size": size.batch_size, "lr": size.lr, "seed": seed,
    }
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as scratch:  # a short run, only to measure the time per step
        warm = api.train("timeseries", data["train"], Path(scratch) / "model", steps=min(WARMUP_STEPS, steps),
                         progress=False, **options)
    per_step = warm.seconds / max(1, warm.steps)
    log(f"Training {steps:,} steps: {_about(per_step * steps)} on {threads} torch thread(s) "
        f"({per_step:.2f} s per step on a {warm.steps}-step warm-up just now) ...")

    model_dir = out / "model"
    # rerunning the demo replaces its own model; api.train seeds the network's initial weights
    summary = api.train("timeseries", data["train"], model_dir, steps=steps, progress=progress,
                        overwrite=True, **options)
    log(f"  {summary.steps:,} steps on {summary.windows:,} windows in {_clock(summary.seconds)}, "
        f"final loss {summary.final_loss:.4f}")

    log(f"Evaluating on the held-out series ({samples} samples per window, {nfe} network evaluations each) ...")
    evaluation = api.evaluate(model_dir, data["heldout"], samples=samples, nfe=nfe, seed=seed,
                              out=out / "evaluation.json")
    table = comparison_table(evaluation)
    log("")
    log(f"Held-out forecasts: {evaluation['windows']} windows of {size.horizon} rows after {size.history} rows of "
        f"history, in the data's units (lower is better; coverage: about 0.5 and 0.9 when calibrated):")
    for line in table:
        log(line)

    plot = _plot(model_dir, heldout, size.horizon, out / "forecast.png", samples=samples, nfe=nfe, seed=seed)
    seconds = time.monotonic() - started
    log(f"\nPlot: {plot}\nModel: {model_dir}\nScores: {out / 'evaluation.json'}\n"
        f"Done in {_clock(seconds)} (training {_clock(summary.seconds)}, {threads} torch thread(s)).")
    return DemoResult(evaluation, table, model_dir, plot, data, summary.steps, summary.seconds, seconds)


if __name__ == "__main__":
    run_demo()
