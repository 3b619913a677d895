"""The motion plugin's command, ``trajdiff sample``: endless motion synthesis through the rolling plan.

Added to the CLI through the ``trajdiff_commands`` hook; models are loaded through the `CommandContext`
the CLI lends, so this module imports neither `trajdiff.api` nor `trajdiff.cli`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from trajdiff.errors import ConfigError, TrajdiffError
from trajdiff.plugins.spec import CommandContext


def add_commands(app: typer.Typer, cli: CommandContext) -> None:
    """Adds ``sample`` to ``app``."""

    @app.command()
    def sample(
        model: Path = typer.Option(..., help="Model directory (for motion: trained with its rolling/label recipe)."),
        seconds: float = typer.Option(10.0, min=0.1, help="Length of each generated sequence in seconds."),
        out: Path = typer.Option(..., help="Output file in a format the domain writes (motion: .bvh, .csv, .gif, .mp4, "
                                           ".png)."),
        domain: str = typer.Option(None, help="Check that the model was trained for this domain."),
        label: str = typer.Option(None, help="Condition on a label the model knows (motion: walk, run, dance, ...)."),
        guidance: float = typer.Option(2.0, help="Classifier-free guidance scale (1 = plain conditional model)."),
        samples: int = typer.Option(1, min=1, help="Sequences to generate."),
        data: Path = typer.Option(None, help="Seed the generation with the start of a clip in this data."),
        seed: int = typer.Option(0, help="Random seed."),
        plan: str = typer.Option("rolling", "--plan", help="rolling: the only plan that generates without end "
                                                            "(Rolling Diffusion); options below."),
        plan_option: list[str] = typer.Option([], help="Plan option KEY=VALUE: substeps=N (solver steps per token "
                                                       "that leaves the window; default 2)."),
    ) -> None:
        """Generate motion of any length through the rolling plan (a motion model trained with --recipe stream)."""
        from trajdiff.plugins.motion.domain import MotionDomain

        try:
            if plan != "rolling":
                raise ConfigError(f"`trajdiff sample` generates without end, which only the rolling plan does; got "
                                  f"--plan {plan} (use forecast for the other plans)")
            options = cli.parse_options(plan_option, "--plan-option", "substeps=4")
            unknown = sorted(set(options) - {"substeps"})
            if unknown:
                raise ConfigError(f"the rolling plan of `trajdiff sample` takes the option substeps, not {unknown}")
            substeps = options.get("substeps", 2)
            if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
                raise ConfigError(f"--plan-option substeps must be a whole number >= 1, got {substeps!r}")
            loaded = cli.load_model(model, domain=domain)
            if not isinstance(loaded.domain, MotionDomain):
                raise ConfigError(f"domain {loaded.domain.name!r} does not support `trajdiff sample`; use forecast")
            result = loaded.domain.synthesize(loaded, seconds=seconds, label=label, samples=samples,
                                              guidance=guidance, seed=seed, data=data, out=out, substeps=substeps)
        except TrajdiffError as error:
            cli.fail(error)
        typer.echo(f"generated {samples} sequence(s) of {seconds:g} s ({result.shape[1]} frames) -> {out}")
