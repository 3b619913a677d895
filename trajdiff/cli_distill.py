"""The ``distill`` command: a trained model -> a few-step student in a normal model folder (`trajdiff.api.distill`)."""

from __future__ import annotations

from pathlib import Path

import typer

from trajdiff.cli_options import LOAD_OPTION_HELP, THREADS_HELP, fail, parse_options, set_threads
from trajdiff.errors import TrajdiffError


def distill(
    model: Path = typer.Option(..., help="The teacher: a model directory written by `trajdiff train`."),
    out: Path = typer.Option(..., help="Model directory to write the student to (a normal model folder)."),
    nfe: int = typer.Option(2, help="Network evaluations the student samples in (1 to 4 are typical); its "
                            "default for forecast, evaluate and the rest."),
    steps: int = typer.Option(None, help="Student training steps (default 2,500)."),
    minutes: float = typer.Option(None, help="Stop after this many minutes."),
    data: Path = typer.Option(None, help="Windows to start the teacher's trajectories from (a file the domain "
                              "reads, e.g. the training data); default: the teacher's own samples."),
    load_option: list[str] = typer.Option([], help=LOAD_OPTION_HELP),
    method: str = typer.Option("trajectory", help="trajectory (regress the ends of the teacher's ODE "
                               "trajectories) or consistency (consistency distillation)."),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(False, help="Replace a model that --out already holds."),
    device: str = typer.Option(None, help="cpu (default), cuda or cuda:N."),
    threads: int = typer.Option(0, min=0, help=THREADS_HELP),
) -> None:
    """Distil a trained model into a student that samples in --nfe network evaluations, keeping per-token noise
    levels: clean history, plans, inpainting and guides work with it as with the teacher."""
    set_threads(threads)
    from trajdiff import api

    try:
        summary = api.distill(model, out, nfe=nfe, steps=steps, minutes=minutes, data=data,
                              load_options=parse_options(load_option), method=method, seed=seed, device=device,
                              overwrite=overwrite)
    except TrajdiffError as error:
        fail(error)
    typer.echo(f"distilled {summary.teacher} ({summary.method}, {summary.steps} steps in {summary.seconds:.0f} s on "
               f"{summary.windows}, final loss {summary.final_loss:.4f}) -> {summary.model_dir}: samples in "
               f"{summary.nfe} network evaluation(s)")
