"""Parsing the command line's repeatable KEY=VALUE options, shared help texts, and the lines that report what
each command read."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer


def fail(error: Exception | str) -> NoReturn:
    """Ends a command with ``error: MESSAGE`` on stderr and exit code 2."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def parse_options(values: list[str], flag: str = "--load-option", example: str = "freq=1h or split_columns=true"
                   ) -> dict[str, object]:
    """KEY=VALUE pairs for the domain's loader (or encoder); values are read as JSON where they parse
    (true, 3, "1h")."""
    import json

    options: dict[str, object] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            typer.secho(f"error: {flag} {value!r}: write KEY=VALUE, e.g. {example}", fg="red", err=True)
            raise typer.Exit(code=2)
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


PLAN_HELP = ("How a window's unknown tokens are denoised: full (all at one noise level), autoregressive (one "
             "chunk after another), pyramid (near future cleaner than far: Diffusion Forcing) or rolling (a "
             "staircase of levels: Rolling Diffusion).")
PLAN_OPTION_HELP = ("Plan option KEY=VALUE (repeatable): chunk=N (tokens per chunk), delay=R (pyramid), "
                    "window=N (rolling).")
HORIZON_HELP = ("Rows to forecast (default: the trained horizon). Longer horizons roll the trained window forward, "
                "the rows so far held clean as history.")
ROLL_STRIDE_HELP = "Past the trained horizon: rows kept from each window before it rolls on (default: all of them)."
LOAD_OPTION_HELP = "Loader option KEY=VALUE for the domain (repeatable), e.g. freq=1h, split_columns=true."


COST_HELP = ("Guide with a cost: NAME or NAME=SCALE (repeatable; SCALE from 0 to 100, default 1). The scale is the "
             "step the cost's gradient takes on the normalized sample (unit spread) at every network evaluation: "
             "0 is off, about 0.01-10 is useful; larger steps overshoot and diverge, so more than 100 is refused.")


def parse_costs(values: list[str]) -> dict[str, float]:
    """``--cost NAME[=SCALE]`` values -> {name: scale}, each scale checked (`trajdiff.api.checks.check_costs`)."""
    from trajdiff.api.checks import check_costs
    from trajdiff.errors import ConfigError

    costs = {}
    for value in values:
        name, _, scale = value.partition("=")
        try:
            costs.update(check_costs({name: float(scale) if scale else 1.0}))
        except ValueError as error:  # not a number (float) or out of range (ConfigError)
            reason = error if isinstance(error, ConfigError) else "write NAME or NAME=SCALE, e.g. smoothness=0.5"
            typer.secho(f"error: --cost {value!r}: {reason}", fg="red", err=True)
            raise typer.Exit(code=2) from None
    return costs


THREADS_PER_CPU = 4
THREADS_HELP = ("torch threads (0 = torch's default; at most 4 per CPU). On a machine busy with other work, 1 can "
                "be faster than 2; results are the same for the same thread count.")


def set_threads(threads: int) -> None:
    """Sets torch's thread count when one is given (0 keeps torch's default). More than `THREADS_PER_CPU` per CPU
    is refused: no faster, and a number in the thousands exhausts the threads the system allows (a crash)."""
    import os

    most = THREADS_PER_CPU * (os.cpu_count() or 1)
    if threads > most:
        fail(f"--threads {threads}: at most {most} on this machine ({THREADS_PER_CPU} per CPU, {os.cpu_count()} "
             "CPUs); 0 takes torch's default")
    if threads:
        import torch

        torch.set_num_threads(threads)


class ReadLines(logging.Handler):
    """Collects trajdiff's informational lines during a command: what each loader read (rows, entities, time span,
    the box the positions span), columns reordered to a model's order. A command that succeeds prints them on
    stderr when it ends; one that fails drops them, so that its error stays one line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


READ_LINES = ReadLines()


def report_what_is_read(ctx: typer.Context) -> None:
    """Collects the ``trajdiff`` loggers' INFO lines while the command of ``ctx`` runs; prints them when it ends
    without an error (an exit status 0), drops them when it fails."""
    logger = logging.getLogger("trajdiff")
    level = logger.level
    READ_LINES.lines.clear()
    logger.addHandler(READ_LINES)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))

    def finish() -> None:  # runs as the command's context closes, with the exception that ends it, if any
        logger.removeHandler(READ_LINES)
        logger.setLevel(level)
        error = sys.exc_info()[1]
        if error is None or (isinstance(error, typer.Exit) and error.exit_code == 0):
            for line in READ_LINES.lines:
                typer.echo(line, err=True)
        READ_LINES.lines.clear()

    ctx.call_on_close(finish)
