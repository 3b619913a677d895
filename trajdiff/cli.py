"""The ``trajdiff`` command: a thin shell over the Python API."""

from __future__ import annotations

from pathlib import Path

import typer

from trajdiff import __version__
from trajdiff.errors import TrajdiffError

app = typer.Typer(
    name="trajdiff",
    help="Temporal diffusion for trajectories, motion, plans and time series.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(error: TrajdiffError) -> None:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print the trajdiff version."""
    typer.echo(__version__)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for the trained model and the forecast plot."),
    minutes: float = typer.Option(2.0, min=0.05, help="Upper bound on training time in minutes."),
    steps: int = typer.Option(3000, min=1, help="Upper bound on training steps."),
    samples: int = typer.Option(16, min=1, help="Forecast samples per held-out series."),
    nfe: int = typer.Option(20, min=1, help="Function evaluations per forecast (DPM-Solver++ steps)."),
    seed: int = typer.Option(0, help="Seed for data, training and sampling."),
    quick: bool = typer.Option(False, help="A smaller data set and model: a smoke run in seconds."),
    threads: int = typer.Option(0, min=0, help="torch threads (0 = torch's default)."),
) -> None:
    """Generate Lorenz-63 data, train a small model, forecast held-out series, compare with baselines, plot."""
    import torch

    from trajdiff.demo import run_demo

    if threads:
        torch.set_num_threads(threads)
    try:
        run_demo(out, train_minutes=minutes, steps=steps, samples=samples, nfe=nfe, seed=seed, quick=quick,
                 log=typer.echo)
    except TrajdiffError as error:
        _fail(error)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
