"""The rl plugin's commands: ``trajdiff plan`` (closed-loop planning in a gymnasium environment), ``fit-value`` and
``fit-inverse`` (a planner's value function and inverse dynamics).

Added to the CLI through the ``trajdiff_commands`` hook; models are loaded through the `CommandContext`
the CLI lends, so this module imports neither `trajdiff.api` nor `trajdiff.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from trajdiff.errors import ConfigError, TrajdiffError
from trajdiff.plugins.spec import CommandContext


def add_commands(app: typer.Typer, cli: CommandContext) -> None:
    """Adds ``plan``, ``fit-value`` and ``fit-inverse`` to ``app``."""

    @app.command()
    def plan(
        model: Path = typer.Option(..., help="Model directory trained with `trajdiff train --domain rl`."),
        env: str = typer.Option(..., help="Gymnasium environment id, e.g. PointMaze_UMaze-v3 or Pendulum-v1."),
        episodes: int = typer.Option(20, min=1, help="Evaluation episodes (reset seeds SEED, SEED+1, ...)."),
        seed: int = typer.Option(0, help="First reset seed."),
        replan_every: int = typer.Option(8, min=1, help="Environment steps between replans."),
        nfe: int = typer.Option(20, min=1, help="Network evaluations of a plan from scratch."),
        warm_nfe: int = typer.Option(4, min=1, help="Network evaluations of a warm-started replan."),
        warm_level: float = typer.Option(0.8, min=0.01, max=1.0, help="Noise level a warm start re-noises to."),
        no_warm_start: bool = typer.Option(False, "--no-warm-start", help="Plan every time from pure noise."),
        candidates: int = typer.Option(12, min=1, help="Plans sampled per decision; the plausible one reaching "
                                                       "the goal first wins."),
        goal_guidance: float = typer.Option(10.0, min=0.0, help="Strength of the pull towards the goal "
                                                                "(reconstruction guidance through the network; "
                                                                "0 = inpainting only)."),
        speed_margin: float = typer.Option(1.5, min=0.01, help="A plan moving faster than this times the data's "
                                                                "fastest token-to-token change is implausible."),
        support_check: bool = typer.Option(False, "--support-check/--no-support-check",
                                           help="A plan whose path leaves the positions the data visited "
                                                "(through a wall) is implausible."),
        support_guidance: float = typer.Option(0.05, min=0.0, help="Strength of the pull of planned paths back into "
                                                                  "the positions the data visited (0 = off)."),
        controller: str = typer.Option("auto", help="auto, states (track planned positions), actions (execute them) "
                                                    "or inverse (the action of the first planned transition, from "
                                                    "the model's inverse dynamics: `trajdiff fit-inverse`); auto is "
                                                    "inverse for a --target-return with inverse dynamics."),
        lookahead: int = typer.Option(20, min=0, help="States controller: aim this many steps ahead on the plan."),
        render: Path = typer.Option(None, help="Draw the first episode: .gif (frames) or .png (start, goal, path "
                                            "and the plans made at a few replanning points of it)."),
        out: Path = typer.Option(None, help="Results JSON (default: MODEL/plan-ENV.json)."),
        guide: str = typer.Option("none", help="none, or value: climb the value function fitted with "
                                               "`trajdiff fit-value` (MODEL/value.safetensors)."),
        scale: float = typer.Option(0.1, min=0.0, help="Strength of the value guidance (--guide value)."),
        target_return: float = typer.Option(None, help="Return-conditioned models (`trajdiff train --condition "
                                                       "return`): the discounted return-to-go to plan for, normalized "
                                                       "by the training data's range: 0 = its worst window, 1 = its "
                                                       "best (e.g. 0.9; above 1 extrapolates)."),
        cfg_scale: float = typer.Option(1.0, help="Classifier-free guidance scale towards --target-return (1 = the "
                                                  "conditional model, larger pushes harder; >= 0)."),
        plan: str = typer.Option("full", "--plan", help=cli.plan_help),
        plan_option: list[str] = typer.Option([], help=cli.plan_option_help),
    ) -> None:
        """Plan closed-loop in a gymnasium environment; print returns, normalized scores, success and timing."""
        from trajdiff.plugins.rl.envs import require_rl
        from trajdiff.plugins.rl.inverse import has_inverse, load_inverse
        from trajdiff.plugins.rl.planner import PlannerConfig
        from trajdiff.plugins.rl.rollout import run_planner
        from trajdiff.plugins.rl.value import load_value

        target = out or model / f"plan-{env}.json"
        if guide not in ("none", "value"):
            cli.fail(ConfigError(f"--guide must be 'none' or 'value', got {guide!r}"))
        try:
            require_rl()
            config = PlannerConfig(nfe=nfe, warm_nfe=warm_nfe, warm_level=warm_level, warm_start=not no_warm_start,
                                   replan_every=replan_every, candidates=candidates, controller=controller,
                                   lookahead=lookahead, goal_guidance=goal_guidance, speed_margin=speed_margin,
                                   support_check=support_check, support_guidance=support_guidance, seed=seed,
                                   plan=plan, plan_options=cli.parse_options(plan_option, "--plan-option",
                                                                             "chunk=4 or delay=2"),
                                   value_guidance=scale if guide == "value" else 0.0, target_return=target_return,
                                   cfg_scale=cfg_scale)
            value = load_value(model) if guide == "value" else None
            wants_inverse = controller == "inverse" or (controller == "auto" and target_return is not None)
            inverse = load_inverse(model) if wants_inverse and (controller == "inverse" or has_inverse(model)) else None
            loaded = cli.load_model(model, domain="rl")
            result = run_planner(loaded, env, episodes=episodes, seed=seed, config=config, render=render,
                                 out=target, progress=True, value=value, inverse=inverse)
        except TrajdiffError as error:
            cli.fail(error)
        typer.echo(f"{env}: return {result['return_mean']:.1f} +- {result['return_se']:.1f} over {episodes} "
                   "episodes")
        if result["score_mean"] is not None:
            typer.echo(f"normalized score {result['score_mean']:.1f} +- {result['score_se']:.1f} "
                       f"(expert 100, random 0; data set {result['dataset']})")
        if result["success_rate"] is not None:
            typer.echo(f"success rate {result['success_rate']:.2f}")
        typer.echo(f"{result['ms_per_decision']:.1f} ms per decision ({result['controller']} controller) -> "
                   f"{target}")

    @app.command("fit-value")
    def fit_value_command(
        model: Path = typer.Option(..., help="Model directory trained with `trajdiff train --domain rl`."),
        data: str = typer.Option(None, help="Minari data set id or folder (default: the model's own data set)."),
        gamma: float = typer.Option(0.99, min=0.0, max=1.0, help="Discount of the returns the value predicts."),
        steps: int = typer.Option(3000, min=1, help="Training steps (batches of 256 windows)."),
        minutes: float = typer.Option(None, min=0.0, help="Stop after this many minutes."),
    ) -> None:
        """Fit the value of a planner's plans on a data set's discounted returns (for --guide value)."""
        from trajdiff.plugins.rl.envs import require_rl
        from trajdiff.plugins.rl.value import fit_value

        try:
            require_rl()
            loaded, source = _model_and_data(cli, model, data)
            record = fit_value(model, loaded, source, gamma=gamma, steps=steps, minutes=minutes)
        except TrajdiffError as error:
            cli.fail(error)
        loss = record["validation_loss"]
        typer.echo(f"value of {record['windows']} windows of {source}: {record['steps']} steps, validation loss "
                   f"{'n/a' if loss is None else f'{loss:.3f}'} (standardized) -> {model / 'value.safetensors'}")

    @app.command("fit-inverse")
    def fit_inverse_command(
        model: Path = typer.Option(..., help="Model directory trained with `trajdiff train --domain rl`."),
        data: str = typer.Option(None, help="Minari data set id or folder (default: the model's own data set)."),
        steps: int = typer.Option(3000, min=1, help="Training steps (batches of 256 transitions)."),
        minutes: float = typer.Option(None, min=0.0, help="Stop after this many minutes."),
    ) -> None:
        """Fit inverse dynamics a_t = f(s_t, s_t+1) on a data set, for planners that act on planned states."""
        from trajdiff.plugins.rl.envs import require_rl
        from trajdiff.plugins.rl.inverse import fit_inverse

        try:
            require_rl()
            _, source = _model_and_data(cli, model, data)
            record = fit_inverse(model, source, steps=steps, minutes=minutes)
        except TrajdiffError as error:
            cli.fail(error)
        typer.echo(f"inverse dynamics on {record['transitions']} transitions of {source}: {record['steps']} steps, "
                   f"held-out error {record.get('held_out_mse', float('nan')):.4f} (mean action "
                   f"{record.get('mean_action_mse', float('nan')):.4f}) -> {model / 'inverse.safetensors'}")


def _model_and_data(cli: CommandContext, model: Path, data: str | None) -> tuple[Any, str]:
    """The rl model in ``model`` and the data set to fit on: ``data``, else the one its encoder was trained on."""
    loaded = cli.load_model(model, domain="rl")
    source = data or loaded.encoder.source.get("dataset_id")
    if not source:
        raise ConfigError(f"{model}'s encoder does not record its data set; pass --data")
    return loaded, source
