"""Return conditioning (Decision Diffuser, Ajay et al., 2023): each training window's return, as a condition.

A window's condition is the discounted return-to-go from its first step, ``sum_k gamma^k r_{t+k}`` to the end of
its episode (``gamma`` 0.99, the value function's discount). Discounted rather than the whole remaining return:
HalfCheetah's observations hold no clock, so an undiscounted return-to-go, which falls with the steps left, is not
a function of what a plan can see or change; the discounted one weighs the next ~100 steps, the reach of a
replanning agent. It is normalized with the data set's own range of window returns, ``(g - low) / (high - low)``:
0 is the data's worst window and 1 its best (D4RL's reference scores are for whole-episode returns, not for
discounted returns-to-go). A planner asks for a target in those units, e.g. 0.9; above 1 extrapolates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trajdiff.core.data import Episodes
from trajdiff.core.guidance import BaseGuide, ClassifierFree
from trajdiff.errors import ConfigError, DataError

RETURN = "return"
GAMMA = 0.99
DESCRIPTION = (f"the window's discounted (gamma {GAMMA}) return-to-go, 0 = the data's worst window, 1 = its best")


def returns_to_go(rewards: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """``sum_k gamma^k r_{t+k}`` for every step t of one episode ``[T]`` -> ``[T]``."""
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    togo = np.zeros(len(rewards) + 1)
    for t in range(len(rewards) - 1, -1, -1):
        togo[t] = rewards[t] + gamma * togo[t + 1]
    return togo[:-1]


def window_returns(episodes: Episodes, windows: np.ndarray, gamma: float = GAMMA) -> tuple[np.ndarray, dict[str, Any]]:
    """Normalized discounted returns-to-go ``[N, 1]`` of the windows ``[N, 2]`` (episode, first row) and the record
    a model keeps of them (the condition's name, discount and the range it was normalized with)."""
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"gamma must be in (0, 1], got {gamma}")
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    togo: dict[int, np.ndarray] = {}
    for e in np.unique(windows[:, 0]):
        meta = episodes.meta[int(e)] or {}
        rewards = meta.get("rewards")
        if rewards is None or len(rewards) != len(episodes.sequences[int(e)]):
            raise DataError(f"episode {episodes.ids[int(e)]!r} has no rewards (one per row) in its meta, which a "
                            "return-conditioned model needs; load the data set with `trajdiff.plugins.rl` (Minari)")
        togo[int(e)] = returns_to_go(rewards, gamma)
    raw = np.asarray([togo[int(e)][int(s)] for e, s in windows])
    low, high = float(raw.min()), float(raw.max())
    if not high > low:
        raise DataError(f"every training window has the same return-to-go ({low:.4g}): nothing to condition on")
    values = ((raw - low) / (high - low)).astype(np.float32)[:, None]
    info = {"name": RETURN, "gamma": gamma, "low": low, "high": high, "windows": int(len(raw)),
            "mean": float(values.mean()), "units": "0 = the data's worst window return-to-go, 1 = its best"}
    return values, info


def condition_tensor(condition_info: dict[str, Any], target: float | None) -> np.ndarray | None:
    """The condition row ``[1, 1]`` of a normalized target return for a model trained with ``condition_info``; None
    without a target. A model trained without a return condition cannot take one (ConfigError)."""
    if target is None:
        return None
    if condition_info.get("name") != RETURN:
        raise ConfigError("--target-return needs a return-conditioned model (trained with `--condition return`); "
                          "this model has no return condition")
    if not np.isfinite(target):
        raise ConfigError(f"target return must be a finite number, got {target}")
    return np.asarray([[target]], dtype=np.float32)


def to_normalized(condition_info: dict[str, Any], discounted_return: float) -> float:
    """A discounted return-to-go in reward units -> the model's normalized units."""
    low, high = float(condition_info["low"]), float(condition_info["high"])
    return (discounted_return - low) / (high - low)


def return_guidance(condition_info: dict[str, Any], target: float | None,
                    scale: float) -> tuple[torch.Tensor | None, list[BaseGuide]]:
    """The planner's condition ``[1, 1]`` for ``target`` and its classifier-free guide (``scale`` 1: the plain
    conditional model; more pushes further from the unconditional one); (None, []) without a target."""
    cond = condition_tensor(condition_info, target)
    if cond is None:
        return None, []
    return torch.from_numpy(cond), [ClassifierFree(scale)]
