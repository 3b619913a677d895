"""Diffuser-style closed-loop planning: inpaint the present and the goal, sample, check, track, replan.

Every ``replan_every`` environment steps the planner samples ``candidates`` plans with the current
state held clean in the first token (Janner et al., 2022). In goal-reaching tasks candidate ``c``
must reach the goal by token ``k_c``, evenly spaced over the horizon, so that a goal close by is
reached soon rather than at the horizon's end after a detour. The goal is imposed twice: its
position replaces the prediction at token ``k_c`` (inpainting) and a reconstruction-guidance cost
``|x0_hat[k_c] - goal|^2``, differentiated through the network (DPS, Chung et al., 2023), pulls the
whole plan towards it; replacement alone left the model's plan untouched and jumping to the goal in
one token. A plan is plausible when no position moves between tokens faster than ``speed_margin``
times the largest change in the data (the encoder's ``step_limits``); the planner keeps the
plausible plan that reaches the goal first. A replan is warm-started from the previous plan
shifted by the steps taken, re-noised to ``warm_level`` and denoised in ``warm_nfe`` steps, unless
that plan was implausible.

Walls: a model with little training plans paths through walls at a plausible speed, and the
tracking controller then presses the agent against the wall. The encoder records where the data
went (`trajdiff.plugins.rl.support.VisitedGrid` over ``achieved_goal``: the data never enters a
wall) and ``support_guidance`` descends the planned positions' squared distance from it at every
denoising step (a cost gradient on the prediction, not through the network). On PointMaze Large
(reset seeds 100-119) it lifted the score from 88.4 to 98.2 and umaze / medium moved within their
standard errors (104.4 -> 105.2, 102.4 -> 100.8), all at margin 1.25; with the guidance a margin of
1.5 scored 104.2 / 103.4 / 103.6 on umaze / medium / large (without it, 1.5 had lowered umaze and
medium to 99.3 / 87.9). ``support_check`` also rejects plans that leave the support; it made too many
plans implausible (cold replans) and scored 79.2 on Large (seeds 100-109), so it is off by default.

Two ways to act on a plan: ``"actions"`` executes the planned actions; ``"states"`` tracks the
planned positions with a PD controller aimed ``lookahead`` steps ahead on the plan (and heads
straight for the goal once the plan has reached it), which needs positional observations
(``achieved_goal`` mirrored in the observation). With ``"auto"`` the planner tracks states where
it can and executes actions elsewhere: on PointMaze UMaze, tracking states scored 88.9 and executing
the planned actions of the jumpy (every 4th step) plan 24.6 (reset seeds 100-107). The maze
defaults (12 candidates, goal guidance 10, support guidance 0.05, margin 1.5, lookahead 20) were
chosen on reset seeds 100-119; the benchmark reports seeds 0-19.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trajdiff.core.conditional import PLAN_NAMES, Known, sample_conditional
from trajdiff.core.guidance import BaseGuide, CostGradient, Inpaint
from trajdiff.core.value import ValueGuide, ValueNet
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.encoder import StateActionEncoder
from trajdiff.plugins.rl.inverse import InverseDynamics
from trajdiff.plugins.rl.loader import _flatten, _space_columns
from trajdiff.plugins.rl.returns import return_guidance


@dataclass
class PlannerConfig:
    """How the planner samples and acts; the defaults are the ones the maze benchmark uses."""

    nfe: int = 20
    warm_nfe: int = 4
    warm_level: float = 0.8
    warm_start: bool = True
    replan_every: int = 8
    candidates: int = 12
    controller: str = "auto"
    kp: float = 10.0
    kd: float = 1.0
    lookahead: int = 20
    goal_radius: float = 0.45
    spread_goals: bool = True
    goal_guidance: float = 10.0
    speed_margin: float = 1.5
    support_check: bool = False
    support_guidance: float = 0.05
    solver: str = "ddim"
    seed: int = 0
    plan: str = "full"
    """How a plan's tokens are denoised (`trajdiff.core.conditional.build_plan`): full, autoregressive, pyramid or
    rolling; ``nfe`` and ``warm_nfe`` count network evaluations."""
    plan_options: dict[str, Any] = field(default_factory=dict)
    value_guidance: float = 0.0
    """Scale of the value gradient added to the plan at every denoising step (needs a value function,
    `trajdiff.plugins.rl.value`); with a value, candidates without a goal are ranked by it."""
    target_return: float | None = None
    """A return-conditioned model's target (`trajdiff.plugins.rl.returns`: 0 = the data's worst window, 1 its best)."""
    cfg_scale: float = 1.0
    """Classifier-free guidance towards ``target_return``: 1 the conditional model, more pushes harder."""

    def __post_init__(self) -> None:
        if self.controller not in ("auto", "states", "actions", "inverse"):
            raise ConfigError(f"controller must be 'auto', 'states', 'actions' or 'inverse', got {self.controller!r}")
        if self.cfg_scale < 0:
            raise ConfigError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        for name in ("nfe", "warm_nfe", "replan_every", "candidates"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.plan not in PLAN_NAMES:
            raise ConfigError(f"unknown plan {self.plan!r}; choose one of {', '.join(PLAN_NAMES)}")
        if not 0.0 < self.warm_level <= 1.0:
            raise ConfigError(f"warm_level must be in (0, 1], got {self.warm_level}")
        if self.goal_guidance < 0:
            raise ConfigError(f"goal_guidance must be >= 0, got {self.goal_guidance}")
        if self.value_guidance < 0:
            raise ConfigError(f"value_guidance must be >= 0, got {self.value_guidance}")
        if self.speed_margin <= 0:
            raise ConfigError(f"speed_margin must be > 0, got {self.speed_margin}")


@dataclass
class PlannerStats:
    """Wall-clock seconds of every decision (one per environment step) and of every (re)plan."""

    decisions: list[float] = field(default_factory=list)
    plans: list[float] = field(default_factory=list)
    warm_plans: list[float] = field(default_factory=list)


class Planner:
    """Acts in an environment from a trained ``rl`` model (see `trajdiff.api.load_model`)."""

    def __init__(self, loaded: Any, observation_space: Any, action_space: Any,
                 config: PlannerConfig | None = None, value: ValueNet | None = None,
                 inverse: InverseDynamics | None = None) -> None:
        self.loaded, self.value, self.inverse = loaded, value, inverse
        self.config = config or PlannerConfig()
        self.condition, self.condition_guides = return_guidance(
            loaded.defaults.condition_info, self.config.target_return, self.config.cfg_scale)
        self.encoder: StateActionEncoder = loaded.encoder
        if self.encoder.step_limits is None:
            warnings.warn("this model's encoder has no step_limits (trained before they were recorded): plans are "
                          "not checked for plausibility; retrain it, or see add_data_statistics in "
                          "benchmarks/pointmaze.py",
                          stacklevel=2)
        positional = any(c.startswith("achieved_goal") for c in self.encoder.columns)
        if positional and self.encoder.support is None and (self.config.support_check or self.config.support_guidance):
            warnings.warn("this model's encoder has no support (the positions its data visited; models trained "
                          "before it was recorded): support_check and support_guidance have no effect; retrain it, "
                          "or see add_data_statistics in benchmarks/pointmaze.py", stacklevel=2)
        self.model = loaded.model
        self.denoise = self.model.denoiser(ema=True)
        self.observation_space, self.action_space = observation_space, action_space
        env_columns = _space_columns(observation_space, "observation") + _space_columns(action_space, "action")
        if env_columns != self.encoder.columns:
            raise DataError(f"the environment's observation/action spaces give columns {env_columns}, but the model "
                            f"was trained on {self.encoder.columns}; plan in the environment the data set came from")
        defaults = loaded.defaults
        self.rows = defaults.length
        self.skip = self.encoder.skip
        if self.config.replan_every % self.skip:
            raise ConfigError(f"replan_every ({self.config.replan_every}) must be a multiple of the model's "
                              f"{self.skip} steps per token")
        if self.config.replan_every >= self.rows:  # past its last row a plan has no action and no warm start
            raise ConfigError(f"replan_every ({self.config.replan_every}) must be below the plan's {self.rows} rows: "
                              f"replan every {self.rows - self.skip} steps or fewer, or train a longer horizon")
        self.tokens = self.rows // self.skip
        names = self.encoder.columns
        self.obs_cols = [i for i, c in enumerate(names) if not c.startswith("action")]
        self.action_cols = [i for i, c in enumerate(names) if c.startswith("action")]
        self.goal_cols = [i for i, c in enumerate(names) if c.startswith("desired_goal")]
        self.achieved_cols = [i for i, c in enumerate(names) if c.startswith("achieved_goal")]
        self.position_cols: list[int] = []
        self.velocity_cols: list[int] = []
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._support_guide: CostGradient | None = None
        self.stats = PlannerStats()
        self.reset()

    # ------------------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forgets the current plan (call at the start of each episode)."""
        self.plan_tokens: np.ndarray | None = None
        self.plan_rows: np.ndarray | None = None
        self.since_plan = 0
        self.arrival: int | None = None
        self.goal_token: int | None = None
        self.plan_plausible = True

    @property
    def goal_task(self) -> bool:
        return bool(self.goal_cols) and bool(self.position_cols)

    def _row(self, obs: Any) -> np.ndarray:
        values = _flatten(_batched(obs), self.observation_space)[0]
        row = np.zeros(len(self.encoder.columns))
        row[self.obs_cols] = values
        if not self.position_cols and self.achieved_cols:
            self._find_positions(row)
        return row

    def _find_positions(self, row: np.ndarray) -> None:
        """Observation columns that mirror ``achieved_goal`` (the agent's position), found by value."""
        names = self.encoder.columns
        candidates = [i for i, c in enumerate(names) if c.startswith("observation")]
        found = []
        for a in self.achieved_cols:
            match = [i for i in candidates if np.isclose(row[i], row[a]) and i not in found]
            if not match:
                return
            found.append(match[0])
        self.position_cols = found
        # velocity: the observation columns right after the positions, when there are as many
        after = [i for i in candidates if i not in found][: len(found)]
        self.velocity_cols = after if len(after) == len(found) else []

    @property
    def controller(self) -> str:
        if self.config.controller == "auto":  # a return-conditioned plan acts through inverse dynamics if it has them
            conditioned = self.inverse is not None and self.condition is not None
            return "states" if self.goal_task else "inverse" if conditioned else "actions"
        if self.config.controller == "inverse" and self.inverse is None:
            raise ConfigError("controller='inverse' needs inverse dynamics; fit them with `trajdiff fit-inverse`")
        if self.config.controller == "states" and not self.position_cols:
            raise ConfigError("controller='states' needs positional observations (achieved_goal mirrored in the "
                              "observation); use controller='actions' for this environment")
        return self.config.controller

    # ------------------------------------------------------------------------------ planning

    def _goal_tokens(self, warm: bool) -> list[int]:
        """The token each candidate must reach the goal by. With ``spread_goals`` the candidates aim
        at evenly spaced tokens (the earliest feasible one is kept), so a goal close by is reached
        soon instead of at the end of the horizon after a detour; a warm start keeps the previous
        plan's (shifted) arrival token among them."""
        last = self.tokens - 1
        count = self.config.candidates
        if not self.config.spread_goals:
            return [last] * count
        ladder = [max(1, round(self.tokens * (c + 1) / count) - 1) for c in range(count)]
        previous = self.goal_token
        if warm and previous is not None:
            previous -= self.since_plan // self.skip
            if previous >= 1 and previous not in ladder:
                nearest = min(range(count), key=lambda c: abs(ladder[c] - previous))
                ladder[nearest] = previous
        return sorted(ladder)

    def _conditioning(self, row: np.ndarray, goal_tokens: list[int]) -> tuple[torch.Tensor, list[BaseGuide]]:
        """The present as a clean first token (as in training) and, in goal tasks, the goal position
        inpainted into token ``goal_tokens[c]`` of candidate ``c``."""
        window = np.repeat(row[None], self.rows, axis=0)
        tokens, _ = self.encoder.encode(window, self.skip)
        present = torch.from_numpy(tokens).float()
        if not self.goal_task:
            return present, []
        goal_window = window.copy()
        goal_window[:, self.position_cols] = row[self.goal_cols]
        goal_tokens_values, _ = self.encoder.encode(goal_window, self.skip)
        mask = np.zeros((len(goal_tokens), self.tokens, self.encoder.dim), dtype=bool)
        columns = [self.encoder.kept.index(i) for i in self.position_cols]
        for c, k in enumerate(goal_tokens):
            mask[c, k, columns] = True
        mask_t, values_t = torch.from_numpy(mask), torch.from_numpy(goal_tokens_values).float()
        guides: list[BaseGuide] = []
        if self.config.goal_guidance > 0:
            def goal_cost(x0: torch.Tensor) -> torch.Tensor:
                return ((x0 - values_t) ** 2 * mask_t).sum(dim=(1, 2))

            guides.append(CostGradient(goal_cost, scale=self.config.goal_guidance, through_model=True))
        if self.config.support_guidance > 0 and self.encoder.support is not None:
            if self._support_guide is None:  # built once: the positions and the normalizer do not change
                self._support_guide = CostGradient(self._support_cost(columns), scale=self.config.support_guidance)
            guides.append(self._support_guide)
        guides.append(Inpaint(mask_t, values_t))
        return present, guides

    def _support_cost(self, columns: list[int]) -> Any:
        """Squared distance from the data's support of the plan's positions, at every token and at
        three points on the line to the next (where walls are crossed)."""
        support = self.encoder.support
        assert support is not None
        state = self.encoder.normalizer.state_dict()
        shift = torch.tensor(np.asarray(state["shift"], dtype=np.float64)[columns]).float()
        scale = torch.tensor(np.asarray(state["scale"], dtype=np.float64)[columns]).float()
        between = torch.tensor([0.0, 0.25, 0.5, 0.75])[:, None, None]

        def cost(x0: torch.Tensor) -> torch.Tensor:
            positions = x0[..., columns] * scale + shift  # [B, T, D]
            start, end = positions[:, :-1], positions[:, 1:]
            points = start[None] + between[..., None] * (end - start)[None]  # [4, B, T-1, D]
            return (support.distance(points) ** 2).sum(dim=(0, 2))

        return cost

    def plan(self, obs: Any) -> np.ndarray:
        """Samples plans from the current observation and keeps the best; returns its rows ``[T, F]``."""
        started = time.perf_counter()
        row = self._row(obs)
        cfg = self.config
        # a plan that moved too fast is not worth refining: plan from noise again
        warm = cfg.warm_start and self.plan_tokens is not None and self.plan_plausible
        goal_tokens = self._goal_tokens(warm) if self.goal_task else []
        present, guides = self._conditioning(row, goal_tokens)
        if self.value is not None and cfg.value_guidance > 0:
            guides = [ValueGuide(self.value, cfg.value_guidance), *guides]
        guides = [*self.condition_guides, *guides]  # classifier-free guidance innermost, on the network itself
        observed = torch.zeros(self.tokens, dtype=torch.bool)
        observed[0] = True  # the present state
        warm_values = None
        if warm:
            shift = self.since_plan // self.skip
            previous = self.plan_tokens[shift:]  # type: ignore[index]
            pad = np.repeat(previous[-1:], self.tokens - len(previous), axis=0)
            warm_values = torch.from_numpy(np.concatenate([previous, pad])).float()[None]
        drawn = sample_conditional(
            self.denoise, self.model.schedule, Known(present[None], observed, warm=warm_values),
            samples=cfg.candidates, nfe=cfg.warm_nfe if warm else cfg.nfe, solver=cfg.solver, plan=cfg.plan,
            plan_options={**cfg.plan_options, "start": cfg.warm_level} if warm else cfg.plan_options or None,
            guides=guides, generator=self.generator, cond=self.condition,
        )[:, 0].numpy()
        rows = self.encoder.decode(drawn, {"rows": self.rows, "first": row})  # [C, T, F]
        best = self._choose(rows) if self.goal_task or self.value is None else self._most_valuable(drawn)
        self.plan_tokens, self.plan_rows = drawn[best], rows[best]
        self.arrival = self._arrival(rows[best])
        self.goal_token = goal_tokens[best] if goal_tokens else None
        self.plan_plausible = self._plausible(rows[best])
        self.since_plan = 0
        (self.stats.warm_plans if warm else self.stats.plans).append(time.perf_counter() - started)
        return rows[best]

    def _most_valuable(self, drawn: np.ndarray) -> int:
        """The candidate whose clean plan the value function rates highest (Diffuser's choice)."""
        with torch.no_grad():
            x = torch.from_numpy(drawn).float()
            return int(torch.argmax(self.value(x, torch.zeros(x.shape[:2]))))  # type: ignore[misc]

    def _arrival(self, rows: np.ndarray) -> int | None:
        if not self.goal_task:
            return None
        distance = np.linalg.norm(rows[:, self.position_cols] - rows[0, self.goal_cols], axis=1)
        hits = np.nonzero(distance <= self.config.goal_radius)[0]
        return int(hits[0]) if len(hits) else None

    def _overspeed(self, rows: np.ndarray) -> float:
        """How much faster than anything in the data the plan moves its positions between tokens:
        the largest ratio of a token-to-token change to the data's largest one (<= 1: plausible)."""
        limits = self.encoder.step_limits
        if limits is None or not self.position_cols:
            return 0.0
        tokens = rows[:: self.skip][:, self.position_cols]
        bound = np.asarray([limits[self.encoder.kept.index(i)] for i in self.position_cols])
        return float(np.max(np.abs(np.diff(tokens, axis=0)) / np.maximum(bound, 1e-9)))

    def _off_support(self, rows: np.ndarray) -> float:
        """Share of the plan's steps (tokens and the straight lines between them) whose position lies
        where the data never went (the encoder's ``support``), e.g. inside a wall."""
        support = self.encoder.support
        if not self.config.support_check or support is None or not self.position_cols:
            return 0.0
        return float(1.0 - support.contains(rows[:, self.position_cols]).mean())

    def _plausible(self, rows: np.ndarray) -> bool:
        return self._overspeed(rows) <= self.config.speed_margin and self._off_support(rows) == 0.0

    def _choose(self, rows: np.ndarray) -> int:
        """Among the plausible plans (no faster than the data allows, ``speed_margin``, and inside
        the data's support), the one that reaches the goal first, else the one that comes closest (a
        plan that stays put is never preferred for being short); when no plan is plausible, the one
        with the fewest steps outside the support, then the least too fast."""
        if not self.goal_task or len(rows) == 1:
            return 0
        scores = []
        for candidate in rows:
            arrival = self._arrival(candidate)
            closest = float(np.min(np.linalg.norm(candidate[:, self.position_cols] - candidate[0, self.goal_cols],
                                                  axis=1)))
            overspeed, outside = self._overspeed(candidate), self._off_support(candidate)
            too_fast = overspeed > self.config.speed_margin
            scores.append((too_fast or outside > 0, outside, overspeed if too_fast else 0.0,
                           arrival if arrival is not None else len(candidate), closest))
        return int(min(range(len(rows)), key=scores.__getitem__))

    # ------------------------------------------------------------------------------ acting

    def act(self, obs: Any) -> np.ndarray:
        """The action for this step (replanning when due); records the decision time."""
        started = time.perf_counter()
        if self.plan_rows is None or self.since_plan >= self.config.replan_every:
            self.plan(obs)
        row = self._row(obs)
        assert self.plan_rows is not None
        i = self.since_plan
        if self.controller == "actions":
            action = self.plan_rows[min(i, len(self.plan_rows) - 1), self.action_cols]
        elif self.controller == "inverse":  # the action from the state reached to the next planned one
            planned = self.plan_rows[min(i + 1, len(self.plan_rows) - 1)]
            action = self.inverse.act(row[self.obs_cols], planned[self.obs_cols])  # type: ignore[union-attr]
        else:
            action = self._track(row, i)
        self.since_plan += 1
        low, high = self.action_space.low, self.action_space.high
        action = np.clip(action, low, high).astype(self.action_space.dtype)
        self.stats.decisions.append(time.perf_counter() - started)
        return action

    def _track(self, row: np.ndarray, i: int) -> np.ndarray:
        assert self.plan_rows is not None
        pos, goal = row[self.position_cols], row[self.goal_cols]
        vel = row[self.velocity_cols] if self.velocity_cols else np.zeros_like(pos)
        end = self.arrival if self.arrival is not None else len(self.plan_rows) - 1
        if np.linalg.norm(goal - pos) <= self.config.goal_radius or i + self.config.lookahead >= end \
                and self.arrival is not None:
            target, target_vel = goal, np.zeros_like(pos)
        else:
            j = min(i + self.config.lookahead, end)
            target = self.plan_rows[j, self.position_cols]
            target_vel = self.plan_rows[j, self.velocity_cols] if self.velocity_cols else np.zeros_like(pos)
        return self.config.kp * (target - pos) + self.config.kd * (target_vel - vel)


def _batched(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {key: np.asarray(value)[None] for key, value in obs.items()}
    return np.asarray(obs)[None]
