"""Writes D4RL-compatible Minari data sets from scripted controllers, without jax.

PointMaze follows the recipe of the D4RL maze2d / Minari pointmaze data sets (Fu et al., 2020):
one long run of a continuing task whose target moves when reached (``continuing_task=True``,
``reset_target=True``), actions from the waypoint expert plus Gaussian noise (std 0.5) clipped to
the action bounds, and an episode cut each time the goal is reached. The evaluation environment has
one fixed goal cell; Minari computes the reference scores from the expert (100) and a random
policy (0) on it. Pendulum-v1 shows the same path for a task with no goal at all.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.errors import ConfigError
from trajdiff.plugins.rl.envs import make_env, require_rl
from trajdiff.plugins.rl.mazes import ENV_IDS, EVAL_MAPS, MazeGrid, WaypointController

ACTION_NOISE = 0.5
PENDULUM_ID = "trajdiff/pendulum/noisy-expert-v0"


def pointmaze_dataset_id(maze: str) -> str:
    return f"trajdiff/pointmaze-{maze}/noisy-expert-v0"


def _datasets_root(root: str | Path | None) -> None:
    """Points Minari at ``root`` (``MINARI_DATASETS_PATH``) when given."""
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())


def _buffer(index: int, observations: Any, actions: np.ndarray, rewards: list[float], terminal: bool,
            truncated: bool) -> Any:
    from minari.data_collector import EpisodeBuffer

    steps = len(actions)
    terminations = [False] * steps
    truncations = [False] * steps
    terminations[-1] = terminal
    truncations[-1] = truncated or not terminal
    return EpisodeBuffer(id=index, observations=observations, actions=np.asarray(actions, dtype=np.float32),
                         rewards=list(map(float, rewards)), terminations=terminations, truncations=truncations)


def _stack_obs(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def _replace(dataset_id: str, overwrite: bool) -> None:
    """Clears the way for ``dataset_id``: an existing (or half-written) data set needs ``overwrite``."""
    from minari.storage import get_dataset_path

    path = Path(get_dataset_path(dataset_id))
    if path.exists():
        if not overwrite:
            raise ConfigError(f"Minari data set {dataset_id!r} already exists at {path}; "
                              "pass --overwrite to replace it")
        shutil.rmtree(path)


def _create(dataset_id: str, buffers: list[Any], env: Any, eval_env: Any, expert: Callable[[Any], Any],
            description: str, episodes_for_scores: int) -> Any:
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(
            dataset_id=dataset_id, buffer=buffers, env=env, eval_env=eval_env,
            algorithm_name="trajdiff scripted expert",
            author="trajdiff", code_permalink="trajdiff/plugins/rl/collect.py", expert_policy=expert,
            num_episodes_average_score=episodes_for_scores, description=description,
        )


def make_pointmaze(maze: str, steps: int = 1_000_000, *, seed: int = 0, root: str | Path | None = None,
                   overwrite: bool = False, episodes_for_scores: int = 100,
                   progress: bool = True) -> str:
    """Collects ``steps`` noisy-expert steps in ``PointMaze_<maze>-v3`` and writes the Minari data set;
    returns its id. ``root`` sets ``MINARI_DATASETS_PATH``."""
    if maze not in ENV_IDS:
        raise ConfigError(f"unknown maze {maze!r}; choose one of {sorted(ENV_IDS)}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    require_rl()
    _datasets_root(root)
    dataset_id = pointmaze_dataset_id(maze)
    _replace(dataset_id, overwrite)
    env = make_env(ENV_IDS[maze], continuing_task=True, reset_target=True, max_episode_steps=steps + 1)
    grid = MazeGrid.from_map(env.unwrapped.maze.maze_map, env.unwrapped.maze.maze_size_scaling)
    expert = WaypointController(grid)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    buffers: list[Any] = []
    observations, actions, rewards = [obs], [], []
    iterator = range(steps)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"collecting {maze}", unit="step", mininterval=2.0)
    for step in iterator:
        action = np.clip(expert(obs) + ACTION_NOISE * rng.standard_normal(2), -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        if info.get("success") or terminated or truncated or step == steps - 1:
            buffers.append(_buffer(len(buffers), _stack_obs(observations), np.stack(actions), rewards,
                                   bool(terminated), bool(truncated or info.get("success"))))
            observations, actions, rewards = [obs], [], []
    env.close()
    eval_env = make_env(ENV_IDS[maze], maze_map=EVAL_MAPS[maze], continuing_task=True, reset_target=False)
    eval_expert = WaypointController(MazeGrid.from_map(EVAL_MAPS[maze], grid.scaling))
    _create(dataset_id, buffers, ENV_IDS[maze], eval_env, eval_expert,
            f"PointMaze {maze}: {steps} steps of a shortest-path waypoint expert with N(0, {ACTION_NOISE}^2) "
            "action noise, episodes cut at each goal reached (D4RL maze2d recipe).", episodes_for_scores)
    return dataset_id


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """Energy pumping towards the upright equilibrium, then PD balance (Pendulum-v1: g = 10, m = l = 1)."""
    cos, sin, rate = float(obs[0]), float(obs[1]), float(obs[2])
    angle = np.arctan2(sin, cos)  # 0 = upright
    if cos > 0.85:
        torque = -10.0 * angle - 2.0 * rate
    else:
        energy = 0.5 * rate**2 + 15.0 * (cos - 1.0)  # 0 at rest upright (theta'' = 15 sin + 3 u)
        torque = -2.0 * energy * np.sign(rate if abs(rate) > 1e-3 else 1.0)
        torque = torque if energy < 0 else -0.5 * rate
    return np.array([np.clip(torque, -2.0, 2.0)], dtype=np.float32)


def make_pendulum(episodes: int = 300, *, noise: float = 0.3, seed: int = 0, root: str | Path | None = None,
                  overwrite: bool = False, episodes_for_scores: int = 100, progress: bool = True) -> str:
    """Collects ``episodes`` of 200 steps of the noisy pendulum expert into a Minari data set; returns its id."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    require_rl()
    _datasets_root(root)
    _replace(PENDULUM_ID, overwrite)
    env = make_env("Pendulum-v1")
    rng = np.random.default_rng(seed)
    buffers = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        observations, actions, rewards = [obs], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = np.clip(pendulum_expert(obs) + noise * 2.0 * rng.standard_normal(1), -2.0, 2.0).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
        buffers.append(_buffer(e, np.stack(observations), np.stack(actions), rewards, terminated, truncated))
    _create(PENDULUM_ID, buffers, "Pendulum-v1", "Pendulum-v1", pendulum_expert,
            f"Pendulum-v1: {episodes} episodes of an energy-pumping + PD expert with N(0, {2 * noise}^2) torque noise.",
            episodes_for_scores)
    return PENDULUM_ID
