"""The ``trajdiff`` command: a thin shell over the Python API.

The commands here serve every domain; commands for one domain (rl's ``plan``, motion's ``sample``) come
from plugins through the ``trajdiff_commands`` hook, added once when this module builds the app.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from trajdiff import __version__
from trajdiff.cli_options import (
    COST_HELP,
    HORIZON_HELP,
    LOAD_OPTION_HELP,
    PLAN_HELP,
    PLAN_OPTION_HELP,
    ROLL_STRIDE_HELP,
    THREADS_HELP,
    parse_costs,
    parse_options,
    report_what_is_read,
    set_threads,
)
from trajdiff.errors import TrajdiffError
from trajdiff.memory import lean_allocators

lean_allocators()  # freed memory goes back to the system (before pandas or pyarrow allocate)
if TYPE_CHECKING:
    from trajdiff.api import LoadedModel
    from trajdiff.plugins.manager import Plugins

app = typer.Typer(
    name="trajdiff",
    help="Temporal diffusion for trajectories, motion, plans and time series.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(report_what_is_read)  # what each command read, printed when it succeeds


def _fail(error: Exception) -> NoReturn:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print the trajdiff version."""
    typer.echo(__version__)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for the generated data, the trained model, the "
                             "scores (evaluation.json) and the forecast plot."),
    steps: int = typer.Option(None, min=1, help="Training steps, a fixed number so that the scores reproduce "
                              "(default 3,000; 200 with --quick)."),
    samples: int = typer.Option(16, min=1, help="Forecast samples per held-out window."),
    nfe: int = typer.Option(20, min=1, help="Network evaluations per forecast (DPM-Solver++ steps)."),
    seed: int = typer.Option(0, help="Seed for data, training and sampling."),
    quick: bool = typer.Option(False, help="Less data, a smaller model and 200 steps: a smoke run in seconds."),
    threads: int = typer.Option(2, min=0, help="torch threads (0 = torch's default). The scores are the same "
                                "for the same torch build and thread count."),
) -> None:
    """Generate Lorenz-63 series, train a timeseries model on them for a fixed number of steps, evaluate it on
    held-out series beside the domain's baselines (same windows), plot forecasts."""
    import torch

    from trajdiff.demo import run_demo

    if threads:
        torch.set_num_threads(threads)
    try:
        run_demo(out, steps=steps, samples=samples, nfe=nfe, seed=seed, quick=quick, log=typer.echo)
    except TrajdiffError as error:
        _fail(error)


@app.command()
def plugins() -> None:
    """List the domains, costs and data sets that installed plugins provide, names that several plugins claim
    (pick one as PACKAGE:NAME), and plugins that failed."""
    from trajdiff.plugins.manager import get_plugins

    registry = get_plugins()
    rows = registry.contributions()
    for kind, title in (("domain", "Domains"), ("cost", "Costs"), ("dataset", "Data sets")):
        typer.secho(title, bold=True)
        chosen = [row for row in rows if row.kind == kind]
        if not chosen:
            typer.echo("  (none)")
        for row in chosen:
            where = f"[{row.plugin} from {row.package}]"
            target = f" (domain {row.domain})" if kind != "domain" and row.domain else ""
            summary = f"  {row.summary}" if row.summary else ""
            typer.echo(f"  {row.choice or row.name:<18}{where}{target}{summary}")
            if kind == "domain":
                for recipe, what in registry.domain(row.choice or row.name).recipes().items():
                    typer.echo(f"  {'':<18}--recipe {recipe}: {what.description}")
    collisions = registry.collisions()
    if collisions:
        typer.secho("Names several plugins provide (name one as PACKAGE:NAME)", bold=True, fg=typer.colors.YELLOW)
        for collision in collisions:
            typer.echo(f"  {collision}")
    if registry.failures:
        typer.secho("Plugins that failed", bold=True, fg=typer.colors.YELLOW)
        for failure in registry.failures:
            typer.echo(f"  {failure}")
    if not registry.autoload:
        typer.echo("(third-party plugins not loaded: TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD is set)")


datasets_app = typer.Typer(help="Data sets the plugins can load or generate.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def datasets_list() -> None:
    """List named data sets: domain, licence, source or how they are generated."""
    from trajdiff.plugins.manager import get_plugins

    cards = get_plugins().datasets()
    if not cards:
        typer.echo("no data sets (no plugin provides any)")
    for name, card in sorted(cards.items()):
        how = "generated: trajdiff datasets make " + name if card.make else (card.source or card.obtain)
        typer.echo(f"{name:<16} domain={card.domain:<12} {card.summary}")
        typer.echo(f"{'':<16} {how}" + (f"  licence: {card.licence}" if card.licence else ""))


@datasets_app.command("make")
def datasets_make(
    name: str = typer.Argument(..., help="A generated data set from `trajdiff datasets list`."),
    out: Path = typer.Option(None, "--out", help="File to write (.csv or .parquet); for Minari data sets the "
                                                  "folder that holds them (default: MINARI_DATASETS_PATH)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Environment steps to collect (Minari data sets)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing Minari data set."),
) -> None:
    """Generate one of the project's own data sets: a file, or a Minari data set under MINARI_DATASETS_PATH."""
    import inspect

    from trajdiff.plugins.manager import get_plugins

    try:
        card = get_plugins().dataset(name)
        if card.make is None:
            raise_error = f"{name} is a real data set, not generated; obtain it from {card.source or card.obtain}"
            typer.secho(f"error: {raise_error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2)
        accepted = inspect.signature(card.make).parameters
        options = {key: value for key, value in (("steps", steps), ("overwrite", overwrite)) if value}
        unsupported = [f"--{key}" for key in options if key not in accepted and "kw" not in accepted]
        if unsupported:
            typer.secho(f"error: {name} does not take {', '.join(unsupported)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2)
        default_out = accepted["out"].default if "out" in accepted else inspect.Parameter.empty
        if out is None and default_out is inspect.Parameter.empty:
            typer.secho(f"error: {name} is written to a file: pass --out FILE (.csv or .parquet)",
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2)
        path = card.make(out, **options) if out is not None else card.make(**options)
    except TrajdiffError as error:
        _fail(error)
    typer.echo(f"wrote {path}")


@app.command()
def train(
    domain: str = typer.Option(..., help="Domain name (see `trajdiff plugins`)."),
    data: Path = typer.Option(..., help="Training data file in a format the domain reads."),
    out: Path = typer.Option(..., help="Model directory to write (config.json + safetensors)."),
    steps: int = typer.Option(None, min=1, help="Training steps (default: the domain's)."),
    minutes: float = typer.Option(None, min=0.01, help="Stop after this many minutes."),
    history: int = typer.Option(None, min=0, help="Observed rows per window (default: the domain's)."),
    horizon: int = typer.Option(None, min=1, help="Forecast rows per window (default: the domain's)."),
    batch_size: int = typer.Option(None, min=1, help="Windows per training step."),
    stride: int = typer.Option(None, min=1, help="Step between training windows."),
    seed: int = typer.Option(0, help="Random seed."),
    resume: bool = typer.Option(False, help="Continue training the model in --out from its last checkpoint (after a "
                                            "crash or kill, or to train longer); same data and options."),
    overwrite: bool = typer.Option(False, help="Replace a model that --out already holds."),
    recipe: str = typer.Option(None, help="One of the domain's own training recipes (`trajdiff plugins` lists "
                                          "them), e.g. motion's `stream` model for `trajdiff sample`."),
    device: str = typer.Option(None, help="cpu (default), cuda or cuda:N."),
    load_option: list[str] = typer.Option([], help=LOAD_OPTION_HELP),
    encoder_option: list[str] = typer.Option([], help="Encoder option KEY=VALUE for the domain (repeatable), e.g. "
                                                      "skip=8 (rl: every 8th state a token) or patch=8."),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Train a model for a domain on a data file."""
    set_threads(threads)
    from trajdiff import api

    encoder = parse_options(encoder_option, "--encoder-option", "skip=8 or patch=8") or None
    try:
        summary = api.train(domain, data, out, steps=steps, minutes=minutes, history=history, horizon=horizon,
                            batch_size=batch_size, stride=stride, seed=seed, resume=resume, overwrite=overwrite,
                            encoder=encoder, load_options=parse_options(load_option), recipe=recipe, device=device)
    except TrajdiffError as error:
        _fail(error)
    typer.echo(f"trained {summary.domain} model for {summary.steps} steps in {summary.seconds:.0f} s on "
               f"{summary.windows} windows (final loss {summary.final_loss:.4f}) -> {summary.model_dir}")
    if summary.skipped_episodes:
        typer.echo(f"{len(summary.skipped_episodes)} episode(s) too short for one window were not used")


@app.command()
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
) -> None:
    """Forecast every entity in a data file: one row per sample, entity and future step."""
    set_threads(threads)
    from trajdiff import api

    try:
        result = api.forecast(model, data, samples=samples, nfe=nfe, solver=solver, seed=seed, out=out, plot=plot,
                              costs=parse_costs(cost), load_options=parse_options(load_option), draws=draws,
                              antithetic=antithetic, calibrated=not uncalibrated, horizon=horizon,
                              roll_stride=roll_stride, plan=plan,
                              plan_options=parse_options(plan_option, "--plan-option", "chunk=2 or window=3"))
    except TrajdiffError as error:
        _fail(error)
    typer.echo(f"forecast {len(result.samples)} entit{'y' if len(result.samples) == 1 else 'ies'} "
               f"({len(result.table)} rows) in {result.seconds:.1f} s -> {out}" + (f", plot {plot}" if plot else ""))
    if result.skipped:
        typer.echo(f"{len(result.skipped)} entit(ies) with too little history were skipped: {result.skipped[:5]}")


@app.command()
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
        _fail(error)
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
               f"{result['nfe']} network evaluations per window:")
    table = comparison_table(result)  # the model beside the domain's baselines, when it has any
    for line in table or [f"  {name:<16}{value:.4f}" for name, value in result["metrics"].items()]:
        typer.echo(line)
    typer.echo(f"-> {target}")


@app.command()
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
        _fail(error)
    typer.echo(f"calibrated on {result['windows']} windows: median weight {result['median_weight']:.1f}, "
               f"spread x{result['spread_factor']:.2f}")
    typer.echo(f"  MSE of the median (per-column units) {result['mse_before']:.4f} -> {result['mse_after']:.4f}")
    typer.echo(f"  {result['level']:.0%} interval coverage {result['coverage_before']:.3f} -> "
               f"{result['coverage_after']:.3f}")
    typer.echo(f"-> {model / 'calibration.json'}")


@app.command()
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
        _fail(error)
    typer.echo(f"imputed {result.filled} missing cell(s) in {result.seconds:.1f} s -> {out}")
    if result.skipped:
        typer.echo(f"{len(result.skipped)} series shorter than the model window were skipped: {result.skipped[:5]}")


@app.command()
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
        _fail(error)
    top = result.table.nlargest(5, "score")
    typer.echo(f"scored {len(result.table)} time steps in {result.seconds:.1f} s -> {out}; highest:")
    for _, row in top.iterrows():
        typer.echo(f"  {row['entity']}  {row['time']}  {row['score']:.3f}")


def _load_model(model_dir: Path, domain: str | None = None, *, plugins: Plugins | None = None) -> LoadedModel:
    from trajdiff.api import load_model

    return load_model(model_dir, domain=domain, plugins=plugins)


def add_plugin_commands(target: typer.Typer, plugins: Plugins | None = None) -> dict[str, str]:
    """Adds the commands every plugin contributes through ``trajdiff_commands`` (rl's ``plan``, motion's
    ``sample``, a third party's own) to ``target``; returns command name -> plugin. The CLI itself knows no
    domain; a plugin that fails is listed by `trajdiff plugins`."""
    from trajdiff.plugins.manager import get_plugins
    from trajdiff.plugins.spec import CommandContext

    registry = plugins or get_plugins()
    context = CommandContext(load_model=functools.partial(_load_model, plugins=registry), fail=_fail,
                             parse_options=parse_options, plan_help=PLAN_HELP, plan_option_help=PLAN_OPTION_HELP)
    return registry.add_commands(target, context)


add_plugin_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
