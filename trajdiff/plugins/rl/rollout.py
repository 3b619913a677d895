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
from trajdiff.plugins.rl.envs import make_env, require_rl
from trajdiff.plugins.rl.planner import Planner, PlannerConfig
from trajdiff.plugins.rl.render import EpisodeRecord, render_episode


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
    value: Any = None,
    inverse: Any = None,
) -> dict[str, Any]:
    """Plans closed-loop for ``episodes`` episodes (reset seeds ``seed``, ``seed + 1``, ...) and scores them.

    ``loaded`` is a model loaded with `trajdiff.api.load_model` (plugins sit below the api layer); ``value``
    a `trajdiff.core.value.ValueNet` for value guidance (`trajdiff.plugins.rl.value.load_value`); ``inverse`` the
    `trajdiff.plugins.rl.inverse.InverseDynamics` a return-conditioned planner acts through (`load_inverse`)."""
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
    planner = Planner(loaded, env.observation_space, env.action_space, config, value=value, inverse=inverse)
    returns, scores, successes, lengths = [], [], [], []
    record = EpisodeRecord()  # the first episode, drawn when rendering
    started = time.monotonic()
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        planner.reset()
        total, success, steps = 0.0, False, 0
        while True:
            planned = len(planner.stats.plans) + len(planner.stats.warm_plans)
            if e == 0:
                record.rows.append(planner._row(obs))
            action = planner.act(obs)
            if e == 0 and len(planner.stats.plans) + len(planner.stats.warm_plans) > planned:
                record.plans.append((steps, np.array(planner.plan_rows)))
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            success = success or bool(info.get("success", False))
            steps += 1
            if gif and e == 0 and steps % 2 == 0:
                record.frames.append(env.render())
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
        if e == 0:
            record.rows.append(planner._row(obs))
        returns.append(total)
        lengths.append(steps)
        successes.append(success)
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
        result["render"] = str(render)
        result["render_plan_steps"] = render_episode(
            Path(render), record, planner.position_cols, planner.goal_cols, planner.encoder.columns,
            maze=getattr(env.unwrapped, "maze", None))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result
