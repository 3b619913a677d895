"""Inverse dynamics: the action that takes the agent from one state to the next, ``a_t = f(s_t, s_{t+1})``.

Decision Diffuser (Ajay et al., 2023) plans states only and reads the action off the first planned
transition with such a model, since a plan's states are smoother to generate than its actions. Here an MLP
over standardized ``(s_t, s_{t+1})`` predicts the standardized action, trained on a data set's transitions
(the last tenth of its episodes held out, whose error is recorded beside a mean-action baseline's). It is
written to ``MODEL/inverse.safetensors`` and ``MODEL/inverse.json``; ``trajdiff plan --controller inverse``
(and a return-conditioned planner, by default) acts through it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.loader import load_minari
from trajdiff.plugins.rl.side_nets import has_side_net, load_side_net, save_side_net

INVERSE_FILES = ("inverse.safetensors", "inverse.json")  # weights, record


class InverseDynamics(nn.Module):
    """MLP ``(s_t, s_{t+1}) -> a_t`` with the data's state and action statistics kept as buffers."""

    def __init__(self, state_dim: int, action_dim: int, width: int = 256, depth: int = 2) -> None:
        super().__init__()
        if min(state_dim, action_dim, width, depth) < 1:
            raise ConfigError(f"inverse dynamics needs positive state_dim, action_dim, width and depth, got "
                              f"{state_dim}, {action_dim}, {width}, {depth}")
        self.state_dim, self.action_dim, self.width, self.depth = state_dim, action_dim, width, depth
        layers: list[nn.Module] = []
        size = 2 * state_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.Mish()]
            size = width
        layers.append(nn.Linear(size, action_dim))
        self.net = nn.Sequential(*layers)
        for name, dim in (("state_mean", state_dim), ("state_std", state_dim), ("action_mean", action_dim),
                          ("action_std", action_dim)):
            self.register_buffer(name, torch.zeros(dim) if name.endswith("mean") else torch.ones(dim))

    def forward(self, state: Tensor, next_state: Tensor) -> Tensor:
        """Actions ``[B, A]`` (user units) of transitions ``[B, S] -> [B, S]``."""
        if state.shape[-1] != self.state_dim or next_state.shape != state.shape:
            raise DataError(f"inverse dynamics expects states [B, {self.state_dim}] twice, got {tuple(state.shape)} "
                            f"and {tuple(next_state.shape)}")
        features = torch.cat([(state - self.state_mean) / self.state_std,
                              (next_state - self.state_mean) / self.state_std], dim=-1)
        return self.net(features) * self.action_std + self.action_mean

    def act(self, state: np.ndarray, next_state: np.ndarray) -> np.ndarray:
        """The action ``[A]`` of one transition ``[S] -> [S]``."""
        with torch.no_grad():
            out = self(torch.as_tensor(state, dtype=torch.float32)[None],
                       torch.as_tensor(next_state, dtype=torch.float32)[None])
        return out[0].numpy().astype(np.float64)

    def config(self) -> dict[str, int]:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim, "width": self.width, "depth": self.depth}


def transitions(source: str | Path, *, max_episodes: int | None = None) -> tuple[np.ndarray, ...]:
    """A Minari data set's transitions, read by the domain's loader (episodes kept apart): states ``[N, S]`` (the
    observation columns a plan holds), next states ``[N, S]``, actions ``[N, A]`` and each one's episode number
    ``[N]`` (an episode's final observation is its last next state)."""
    episodes = load_minari(source, join=False, max_episodes=max_episodes)
    act_cols = [i for i, c in enumerate(episodes.columns) if c.startswith("action")]
    obs_cols = [i for i in range(len(episodes.columns)) if i not in act_cols]
    states, nexts, actions, episode_of = [], [], [], []
    for number, (rows, meta) in enumerate(zip(episodes.sequences, episodes.meta, strict=True)):
        observed = np.concatenate([rows[:, obs_cols], np.asarray(meta["final_observation"])[None]])
        states.append(observed[:-1])
        nexts.append(observed[1:])
        actions.append(rows[:, act_cols])
        episode_of.append(np.full(len(rows), number))
    return tuple(np.concatenate(part).astype(np.float32) if i < 3 else np.concatenate(part)
                 for i, part in enumerate((states, nexts, actions, episode_of)))


def train_inverse(states: np.ndarray, next_states: np.ndarray, actions: np.ndarray, episode_of: np.ndarray, *,
                  steps: int = 3000, width: int = 256, depth: int = 2, batch_size: int = 256, lr: float = 1e-3,
                  minutes: float | None = None, seed: int = 0) -> tuple[InverseDynamics, dict[str, Any]]:
    """Fits `InverseDynamics` on transitions, the last tenth of the episodes held out; returns the net and a record
    with the held-out mean squared error of the net and of the training data's mean action (the baseline)."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    s, s2, a = (torch.as_tensor(np.asarray(v), dtype=torch.float32) for v in (states, next_states, actions))
    episodes = np.unique(episode_of)
    held = np.isin(episode_of, episodes[len(episodes) - max(1, len(episodes) // 10):]) if len(episodes) > 1 else \
        np.zeros(len(a), dtype=bool)
    train = torch.from_numpy(~held)
    torch.manual_seed(seed)
    net = InverseDynamics(s.shape[1], a.shape[1], width=width, depth=depth)
    net.state_mean.copy_(s[train].mean(0))
    net.state_std.copy_(s[train].std(0).clamp_min(1e-6))
    net.action_mean.copy_(a[train].mean(0))
    net.action_std.copy_(a[train].std(0).clamp_min(1e-6))
    s_t, s2_t, a_t = s[train], s2[train], a[train]
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    cpu0, wall0, step = time.process_time(), time.monotonic(), 0
    while step < steps and (minutes is None or time.monotonic() - wall0 < 60 * minutes):
        pick = torch.randint(len(a_t), (batch_size,), generator=generator)
        loss = (((net(s_t[pick], s2_t[pick]) - a_t[pick]) / net.action_std) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    net.eval()
    record: dict[str, Any] = {"config": net.config(), "steps": step, "transitions": int(len(a)),
                              "held_out": int(held.sum()), "cpu_seconds": round(time.process_time() - cpu0, 2)}
    if held.any():
        mask = torch.from_numpy(held)
        with torch.no_grad():
            predicted = net(s[mask], s2[mask])
        record["held_out_mse"] = float(((predicted - a[mask]) ** 2).mean())
        record["mean_action_mse"] = float(((net.action_mean - a[mask]) ** 2).mean())
    return net, record


def fit_inverse(model_dir: str | Path, source: str | Path, *, steps: int = 3000, width: int = 256, depth: int = 2,
                minutes: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Trains inverse dynamics on ``source`` (a Minari data set) and writes it into ``model_dir``; returns its
    record (held-out error beside the mean action's)."""
    net, record = train_inverse(*transitions(source), steps=steps, width=width, depth=depth, minutes=minutes,
                                seed=seed)
    record["dataset"] = str(source)
    save_inverse(model_dir, net, record)
    return record


def save_inverse(model_dir: str | Path, net: InverseDynamics, record: dict[str, Any]) -> None:
    save_side_net(model_dir, net, INVERSE_FILES, record, "inverse dynamics")


def has_inverse(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds inverse dynamics (`fit_inverse`)."""
    return has_side_net(model_dir, INVERSE_FILES)


def load_inverse(model_dir: str | Path) -> InverseDynamics:
    """The inverse dynamics stored in ``model_dir``."""
    return load_side_net(model_dir, INVERSE_FILES, InverseDynamics, "inverse dynamics",  # type: ignore[return-value]
                         f"fit them with `trajdiff fit-inverse --model {model_dir}`")
