"""The commands that forecast from a trained model and score it: forecast, evaluate, calibrate, impute, anomalies.

`trajdiff.cli` registers them on its app (`FORECASTING_COMMANDS`); each is a thin shell over one function of
`trajdiff.api`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from trajdiff.cli_options import (
    COST_HELP,
    HORIZON_HELP,
    LOAD_OPTION_HELP,
    PLAN_HELP,
    PLAN_OPTION_HELP,
    ROLL_STRIDE_HELP,
    THREADS_HELP,
    fail,
    parse_costs,
    parse_options,
    set_threads,
)
from trajdiff.errors import TrajdiffError


def forecast(
    model: Path = typer.Option(..., help="Model directory written by `trajdiff train`."),
    data: Path = typer.Option(..., help="Data whose continuation to forecast (every entity in it)."),
    out: Path = typer.Option(..., help="Output table: .csv or .parquet."),
    samples: int = typer.Option(None, min=1, help="Samples per entity (default: the domain's)."),
    draws: int = typer.Option(None, min=1, help="Draw this many samples per entity and keep --samples of them, "
                              "one per k-means cluster of where they end, so the kept ones cover distinct "
                              "outcomes (e.g. --samples 20 --draws 100 for best-of-20 scores)."),
    nfe: int = typer.Option(None, min=1, help="Network evaluations per window (a Heun step costs two)."),
    solver: str = typer.Option(None, help="ddpm, ddim, dpmpp2m, euler or heun."),
    antithetic: bool = typer.Option(False, help="Draw samples in mirrored noise pairs (z, -z): still draws from "
                                    "the model, with a steadier median and mean (needs an even number)."),
    uncalibrated: bool = typer.Option(False, help="Ignore the calibration stored by `trajdiff calibrate`."),
    plot: Path = typer.Option(None, help="Also write a plot (.png)."),
    cost: list[str] = typer.Option([], help=COST_HELP),
    seed: int = typer.Option(0, help="Random seed."),
    load_option: list[str] = typer.Option([], help=LOAD_OPTION_HELP),
    horizon: int = typer.Option(None, min=1, help=HORIZON_HELP),
    roll_stride: int = typer.Option(None, min=1, help=ROLL_STRIDE_HELP),
    plan: str = typer.Option("full", help=PLAN_HELP),
    plan_option: list[str] = typer.Option([], help=PLAN_OPTION_HELP),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
    ray: str = typer.Option(None, help="Forecast the partitions on a Ray cluster: its address, or auto (the "
                            "cluster this machine is in, else a new local one); needs trajdiff[ray]."),
    partition_by: str = typer.Option(None, help="Split one large CSV/Parquet file into partitions by this column "
                                     "(the entity), a chunk of rows at a time, and forecast one at a time."),
    precision: str = typer.Option("float32", help="float32, or bfloat16: the network's matrix products in "
                                  "bfloat16, faster on CPUs with bfloat16 units (AMX, AVX512-BF16), slower elsewhere."),
) -> None:
    """Forecast every entity in a data file, or a folder of partition files (one at a time, bounded memory; on
    Ray with --ray): one row per sample, entity and future step."""
    set_threads(threads)
    from trajdiff import api

    try:
        result = api.forecast(model, data, samples=samples, nfe=nfe, solver=solver, seed=seed, out=out, plot=plot,
                              costs=parse_costs(cost), load_options=parse_options(load_option), draws=draws,
                              antithetic=antithetic, calibrated=not uncalibrated, horizon=horizon,
                              roll_stride=roll_stride, plan=plan, ray=ray, partition_by=partition_by,
                              precision=precision,
                              plan_options=parse_options(plan_option, "--plan-option", "chunk=2 or window=3"))
    except TrajdiffError as error:
        fail(error)
    parts = f", {result.partitions} partitions" if result.partitions > 1 else ""
    parts += f" on {result.workers} Ray workers" if ray else ""
    typer.echo(f"forecast {result.entities} entit{'y' if result.entities == 1 else 'ies'} ({result.rows} rows{parts}) "
               f"in {result.seconds:.1f} s -> {out}" + (f", plot {plot}" if plot else ""))
    if result.skipped:
        typer.echo(f"{len(result.skipped)} entit(ies) with too little history were skipped: {result.skipped[:5]}")


def evaluate(
    model: Path = typer.Option(..., help="Model directory written by `trajdiff train`."),
    data: Path = typer.Option(..., help="Held-out data with true futures."),
    out: Path = typer.Option(None, help="Metrics JSON to write (default: MODEL/evaluation.json)."),
    samples: int = typer.Option(None, min=1, help="Samples per window."),
    draws: int = typer.Option(None, min=1, help="Draw this many samples per window and keep --samples of them, "
                              "one per k-means cluster of where they end, so the kept ones cover distinct "
                              "outcomes (e.g. --samples 20 --draws 100 for best-of-20 scores)."),
    nfe: int = typer.Option(None, min=1, help="Network evaluations per window (a Heun step costs two)."),
    antithetic: bool = typer.Option(False, help="Draw samples in mirrored noise pairs (z, -z): still draws from "
                                    "the model, with a steadier median and mean (needs an even number)."),
    stride: int = typer.Option(None, min=1, help="Step between evaluation windows (default: the horizon)."),
    max_windows: int = typer.Option(None, min=1, help="Evaluate at most this many windows, evenly spread."),
    uncalibrated: bool = typer.Option(False, help="Ignore the calibration stored by `trajdiff calibrate`."),
    seed: int = typer.Option(0, help="Random seed."),
    load_option: list[str] = typer.Option([], help=LOAD_OPTION_HELP),
    horizon: int = typer.Option(None, min=1, help=HORIZON_HELP),
    plan: str = typer.Option("full", help=PLAN_HELP),
    plan_option: list[str] = typer.Option([], help=PLAN_OPTION_HELP),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Backtest a model on data with known futures; print the domain's metrics beside its baselines (constant
    velocity, last value ...) on the same windows, and write them as JSON."""
    set_threads(threads)
    from trajdiff import api
    from trajdiff.api.baselines import comparison_table

    target = out or model / "evaluation.json"
    try:
        result = api.evaluate(model, data, samples=samples, draws=draws, nfe=nfe, stride=stride,
                              max_windows=max_windows, seed=seed, out=target, load_options=parse_options(load_option),
                              antithetic=antithetic, calibrated=not uncalibrated, horizon=horizon, plan=plan,
                              plan_options=parse_options(plan_option, "--plan-option", "chunk=2 or window=3"))
    except TrajdiffError as error:
        fail(error)
    drawn = f" (of {result['draws']} drawn)" if result["draws"] > result["samples"] else ""
    drawn += ", antithetic pairs" if result["antithetic"] else ""
    calibration = result["calibration"]
    drawn += (f", calibrated (median weight {calibration['median_weight']:.1f}, spread x"
              f"{calibration['spread_factor']:.2f})" if calibration else "")
    if result["horizon"] != result["trained_horizon"]:
        drawn += (f", {result['horizon']} rows ahead (trained for {result['trained_horizon']}: rolled forward"
                  + (", uncalibrated" if result["calibration"] is None and not uncalibrated else "") + ")")
    drawn += f", plan {result['plan']}" if result["plan"] != "full" else ""
    typer.echo(f"{result['domain']} model on {result['windows']} windows, {result['samples']} samples{drawn}, "
               f"{result['nfe']} network evaluations per window; scores in the data's units:")
    table = comparison_table(result)  # the model beside the domain's baselines, when it has any
    for line in table or [f"  {name:<16}{value:.4f}" for name, value in result["metrics"].items()]:
        typer.echo(line)
    typer.echo(f"-> {target}")


def calibrate(
    model: Path = typer.Option(..., help="Model directory written by `trajdiff train`."),
    data: Path = typer.Option(..., help="Held-out data (a validation period the model was not trained on)."),
    samples: int = typer.Option(None, min=2, help="Samples per window (default: the domain's)."),
    nfe: int = typer.Option(None, min=1, help="Network evaluations per window (a Heun step costs two)."),
    stride: int = typer.Option(None, min=1, help="Step between windows (default: the horizon)."),
    max_windows: int = typer.Option(None, min=10, help="Use at most this many windows, evenly spread."),
    level: float = typer.Option(0.9, help="Interval whose coverage the spread factor sets (0 < level < 1)."),
    spread: bool = typer.Option(True, help="Fit the spread factor too (--no-spread keeps the model's spread)."),
    antithetic: bool = typer.Option(False, help="Draw samples in mirrored noise pairs (needs an even number)."),
    seed: int = typer.Option(0, help="Random seed."),
    load_option: list[str] = typer.Option([], help=LOAD_OPTION_HELP),
    plan: str = typer.Option("full", help=PLAN_HELP),
    plan_option: list[str] = typer.Option([], help=PLAN_OPTION_HELP),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Calibrate a model's samples on held-out data: how far to trust its median against the encoder's base
    forecast, and how wide to spread; forecast and evaluate apply it from then on (--uncalibrated: not)."""
    set_threads(threads)
    from trajdiff import api

    try:
        result = api.calibrate(model, data, samples=samples, nfe=nfe, stride=stride, max_windows=max_windows,
                               seed=seed, level=level, spread=spread, antithetic=antithetic,
                               load_options=parse_options(load_option), plan=plan,
                               plan_options=parse_options(plan_option, "--plan-option", "chunk=2 or window=3"))
    except TrajdiffError as error:
        fail(error)
    typer.echo(f"calibrated on {result['windows']} windows: median weight {result['median_weight']:.1f}, "
               f"spread x{result['spread_factor']:.2f}")
    typer.echo(f"  MSE of the median in the data's units {result['mse_before']:.4f} -> {result['mse_after']:.4f}")
    typer.echo(f"  {result['level']:.0%} interval coverage {result['coverage_before']:.3f} -> "
               f"{result['coverage_after']:.3f}")
    typer.echo(f"-> {model / 'calibration.json'}")


def impute(
    model: Path = typer.Option(..., help="Model directory written by `trajdiff train`."),
    data: Path = typer.Option(..., help="Data with missing cells (empty, NA or NaN)."),
    out: Path = typer.Option(..., help="Completed table: .csv or .parquet."),
    samples: int = typer.Option(10, min=1, help="Samples per window; missing cells take their median."),
    nfe: int = typer.Option(None, min=1, help="Network evaluations per window (a Heun step costs two)."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Fill missing cells by inpainting the observed ones; observed values are kept as they are."""
    set_threads(threads)
    from trajdiff.api import impute as run

    try:
        result = run(model, data, samples=samples, nfe=nfe, seed=seed, out=out)
    except TrajdiffError as error:
        fail(error)
    typer.echo(f"imputed {result.filled} missing cell(s) in {result.seconds:.1f} s -> {out}")
    if result.skipped:
        typer.echo(f"{len(result.skipped)} series shorter than the model window were skipped: {result.skipped[:5]}")


def anomalies(
    model: Path = typer.Option(..., help="Model directory written by `trajdiff train`."),
    data: Path = typer.Option(..., help="Data to score."),
    out: Path = typer.Option(..., help="Scores table (.csv or .parquet): a score per time step and column."),
    samples: int = typer.Option(4, min=1, help="Samples per window."),
    nfe: int = typer.Option(None, min=1, help="Network evaluations per window (a Heun step costs two)."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Anomaly scores: how far each observed value lies from its imputation when hidden (ImDiffusion)."""
    set_threads(threads)
    from trajdiff.api import anomaly_scores

    try:
        result = anomaly_scores(model, data, samples=samples, nfe=nfe, seed=seed, out=out)
    except TrajdiffError as error:
        fail(error)
    top = result.table.nlargest(5, "score")
    typer.echo(f"scored {len(result.table)} time steps in {result.seconds:.1f} s -> {out}; highest:")
    for _, row in top.iterrows():
        typer.echo(f"  {row['entity']}  {row['time']}  {row['score']:.3f}")


FORECASTING_COMMANDS = (forecast, evaluate, calibrate, impute, anomalies)
