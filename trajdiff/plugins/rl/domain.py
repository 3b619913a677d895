"""The ``rl`` domain: Minari data sets of (observation, action) runs, planned through by inpainting."""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError
from trajdiff.plugins.recipes import window_mlp_recipe
from trajdiff.plugins.rl.encoder import StateActionEncoder
from trajdiff.plugins.rl.loader import load_minari
from trajdiff.plugins.rl.returns import DESCRIPTION, RETURN, window_returns
from trajdiff.plugins.spec import DatasetCard, Domain, ModelDefaults, Recipe


class RLDomain(Domain):
    """Offline RL data (Minari, D4RL-compatible) for Diffuser-style planning with ``trajdiff plan``."""

    name = "rl"
    summary = "state-action runs from Minari data sets; closed-loop planning in gymnasium environments"

    def load(self, source: Any, **options: Any) -> Episodes:
        return load_minari(source, **options)

    def make_encoder(self, **options: Any) -> StateActionEncoder:
        options.pop("history", None)
        options.pop("horizon", None)
        return StateActionEncoder(**options)

    def encoder_from_state(self, state: dict[str, Any]) -> StateActionEncoder:
        return StateActionEncoder.from_state(state)

    def defaults(self) -> ModelDefaults:
        # A 128-step plan (32 tokens of every 4th state), the first token observed; Diffuser used
        # 128 / 256 / 384 steps for maze2d umaze / medium / large. One noise level per window in
        # training ("shared") matches how plans are sampled; a bidirectional transformer, which sees the
        # clean first token and the inpainted goal from every position, is the default network.
        return ModelDefaults(
            history=4, horizon=124,
            network={"kind": "transformer", "dim": None, "width": 64, "depth": 3, "heads": 4},
            schedule="cosine", parametrization="v", steps=20000, batch_size=64, lr=5e-4, stride=4,
            solver="ddim", nfe=20, samples=1, encoder={"skip": 4}, noise="shared", cond_dropout=0.25,
        )  # a return-conditioned model drops its condition in a quarter of the windows, as Decision Diffuser did

    def window_conditions(self, name: str, episodes: Episodes, windows: np.ndarray) -> tuple[np.ndarray, dict]:
        """``return``: `trajdiff.plugins.rl.returns.window_returns` (the normalized discounted return-to-go)."""
        if name != RETURN:
            raise ConfigError(f"domain 'rl' computes no per-window condition {name!r}; it has {RETURN!r} "
                              f"({DESCRIPTION})")
        return window_returns(episodes, windows)

    def recipes(self) -> dict[str, Recipe]:
        """``window-mlp``: `trajdiff.plugins.recipes.window_mlp_recipe` (width 256, depth 3): plans sample with one
        noise level per window, so one MLP over the whole plan serves, and a decision costs a fraction of the
        transformer's (`benchmarks/pointmaze.py --recipe window-mlp`)."""
        return {"window-mlp": window_mlp_recipe()}


def dataset_cards() -> list[DatasetCard]:
    from trajdiff.plugins.rl.collect import make_pendulum, make_pointmaze, pointmaze_dataset_id
    from trajdiff.plugins.rl.locomotion import LOCOMOTION, locomotion_dataset_id, make_locomotion

    cards = [
        DatasetCard(
            name=f"pointmaze-{maze}", domain="rl",
            summary=f"PointMaze_{maze.capitalize() if maze != 'umaze' else 'UMaze'}-v3 noisy waypoint expert "
                    f"(D4RL maze2d recipe) as Minari data set {pointmaze_dataset_id(maze)}",
            columns=["observation", "desired_goal", "achieved_goal", "action"],
            make=lambda out=None, steps=None, maze=maze, **kw: make_pointmaze(
                maze, steps or 1_000_000, root=out, **kw),
        )
        for maze in ("umaze", "medium", "large")
    ]
    cards.append(DatasetCard(
        name="gym-pendulum", domain="rl",
        summary="Pendulum-v1 noisy energy-pumping expert, 300 episodes, "
                "Minari data set trajdiff/pendulum/noisy-expert-v0",
        columns=["observation", "action"],
        make=lambda out=None, steps=None, **kw: make_pendulum(max(1, (steps or 60_000) // 200), root=out, **kw),
    ))
    for body, env_id in LOCOMOTION.items():
        for kind in ("medium", "medium-replay"):
            source = ("the shipped SAC behaviour policy at about a third of expert return" if kind == "medium" else
                      "the replay buffer of the SAC run that trained the medium policy")
            cards.append(DatasetCard(
                name=f"{body}-{kind}", domain="rl",
                summary=f"{env_id} {kind} (D4RL recipe): {source}, Minari data set "
                        f"{locomotion_dataset_id(body, kind)}",
                columns=["observation", "action"],
                make=lambda out=None, steps=None, body=body, kind=kind, **kw: make_locomotion(
                    body, kind, steps or 200_000, root=out, **kw),
            ))
    return cards
