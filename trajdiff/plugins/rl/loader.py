"""Minari data sets -> Episodes of (observation, action) rows.

Dict observations are flattened key by key (``observation[0]``, ..., ``desired_goal[1]``) in the
order of the observation space; each row holds the observation at step t and the action taken
at t, so an episode of T steps gives T rows (its final observation, which no action follows, is
kept in ``meta["final_observation"]``; its rewards, one per row, in ``meta["rewards"]``). Consecutive
episodes that continue one another (the next starts where the previous ended, as in the goal-resetting
PointMaze runs) can be joined into one stream, the form in which Diffuser trained on D4RL maze2d.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.envs import require_rl

GENERATED = {
    "trajdiff/pointmaze-umaze/noisy-expert-v0": "pointmaze-umaze",
    "trajdiff/pointmaze-medium/noisy-expert-v0": "pointmaze-medium",
    "trajdiff/pointmaze-large/noisy-expert-v0": "pointmaze-large",
    "trajdiff/pendulum/noisy-expert-v0": "gym-pendulum",
    **{f"trajdiff/{body}/{kind}-v0": f"{body}-{kind}" for body in ("hopper", "halfcheetah", "walker2d")
       for kind in ("medium", "medium-replay")},
}


def _space_columns(space: Any, prefix: str) -> list[str]:
    """Column names for a Box or a Dict of Boxes, flattened in the space's key order."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return [c for key, sub in space.spaces.items() for c in _space_columns(sub, key)]
    if isinstance(space, spaces.Box):
        return [f"{prefix}[{i}]" for i in range(int(np.prod(space.shape)))]
    raise DataError(f"{prefix}: only Box and Dict-of-Box spaces can be encoded, got {type(space).__name__}")


def _flatten(data: Any, space: Any) -> np.ndarray:
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return np.concatenate([_flatten(data[key], sub) for key, sub in space.spaces.items()], axis=1)
    array = np.asarray(data, dtype=np.float64)
    return array.reshape(array.shape[0], -1)


def open_dataset(source: str | Path) -> Any:
    """A MinariDataset by id (under ``MINARI_DATASETS_PATH``) or by the path of its folder."""
    require_rl()
    import minari

    text = str(source)
    if Path(text).is_dir() and (Path(text) / "data").is_dir():
        root, dataset_id = _split_path(Path(text))
        os.environ["MINARI_DATASETS_PATH"] = str(root)
        text = dataset_id
    local = minari.list_local_datasets()
    if text not in local:
        from minari.storage import get_dataset_path

        where = get_dataset_path()
        if text in GENERATED:
            how = f"create it with `trajdiff datasets make {GENERATED[text]}`"
        else:
            how = f"download it with `minari download {text}` or set MINARI_DATASETS_PATH to the folder that holds it"
        known = f"; data sets there: {sorted(local)[:8]}" if local else ""
        raise DataError(f"Minari data set {text!r} is not on disk under {where}; {how}{known}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.load_dataset(text)


def _split_path(path: Path) -> tuple[Path, str]:
    """``<root>/<namespace>/<name>-v0`` -> (root, "namespace/name-v0"), reading the id from metadata."""
    import json

    meta = path / "data" / "metadata.json"
    if meta.is_file():
        dataset_id = json.loads(meta.read_text()).get("dataset_id")
        if dataset_id:
            root = path
            for _ in dataset_id.split("/"):
                root = root.parent
            return root.resolve(), dataset_id
    raise DataError(f"{path} does not look like a Minari data set folder (no data/metadata.json with a dataset_id)")


def load_minari(source: str | Path, *, join: bool | str = "auto", max_episodes: int | None = None) -> Episodes:
    """Reads a Minari data set into Episodes (user units) with per-episode meta.

    ``join``: True or "auto" joins each episode that starts where the previous one ended (True also
    warns when some do not), False keeps every episode apart. Meta holds the data set id, environment ids,
    reference scores and the episode ids each stream was made of.
    """
    if join not in (True, False, "auto"):
        raise ConfigError(f"join must be true, false or 'auto', got {join!r}")
    dataset = open_dataset(source)
    obs_space, act_space = dataset.observation_space, dataset.action_space
    columns = _space_columns(obs_space, "observation") + _space_columns(act_space, "action")
    metadata = dataset.storage.metadata
    env_spec = dataset.spec.env_spec
    eval_json = metadata.get("eval_env_spec")
    eval_id = None
    if isinstance(eval_json, str) and eval_json:
        import json

        eval_id = json.loads(eval_json).get("id")
    common = {
        "dataset_id": dataset.spec.dataset_id,
        "env_id": env_spec.id if env_spec is not None else None,
        "eval_env_id": eval_id or (env_spec.id if env_spec is not None else None),
        "eval_env_spec": eval_json if isinstance(eval_json, str) else None,
        "ref_min_score": metadata.get("ref_min_score"),
        "ref_max_score": metadata.get("ref_max_score"),
    }
    streams: list[list[np.ndarray]] = []
    finals: list[np.ndarray] = []
    rewards: list[list[np.ndarray]] = []
    members: list[list[int]] = []
    empty = 0
    for count, episode in enumerate(dataset.iterate_episodes()):
        if max_episodes is not None and count >= max_episodes:
            break
        obs = _flatten(episode.observations, obs_space)
        actions = _flatten(episode.actions, act_space)
        if len(actions) == 0:
            empty += 1
            continue
        rows = np.concatenate([obs[:-1], actions], axis=1)
        continues = bool(streams) and join is not False and np.allclose(obs[0], finals[-1])
        if continues:
            streams[-1].append(rows)
            rewards[-1].append(np.asarray(episode.rewards, dtype=np.float64).reshape(-1))
            members[-1].append(int(episode.id))
            finals[-1] = obs[-1]
        else:
            streams.append([rows])
            rewards.append([np.asarray(episode.rewards, dtype=np.float64).reshape(-1)])
            members.append([int(episode.id)])
            finals.append(obs[-1])
    if join is True and len(streams) > 1:
        warnings.warn(f"{common['dataset_id']}: join=True but {len(streams)} runs do not continue one another; "
                      "they are kept as separate episodes", stacklevel=2)
    if empty:
        warnings.warn(f"{common['dataset_id']}: {empty} episode(s) without steps were skipped", stacklevel=2)
    if not streams:
        raise DataError(f"Minari data set {common['dataset_id']!r} holds no episode with at least one step")
    sequences = [np.concatenate(parts) for parts in streams]
    ids = [f"{common['dataset_id']}#{m[0]}" + (f"-{m[-1]}" if len(m) > 1 else "") for m in members]
    meta = [{**common, "episodes": m, "final_observation": f, "entity": i, "report": {"empty_episodes": empty},
             "rewards": np.concatenate(r)} for m, f, i, r in zip(members, finals, ids, rewards, strict=True)]
    return Episodes(sequences, columns, ids=ids, meta=meta)
