"""The ``trajdiff`` command: a thin shell over the Python API.

The commands here serve every domain; commands for one domain (rl's ``plan``, motion's ``sample``) come
from plugins through the ``trajdiff_commands`` hook, added once when this module builds the app.
"""

from __future__ import annotations

import os

# OpenMP threads that wait for work by spinning (libgomp's default) fight any other busy process for the
# cores: with one other process running on a 2-core machine, a planning decision took 436 ms instead of 8 ms
# and training ran at 1 step/s instead of 75. Waiting passively costs little when the machine is idle. Set
# before torch loads its OpenMP runtime, which reads the variable once; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from trajdiff import __version__
from trajdiff.cli_distill import distill
from trajdiff.cli_errors import DEBUG_HELP, ReportingGroup, set_debug
from trajdiff.cli_forecasting import FORECASTING_COMMANDS
from trajdiff.cli_options import (
    LOAD_OPTION_HELP,
    PLAN_HELP,
    PLAN_OPTION_HELP,
    THREADS_HELP,
    fail,
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
    cls=ReportingGroup,  # an error ends a command with one line and an exit status (see trajdiff.cli_errors)
    name="trajdiff",
    help="Temporal diffusion for trajectories, motion, plans and time series.",
    epilog="Exit status: 0 done; 2 wrong input (the message says what to change); 3 a plugin's or trajdiff's own "
           "fault (--debug prints its traceback); 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(ctx: typer.Context, debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP)) -> None:
    set_debug(ctx, debug)
    report_what_is_read(ctx)  # what each command read, printed when it succeeds


_fail = fail
for _command in (*FORECASTING_COMMANDS, distill):  # forecast, evaluate, calibrate, impute, anomalies; distill
    app.command()(_command)


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
    from trajdiff.demo import run_demo

    set_threads(threads)
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
    condition: str = typer.Option(None, help="Condition the model on a quantity the domain computes per window, "
                                             "for classifier-free guidance, e.g. rl's `return` (then `trajdiff plan "
                                             "--target-return`)."),
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
                            encoder=encoder, load_options=parse_options(load_option), recipe=recipe, device=device,
                            condition=condition)
    except TrajdiffError as error:
        _fail(error)
    typer.echo(f"trained {summary.domain} model for {summary.steps} steps in {summary.seconds:.0f} s on "
               f"{summary.windows} windows (final loss {summary.final_loss:.4f}) -> {summary.model_dir}")
    if summary.skipped_episodes:
        typer.echo(f"{len(summary.skipped_episodes)} episode(s) too short for one window were not used")


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
