"""MuJoCo locomotion data sets (Hopper, HalfCheetah, Walker2d) in the D4RL recipe, written as Minari data sets.

"medium" holds at least ``steps`` steps of a behaviour policy at about a third of expert return, run
stochastically (`trajdiff.plugins.rl.behaviour`); "medium-replay" holds the replay buffer of the run
that trained it. The expert reference return is D4RL's (Fu et al., 2020: SAC experts on the v2/v3
environments, the same bodies and rewards as v5); the random reference is measured by Minari on
the v5 environment (a uniform random policy, ``episodes_for_scores`` episodes). Normalized scores
are 100 x (return - random) / (expert - random).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.behaviour import TRAINING_DIR, GaussianActor, shipped_policy
from trajdiff.plugins.rl.collect import _buffer, _datasets_root, _replace
from trajdiff.plugins.rl.envs import make_env, require_rl

REFERENCE = {
    "Hopper-v5": {"expert": 3234.3},
    "HalfCheetah-v5": {"expert": 12135.0},
    "Walker2d-v5": {"expert": 4592.3},
}
"""Expert reference returns (D4RL's infos.REF_MAX_SCORE for hopper / halfcheetah / walker2d)."""

LOCOMOTION = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}


def locomotion_dataset_id(body: str, kind: str) -> str:
    return f"trajdiff/{body}/{kind}-v0"


def _episodes_from_policy(env_id: str, actor: GaussianActor, steps: int, seed: int, progress: bool) -> list[Any]:
    """Complete episodes of the stochastic ``actor`` until at least ``steps`` steps (reset seeds seed, seed + 1,
    ...)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    buffers: list[Any] = []
    total = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"collecting {env_id}", unit="step", mininterval=2.0)
    while total < steps:
        obs, _ = env.reset(seed=seed + len(buffers))
        observations, actions, rewards = [obs], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = actor(obs, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
        buffers.append(_buffer(len(buffers), np.stack(observations), np.stack(actions), rewards, terminated,
                               truncated))
        total += len(actions)
        if bar is not None:
            bar.update(len(actions))
    if bar is not None:
        bar.close()
    env.close()
    return buffers


def _episodes_from_replay(path: Path) -> list[Any]:
    """The episodes of a replay buffer written by `train_behaviour` (``*-replay.npz``), in the order played."""
    try:
        data = np.load(path)
        obs, nxt, actions = data["observations"], data["next_observations"], data["actions"]
        rewards, dones, timeouts = data["rewards"], data["dones"].astype(bool), data["timeouts"].astype(bool)
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"cannot read replay buffer {path}: {error}") from None
    ends = list(np.nonzero(dones)[0])
    if not ends or ends[-1] != len(actions) - 1:
        ends.append(len(actions) - 1)  # the episode running when training stopped
    buffers, start = [], 0
    for end in ends:
        observations = np.concatenate([obs[start: end + 1], nxt[end: end + 1]])
        terminal = bool(dones[end] and not timeouts[end])
        buffers.append(_buffer(len(buffers), observations, actions[start: end + 1], rewards[start: end + 1].tolist(),
                               terminal, not terminal))
        start = end + 1
    return buffers


def make_locomotion(body: str, kind: str = "medium", steps: int = 200_000, *, policy: str | Path | None = None,
                    replay: str | Path | None = None, seed: int = 0, root: str | Path | None = None,
                    overwrite: bool = False, episodes_for_scores: int = 100, progress: bool = True) -> str:
    """Writes ``trajdiff/<body>/<kind>-v0``: "medium" from the (shipped or given) behaviour policy, at least
    ``steps`` steps; "medium-replay" from the replay buffer ``replay`` of the run that trained it. Returns its id."""
    if body not in LOCOMOTION:
        raise ConfigError(f"unknown body {body!r}; choose one of {sorted(LOCOMOTION)}")
    if kind not in ("medium", "medium-replay"):
        raise ConfigError(f"unknown locomotion data set kind {kind!r}; choose medium or medium-replay")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    require_rl()
    env_id = LOCOMOTION[body]
    if kind == "medium":
        actor = GaussianActor.load(policy or shipped_policy(env_id))
        how = f"{actor.meta.get('algorithm', 'SAC')} stopped at step {actor.meta.get('steps', '?')} " \
              f"(evaluation return {actor.meta.get('eval_return', '?')})"
    else:
        replay = Path(replay or TRAINING_DIR / f"{env_id.lower()}-replay.npz").expanduser()
        if not replay.is_file():
            raise ConfigError(f"medium-replay is made from the replay buffer {replay}, which does not exist; "
                              f"write it with `python -m trajdiff.plugins.rl.behaviour {env_id}`")
    _datasets_root(root)
    dataset_id = locomotion_dataset_id(body, kind)
    _replace(dataset_id, overwrite)
    if kind == "medium":
        buffers = _episodes_from_policy(env_id, actor, steps, seed, progress)
        description = f"{env_id}: {sum(len(b.actions) for b in buffers)} steps of a stochastic {how} (D4RL medium)."
    else:
        buffers = _episodes_from_replay(Path(replay))  # type: ignore[arg-type]
        description = f"{env_id}: the replay buffer ({sum(len(b.actions) for b in buffers)} steps) of the SAC run " \
                      "that trained the medium policy (D4RL medium-replay)."
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id, buffer=buffers, env=env_id, eval_env=env_id, algorithm_name="SAC (behaviour)",
            author="trajdiff", code_permalink="trajdiff/plugins/rl/locomotion.py",
            ref_max_score=REFERENCE[env_id]["expert"], num_episodes_average_score=episodes_for_scores,
            description=description + " Expert reference: D4RL's; random reference: measured on this environment.")
    return dataset_id
