"""A planner's value function: trained on a Minari data set's discounted returns, stored beside the model.

Each training window is a stretch of ``rows`` steps of one episode, encoded exactly as the planner's
plans are; its target is the discounted return from the window's first step to the end of the
episode (Diffuser's value target). An episode shorter than a window is padded with its last row.
The network (`trajdiff.core.value.ValueNet`) and its record are written to
``MODEL/value.safetensors`` and ``MODEL/value.json``; `trajdiff plan --guide value` reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajdiff.core.value import ValueNet, train_value
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.loader import _flatten, open_dataset
from trajdiff.plugins.rl.side_nets import load_side_net, save_side_net

VALUE_FILES = ("value.safetensors", "value.json")  # weights, record


def value_windows(loaded: Any, source: str | Path, *, gamma: float = 0.99, stride: int | None = None,
                  max_windows: int = 100_000, max_episodes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Encoded windows ``[N, T, D]`` of a Minari data set and their discounted returns-to-go ``[N]``."""
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"gamma must be in (0, 1], got {gamma}")
    dataset = open_dataset(source)
    encoder, rows = loaded.encoder, loaded.defaults.length
    stride = stride or encoder.skip
    windows, targets = [], []
    for count, episode in enumerate(dataset.iterate_episodes()):
        if max_episodes is not None and count >= max_episodes:
            break
        obs = _flatten(episode.observations, dataset.observation_space)
        actions = _flatten(episode.actions, dataset.action_space)
        rewards = np.asarray(episode.rewards, dtype=np.float64)
        if len(actions) == 0:
            continue
        table = np.concatenate([obs[:-1], actions], axis=1)
        if table.shape[1] != len(encoder.columns):
            raise DataError(f"{source}: episodes have {table.shape[1]} columns, the model was trained on "
                            f"{len(encoder.columns)}; fit the value on the model's own data set")
        togo = np.zeros(len(rewards) + 1)
        for t in range(len(rewards) - 1, -1, -1):
            togo[t] = rewards[t] + gamma * togo[t + 1]
        padded = np.concatenate([table, np.repeat(table[-1:], max(0, rows - len(table)), axis=0)])
        for start in range(0, max(1, len(table) - rows + 1), stride):
            tokens, _ = encoder.encode(padded[start: start + rows], 1)
            windows.append(tokens)
            targets.append(togo[start])
    if len(windows) < 2:
        raise DataError(f"{source}: fewer than 2 windows of {rows} rows to fit a value on")
    x, y = np.stack(windows), np.asarray(targets, dtype=np.float32)
    if len(x) > max_windows:  # an even thinning keeps the episodes' order (the held-out share stays last)
        keep = np.linspace(0, len(x) - 1, max_windows).round().astype(int)
        x, y = x[keep], y[keep]
    return x, y


def fit_value(model_dir: str | Path, loaded: Any, source: str | Path, *, gamma: float = 0.99, steps: int = 3000,
              width: int = 128, depth: int = 2, minutes: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Trains the value of ``loaded``'s plans on ``source`` and writes it into ``model_dir``; returns its record."""
    x, y = value_windows(loaded, source, gamma=gamma)
    torch.manual_seed(seed)
    net = ValueNet(x.shape[1], x.shape[2], width=width, depth=depth)
    fit = train_value(net, torch.from_numpy(x).float(), torch.from_numpy(y).float(), loaded.model.schedule,
                      steps=steps, minutes=minutes, seed=seed)
    record = {"config": net.config(), "gamma": gamma, "dataset": str(source), "windows": int(len(x)),
              "steps": fit.steps, "cpu_seconds": round(fit.cpu_seconds, 2), "train_loss": fit.train_loss,
              "validation_loss": fit.validation_loss, "return_mean": float(net.mean), "return_std": float(net.std)}
    save_value(model_dir, net, record)
    return record


def save_value(model_dir: str | Path, net: ValueNet, record: dict[str, Any]) -> None:
    save_side_net(model_dir, net, VALUE_FILES, record, "value function")


def load_value(model_dir: str | Path) -> ValueNet:
    """The value network stored in ``model_dir`` (`fit_value`)."""
    return load_side_net(model_dir, VALUE_FILES, ValueNet, "value function",  # type: ignore[return-value]
                         f"fit one with `trajdiff fit-value --model {model_dir} --data DATASET`")
