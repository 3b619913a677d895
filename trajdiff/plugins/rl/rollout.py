"""Closed-loop evaluation of a planner: returns, Minari-normalized scores, success, decision time."""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.errors import ConfigError
from trajdiff.plotting import pyplot, save_figure
from trajdiff.plugins.rl.envs import make_env, require_rl
from trajdiff.plugins.rl.planner import Planner, PlannerConfig


def environment_for(env_id: str, source: dict[str, Any], render: bool = False) -> tuple[Any, bool]:
    """The environment to plan in: the data set's evaluation environment (fixed goal, as the reference
    scores were computed) when ``env_id`` is its id, else ``gymnasium.make(env_id)``. Returns
    (env, whether it is the data set's evaluation environment)."""
    kwargs = {"render_mode": "rgb_array"} if render else {}
    spec_json = source.get("eval_env_spec")
    if spec_json and source.get("eval_env_id") == env_id:
        from gymnasium.envs.registration import EnvSpec

        from trajdiff.plugins.rl.envs import register_robotics

        register_robotics()
        spec = EnvSpec.from_json(spec_json)
        import gymnasium as gym

        return gym.make(spec, **kwargs), True
    return make_env(env_id, **kwargs), False


def normalized_score(total: float, source: dict[str, Any]) -> float | None:
    """100 x (return - random) / (expert - random) with the data set's reference scores (D4RL / Minari)."""
    low, high = source.get("ref_min_score"), source.get("ref_max_score")
    if low is None or high is None or high == low:
        return None
    return 100.0 * (total - low) / (high - low)


def _mean_se(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return float(statistics.fmean(values)), float(se)


def run_planner(
    loaded: Any,
    env_id: str,
    *,
    episodes: int = 20,
    seed: int = 0,
    config: PlannerConfig | None = None,
    render: str | Path | None = None,
    max_steps: int | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Plans closed-loop for ``episodes`` episodes (reset seeds ``seed``, ``seed + 1``, ...) and scores them.

    ``loaded`` is a model loaded with `trajdiff.api.load_model` (plugins sit below the api layer)."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    require_rl()
    if loaded.domain.name != "rl":
        raise ConfigError(f"the model was trained for domain {loaded.domain.name!r}, not 'rl'; "
                          "train a planner with `trajdiff train --domain rl`")
    source = loaded.encoder.source
    gif = render is not None and Path(render).suffix.lower() == ".gif"
    if render is not None and Path(render).suffix.lower() not in (".gif", ".png"):
        raise ConfigError(f"cannot render to {render}: use a .gif or .png file name")
    if gif:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering
    env, is_eval = environment_for(env_id, source, render=gif)
    planner = Planner(loaded, env.observation_space, env.action_space, config)
    returns, scores, successes, lengths, frames, paths = [], [], [], [], [], []
    started = time.monotonic()
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        planner.reset()
        total, success, steps, path = 0.0, False, 0, []
        while True:
            action = planner.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            success = success or bool(info.get("success", False))
            steps += 1
            if planner.position_cols:
                path.append(planner._row(obs)[planner.position_cols])
            if gif and e == 0 and steps % 2 == 0:
                frames.append(env.render())
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
        returns.append(total)
        lengths.append(steps)
        successes.append(success)
        paths.append(np.array(path))
        score = normalized_score(total, source) if is_eval else None
        if score is not None:
            scores.append(score)
        if progress:
            print(f"episode {e}: return {total:.1f}" + (f", score {score:.1f}" if score is not None else ""))
    env.close()
    stats = planner.stats
    mean_return, se_return = _mean_se(returns)
    mean_score, se_score = _mean_se(scores)
    result = {
        "env": env_id,
        "evaluation_env": is_eval,
        "dataset": source.get("dataset_id"),
        "episodes": episodes,
        "seed": seed,
        "returns": returns,
        "return_mean": mean_return,
        "return_se": se_return,
        "normalized_scores": scores,
        "score_mean": mean_score if scores else None,
        "score_se": se_score if scores else None,
        "reference": {"min": source.get("ref_min_score"), "max": source.get("ref_max_score")},
        "success_rate": float(np.mean(successes)) if planner.goal_task else None,
        "steps": lengths,
        "ms_per_decision": 1000 * float(np.mean(stats.decisions)),
        "ms_per_plan_cold": 1000 * float(np.mean(stats.plans)) if stats.plans else None,
        "ms_per_plan_warm": 1000 * float(np.mean(stats.warm_plans)) if stats.warm_plans else None,
        "controller": planner.controller,
        "planner": asdict(planner.config),
        "seconds": time.monotonic() - started,
    }
    if render is not None:
        _render(Path(render), frames, paths[0] if paths else None, planner, getattr(env.unwrapped, "maze", None))
        result["render"] = str(render)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def _render(path: Path, frames: list[Any], trace: np.ndarray | None, planner: Planner, maze: Any = None) -> None:
    """A GIF of the first episode's frames, or a PNG of its path (and last plan) in the plane, over the
    maze's walls when the environment has a maze."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise ConfigError("writing a GIF needs imageio: pip install 'trajdiff[rl]'") from None

        usable = [f for f in frames if f is not None]
        if not usable:
            raise ConfigError("the environment rendered no frames; render to a .png instead (or set MUJOCO_GL=egl)")
        imageio.mimsave(path, usable, duration=0.05)
        return
    if path.suffix.lower() != ".png":
        raise ConfigError(f"cannot render to {path}: use a .gif or .png file name")
    plt = pyplot()

    figure, ax = plt.subplots(figsize=(5, 5))
    if maze is not None:
        scale = float(maze.maze_size_scaling)
        for r, row in enumerate(maze.maze_map):
            for c, cell in enumerate(row):
                if cell == 1:
                    x, y = maze.cell_rowcol_to_xy(np.array([r, c]))
                    ax.add_patch(plt.Rectangle((x - scale / 2, y - scale / 2), scale, scale, color="0.8"))
        goal = planner.plan_rows[0, planner.goal_cols] if planner.plan_rows is not None and planner.goal_cols else None
        if goal is not None:
            ax.plot(goal[0], goal[1], marker="*", color="tab:red", markersize=14, label="goal")
        ax.set_xlim(-maze.x_map_center, maze.x_map_center)
        ax.set_ylim(-maze.y_map_center, maze.y_map_center)
    if trace is not None and len(trace) and trace.shape[1] >= 2:
        ax.plot(trace[:, 0], trace[:, 1], color="black", lw=1.2, label="agent")
        if planner.plan_rows is not None:
            plan = planner.plan_rows[:, planner.position_cols]
            ax.plot(plan[:, 0], plan[:, 1], color="tab:blue", ls="--", lw=1.0, label="last plan")
        ax.legend(loc="upper left", fontsize=8)
        ax.set_aspect("equal")
    elif frames:
        ax.imshow(frames[-1])
    save_figure(figure, path)
