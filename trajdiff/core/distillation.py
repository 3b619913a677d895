"""Distillation: a trained diffusion model (the teacher) -> a student that samples in a few network evaluations.

The student keeps the teacher's network, schedule and parametrization, so its signature: per-token levels
in, a clean-data prediction out. Every plan, clean context token, inpainted entry and guide works with it
as with the teacher. What changes is what its x0 prediction means: not E[x0 | x_k] but the end of the
teacher's probability-flow ODE through x_k (a consistency function, Song et al., 2023). One evaluation
from noise then gives a sample, and a few, re-noised to the plan's next levels in between (the
``consistency`` solver), refine it.

Which ODE path: with per-token levels many paths lead from levels k to 0, and their ends differ. The
student learns one, the *ray* k(s) = s k, s from 1 to 0 (every noisy token moves and all reach 0
together; clean tokens stay clean), so its target is defined for every level vector a plan can show it.

Two methods (`DistillConfig.method`):

- ``trajectory`` (the default): the teacher solves the ODE along the ray from a start drawn as in its own
  training (history held clean, noise on every other token at one level or per token), in
  ``teacher_steps`` UniPC steps on the log-SNR spacing; states it passes are paired with the end, and
  the student regresses the end from each (x0 error, uniform weight). This is knowledge distillation
  (Luhman & Luhman, 2021) with the intermediate states of each trajectory used as well, so its fixed
  point is consistency distillation's, reached without bootstrapping from the student's own targets;
- ``consistency``: consistency distillation (Song et al., 2023): a point drawn from the forward process
  at ray position s_n, one teacher DDIM step to s_{n+1}, the student at s_n regressed onto its own
  prediction (no gradient) at s_{n+1}.

Windows come from a `WindowDraw` (real training windows) or, without one, from the teacher itself: a
pool of its own samples from noise on every token, refreshed by the ends of the trajectories that start
there. The measurement that chose the default is in BENCHMARKS.md, section "Distillation".
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from trajdiff.core.denoiser import Denoiser, network_denoiser
from trajdiff.core.model import DiffusionModel
from trajdiff.core.plans import spacing_levels
from trajdiff.core.progress import Progress
from trajdiff.core.schedules import Schedule, token_coefficients
from trajdiff.core.solvers import Row, get_solver
from trajdiff.core.training import _device
from trajdiff.errors import ConfigError

METHODS = ("trajectory", "consistency")
WindowDraw = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None, Tensor | None]]
"""``(count, generator) -> (x0 [count, T, D], cond [count, C] or None, valid [count, T] or None)``: training windows."""


@dataclass
class DistillConfig:
    """How to distil; stored with the student."""

    nfe: int = 2
    """Network evaluations the student is made for (its default when sampling)."""
    steps: int = 2500
    batch_size: int = 64
    """Student (state, end) pairs per step."""
    lr: float = 3e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    method: str = "trajectory"
    teacher_steps: int = 16
    """Teacher evaluations per trajectory (``trajectory``) or ray grid points (``consistency``)."""
    teacher_solver: str = "unipc"
    states_per_trajectory: int = 4
    """Trajectory states the student sees per teacher trajectory: the start and random others."""
    history: int = 0
    """Context tokens at the start of a window, held clean with probability ``history_prob``."""
    history_prob: float = 0.75
    full_prob: float = 0.5
    """Share of starts with every noisy token at level 1 (the full plan's start); the rest draw their levels as
    the teacher was trained (``noise``)."""
    noise: str = "independent"
    """The teacher's training levels: ``independent`` (per token) or ``shared`` (one per window)."""
    pool: int = 1024
    """Windows of the teacher's own samples kept when no `WindowDraw` is given."""
    max_minutes: float | None = None
    seed: int = 0
    progress: bool = True
    device: str | None = None
    """Where to distil ("cpu", "cuda", "cuda:N"; None: the CPU)."""

    def validate(self, horizon: int) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown distillation method {self.method!r}; choose one of {list(METHODS)}")
        if self.nfe < 1 or self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"nfe, steps and batch_size must be >= 1, got {self.nfe}, {self.steps}, "
                              f"{self.batch_size}")
        if self.teacher_steps < 2 or not 1 <= self.states_per_trajectory <= self.teacher_steps:
            raise ConfigError(f"teacher_steps must be >= 2 and states_per_trajectory in 1..teacher_steps, got "
                              f"{self.teacher_steps}, {self.states_per_trajectory}")
        if self.noise not in ("independent", "shared"):
            raise ConfigError(f"distillation follows teachers trained with independent or shared noise levels, not "
                              f"{self.noise!r}")
        if not 0 <= self.history < horizon:
            raise ConfigError(f"history must be in [0, {horizon - 1}] for windows of {horizon} tokens")
        if not 0.0 <= self.history_prob <= 1.0 or not 0.0 <= self.full_prob <= 1.0:
            raise ConfigError("history_prob and full_prob must lie in [0, 1]")


@dataclass
class DistillResult:
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    teacher_evaluations: int = 0
    """Teacher network evaluations, counted per window."""


def ray_fractions(steps: int, schedule: Schedule) -> Tensor:
    """Positions s on the ray from 1 down to 0, ``[steps + 1]``: a token starting at level 1 walks the
    log-SNR spacing (`plans.spacing_levels`), where the multistep solvers are most accurate."""
    return spacing_levels(steps, "logsnr", schedule).flip(0).float()


def start_levels(batch: int, horizon: int, cfg: DistillConfig, generator: torch.Generator) -> Tensor:
    """Levels ``[B, T]`` a trajectory starts from: the history tokens clean with probability ``history_prob``;
    the others at level 1 with probability ``full_prob``, else drawn as the teacher's training drew them."""
    if cfg.noise == "shared":
        levels = torch.rand(batch, 1, generator=generator).expand(batch, horizon).clone()
    else:
        levels = torch.rand(batch, horizon, generator=generator)
    levels = levels.clamp_min(1e-4)
    full = torch.rand(batch, generator=generator) < cfg.full_prob
    levels[full] = 1.0
    if cfg.history:
        held = torch.rand(batch, generator=generator) < cfg.history_prob
        levels[held, :cfg.history] = 0.0
    return levels


def ray_trajectory(denoise: Denoiser, schedule: Schedule, x: Tensor, levels: Tensor, fractions: Tensor, *,
                   solver: str = "unipc", cond: Tensor | None = None) -> list[Tensor]:
    """The states ``[B, T, D]`` the probability-flow ODE passes from ``x`` at ``levels`` ``[B, T]`` to level 0
    along the ray ``levels * fractions[j]``, one solver step per fraction; tokens at level 0 stay exact."""
    step = get_solver(solver)
    state = step.init_state(x)
    moving = (levels > 0)[..., None]
    states = [x]
    with torch.no_grad():
        for j in range(len(fractions) - 1):
            row = Row(k_from=levels * fractions[j], k_to=levels * fractions[j + 1], moving=moving, all_moving=False,
                      any_lands_noisy=bool(fractions[j + 1] > 0))
            x = torch.where(moving, step.step(denoise, x, row, schedule, cond=cond, state=state, generator=None), x)
            states.append(x)
    return states


def _x0_loss(prediction: Tensor, target: Tensor, levels: Tensor, valid: Tensor | None) -> Tensor:
    """Mean squared x0 error over the noisy (and valid) tokens."""
    active = levels > 0
    if valid is not None:
        active = active & valid
    active = active.to(prediction.dtype)
    error = (prediction - target).square().mean(-1)
    return (error * active).sum() / active.sum().clamp_min(1.0)


class Distiller:
    """Distils ``teacher`` into a student (a copy of the teacher's EMA network, trained); see the module
    docstring. ``draw`` gives training windows; without it the teacher's own samples are used."""

    def __init__(self, teacher: DiffusionModel, config: DistillConfig, *, horizon: int, dim: int,
                 draw: WindowDraw | None = None, cond_dim: int = 0) -> None:
        config.validate(horizon)
        self.config, self.horizon, self.dim, self.draw, self.cond_dim = config, horizon, dim, draw, cond_dim
        self.device = _device(config.device, 0, 1)
        self.teacher = teacher.to(self.device).eval()
        self.teacher_denoise = teacher.denoiser(ema=True)
        self.student = DiffusionModel(copy.deepcopy(teacher.ema).requires_grad_(True), teacher.schedule,
                                      teacher.parametrization, teacher.sigma_data, extra=copy.deepcopy(teacher.extra))
        self.schedule = teacher.schedule
        self.fractions = ray_fractions(config.teacher_steps, self.schedule).to(self.device)
        self.optimizer = torch.optim.AdamW(self.student.network.parameters(), lr=config.lr, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.teacher_evaluations = 0
        self._pool: Tensor | None = None
        self._pool_cond: Tensor | None = None

    # ------------------------------------------------------------------------------------------- windows

    def _random_cond(self, count: int) -> Tensor | None:
        """One-hot conditions of uniformly drawn classes (the teacher's own samples need one each)."""
        if not self.cond_dim:
            return None
        classes = torch.randint(self.cond_dim, (count,), generator=self.generator)
        return torch.nn.functional.one_hot(classes, self.cond_dim).float().to(self.device)

    def _on(self, value: Tensor | None) -> Tensor | None:
        return None if value is None else value.to(self.device)

    def _windows(self, count: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.draw is not None:
            x0, cond, valid = self.draw(count, self.generator)
            return x0.to(self.device), self._on(cond), self._on(valid)
        if self._pool is None:
            noise = torch.randn(self.config.pool, self.horizon, self.dim, generator=self.generator).to(self.device)
            cond = self._random_cond(self.config.pool)
            ones = torch.ones(self.config.pool, self.horizon, device=self.device)
            ends = [ray_trajectory(self.teacher_denoise, self.schedule, noise[lo:lo + 256], ones[lo:lo + 256],
                                   self.fractions, solver=self.config.teacher_solver,
                                   cond=None if cond is None else cond[lo:lo + 256])[-1]
                    for lo in range(0, self.config.pool, 256)]
            self.teacher_evaluations += self.config.pool * self.config.teacher_steps
            self._pool, self._pool_cond = torch.cat(ends), cond
        pick = torch.randint(len(self._pool), (count,), generator=self.generator).to(self.device)
        return self._pool[pick], None if self._pool_cond is None else self._pool_cond[pick], None

    def _refresh_pool(self, ends: Tensor, levels: Tensor, cond: Tensor | None) -> None:
        """The ends of trajectories that started from noise on every token are new samples of the teacher."""
        if self._pool is None:
            return
        fresh = (levels == 1.0).all(dim=1)
        count = int(fresh.sum())
        if count:
            slots = torch.randint(len(self._pool), (count,), generator=self.generator).to(self.device)
            self._pool[slots] = ends[fresh]
            if self._pool_cond is not None and cond is not None:
                self._pool_cond[slots] = cond[fresh]

    # -------------------------------------------------------------------------------------------- steps

    def _learning_rate(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    def _start(self, count: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Noisy starts ``x`` with their levels, conditions and validity."""
        x0, cond, valid = self._windows(count)
        levels = start_levels(count, self.horizon, self.config, self.generator).to(self.device)
        alpha, sigma = token_coefficients(self.schedule, levels)
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device)
        return torch.where(levels[..., None] > 0, alpha * x0 + sigma * noise, x0), levels, cond, valid

    def _trajectory_loss(self, student: Denoiser) -> Tensor:
        cfg = self.config
        count = max(1, cfg.batch_size // cfg.states_per_trajectory)
        x, levels, cond, valid = self._start(count)
        states = ray_trajectory(self.teacher_denoise, self.schedule, x, levels, self.fractions,
                                solver=cfg.teacher_solver, cond=cond)
        self.teacher_evaluations += count * cfg.teacher_steps
        end = states[-1]
        self._refresh_pool(end, levels, cond)
        order = torch.rand(count, cfg.teacher_steps - 1, generator=self.generator).argsort(dim=1)
        others = order[:, :cfg.states_per_trajectory - 1] + 1
        chosen = torch.cat([torch.zeros(count, 1, dtype=torch.long), others], dim=1).to(self.device)  # start, others
        stacked = torch.stack(states[:-1], dim=1)  # [B, S, T, D]
        picked = torch.gather(stacked, 1, chosen[..., None, None].expand(-1, -1, *stacked.shape[2:]))
        at = levels[:, None] * self.fractions[chosen][..., None]  # [B, m, T]
        m = cfg.states_per_trajectory
        flat = picked.reshape(count * m, *picked.shape[2:])
        flat_levels = at.reshape(count * m, -1)
        rep = (lambda t: None if t is None else t.repeat_interleave(m, dim=0))  # noqa: E731
        prediction = student(flat, flat_levels, rep(cond)).x0
        return _x0_loss(prediction, rep(end), flat_levels, rep(valid))

    def _consistency_loss(self, student: Denoiser, target: Denoiser) -> Tensor:
        cfg = self.config
        x0, cond, valid = self._windows(cfg.batch_size)
        levels = start_levels(cfg.batch_size, self.horizon, cfg, self.generator).to(self.device)
        n = torch.randint(cfg.teacher_steps, (cfg.batch_size,), generator=self.generator).to(self.device)
        k_from = levels * self.fractions[n][:, None]
        k_to = levels * self.fractions[n + 1][:, None]
        alpha, sigma = token_coefficients(self.schedule, k_from)
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device)
        x = torch.where(k_from[..., None] > 0, alpha * x0 + sigma * noise, x0)
        with torch.no_grad():
            taught = self.teacher_denoise(x, k_from, cond)
            alpha_to, sigma_to = token_coefficients(self.schedule, k_to)
            moved = torch.where(k_from[..., None] > 0, alpha_to * taught.x0 + sigma_to * taught.eps, x)
            goal = target(moved, k_to, cond).x0
        self.teacher_evaluations += cfg.batch_size
        return _x0_loss(student(x, k_from, cond).x0, goal, k_from, valid)

    def fit(self) -> DistillResult:
        """Trains the student for ``config.steps`` (or ``max_minutes``); returns what it did."""
        cfg = self.config
        network = self.student.network.train()
        student = network_denoiser(network, self.schedule, self.student.parametrization, self.student.sigma_data)
        losses: list[float] = []
        started, stopped_early, step = time.monotonic(), False, 0
        with Progress(cfg.steps, "distilling", "step", enabled=cfg.progress) as bar:
            while step < cfg.steps:
                if cfg.max_minutes is not None and time.monotonic() - started > 60.0 * cfg.max_minutes:
                    stopped_early = True
                    break
                for group in self.optimizer.param_groups:
                    group["lr"] = self._learning_rate(step)
                if cfg.method == "trajectory":
                    loss = self._trajectory_loss(student)
                else:
                    loss = self._consistency_loss(student, student)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
                self.optimizer.step()
                step += 1
                self.student.update_ema(min(cfg.ema_decay, (1.0 + step) / (10.0 + step)))
                losses.append(float(loss.detach()))
                recent = losses[-50:]
                bar.update(1, loss=f"{sum(recent) / len(recent):.4f}")
        network.eval()
        return DistillResult(step, losses, time.monotonic() - started, stopped_early, self.teacher_evaluations)
