"""Motion-specific training and sampling: label conditioning with classifier-free guidance, forecasting with
physical guides, and endless synthesis through the rolling plan (`samplers.stream`).

`train_motion` writes a model directory that `trajdiff.api.load_model` reads like any other (``extra`` holds
domain, encoder and defaults as `api.train` writes them) plus ``extra["motion"]``: the training mode, the label
categories (the condition is their one-hot vector, dropped with probability ``cond_dropout`` so the same network
is also the unconditional model), the rolling window and seed contexts per category for `synthesize`.

Two training modes, because one noise-level distribution does not serve both plans equally well on a CPU budget:
``forecast`` (one level per window, the history held clean: Diffuser-style full-sequence sampling of the future)
and ``stream`` (the rolling window's staircase after a clean context: Rolling Diffusion / TEDi).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff import __version__
from trajdiff.core import plans, samplers
from trajdiff.core.data import Episodes
from trajdiff.core.guidance import BaseGuide, ClassifierFree, CostGradient
from trajdiff.core.model import DiffusionModel
from trajdiff.core.schedules import Schedule
from trajdiff.core.training import TrainConfig, TrainData, Trainer
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.motion import guides
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.loader import CATEGORIES
from trajdiff.plugins.spec import ModelDefaults

__all__ = [
    "CONSTRAINTS",
    "DEFAULT_COSTS",
    "MODES",
    "ProjectClean",
    "TrainedMotion",
    "forecast_guides",
    "sample_forecasts",
    "synthesize",
    "train_motion",
    "training_windows",
]

MODES = ("forecast", "stream")
CONSTRAINTS = ("bone_lengths", "ground", "foot_lock")
DEFAULT_COSTS = {"skating": 300.0}
"""Cost guidance used with the constraints by default: the foot lock only catches slow slides, the skating
cost's gradient also slows fast ones (measured in benchmarks/motion.py)."""


class ProjectClean(BaseGuide):
    """A projection applied to the x0 prediction at every step and to tokens that have become clean (level 0),
    but never to noisy tokens, whose decoded poses are not poses yet."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self._last: Tensor | None = None

    def wrap(self, denoise: Any, schedule: Schedule) -> Any:
        from trajdiff.core.guidance import _eps_from_x0
        from trajdiff.core.parametrize import Prediction

        def projected(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            self._last = x.detach()
            prediction = denoise(x, k, cond)
            alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
            x0 = self.fn(prediction.x0)
            return Prediction(x0, _eps_from_x0(x, x0, alpha, sigma, prediction.eps))

        return projected

    def after_step(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        clean = (k == 0)[..., None]
        if not bool(clean.any()):
            return x
        # The sampler hands guides the raw step for tokens that did not move (e.g. 0/0 = NaN for clean context
        # under DPM-Solver++) and restores them afterwards; a projection that couples frames (the foot lock) must
        # see their real values, which are those of the state before the step.
        if self._last is not None and self._last.shape == x.shape:
            x = torch.where(torch.isfinite(x), x, self._last)
        return torch.where(clean, self.fn(x), x)


@dataclass
class TrainedMotion:
    """What `train_motion` did."""

    model_dir: Path
    mode: str
    steps: int
    seconds: float
    final_loss: float
    windows: int


def training_windows(episodes: Episodes, encoder: MotionEncoder, frames: int, stride: int,
                     categories: Sequence[str] = CATEGORIES) -> tuple[np.ndarray, np.ndarray]:
    """Encoded windows ``[N, frames / patch, D]`` of every episode (step ``stride`` frames) and the category
    index of each window's clip ``[N]``."""
    xs, labels = [], []
    for i, seq in enumerate(episodes.sequences):
        category = (episodes.meta[i] or {}).get("category", "other")
        index = list(categories).index(category) if category in categories else len(categories) - 1
        if len(seq) < frames:
            continue
        per = encoder.patch
        usable = len(seq) - len(seq) % per
        tokens = encoder.to_tokens(encoder.features(seq)[:usable])  # features are per frame: encode the clip once
        for start in range(0, len(seq) - frames + 1, stride):
            if start % per == 0:
                xs.append(tokens[start // per:(start + frames) // per])
            else:
                xs.append(encoder.encode(seq[start:start + frames], 0)[0])
            labels.append(index)
    if not xs:
        raise DataError(f"no clip has the {frames} frames of one training window; the longest has "
                        f"{max(episodes.lengths)}. Use a shorter window or more data.")
    return np.stack(xs).astype(np.float32), np.asarray(labels)


def train_motion(
    episodes: Episodes,
    out: str | Path,
    *,
    mode: str = "forecast",
    history: int = 30,
    horizon: int = 60,
    patch: int = 2,
    steps: int = 3000,
    minutes: float | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    stride: int = 5,
    network: dict[str, Any] | None = None,
    cond_dropout: float = 0.1,
    categories: Sequence[str] = CATEGORIES,
    seed: int = 0,
    progress: bool = False,
    resume: bool = False,
) -> TrainedMotion:
    """Trains a label-conditioned motion model on clips (``history`` + ``horizon`` frames per window; in
    ``stream`` mode these are the clean context and the rolling window) and writes ``out``. With
    ``resume`` a model already in ``out`` (same network) trains on from its checkpoint: ``minutes``
    more, up to ``steps`` in all."""
    if mode not in MODES:
        raise ConfigError(f"unknown motion training mode {mode!r}; choose one of {list(MODES)}")
    if history % patch or horizon % patch:
        raise ConfigError(f"history ({history}) and horizon ({horizon}) frames must be multiples of patch {patch}")
    from trajdiff.plugins.manager import get_plugins

    registry = get_plugins()
    domain = registry.domain("motion")
    encoder = domain.make_encoder(patch=patch, history=history, horizon=horizon).fit(episodes)
    x, labels = training_windows(episodes, encoder, history + horizon, stride, categories)
    cond = torch.nn.functional.one_hot(torch.from_numpy(labels), len(categories)).float()
    context, window = history // patch, horizon // patch
    net = dict(network or {"kind": "transformer", "width": 128, "depth": 4, "heads": 4})
    net.update(dim=encoder.dim, cond_dim=len(categories))
    defaults = ModelDefaults(history=history, horizon=horizon, network=dict(net), steps=steps, batch_size=batch_size,
                             lr=lr, stride=stride, nfe=20, samples=10, encoder={"patch": patch})
    seeds = {}
    for n, category in enumerate(categories):
        hits = np.flatnonzero(labels == n)
        if len(hits):
            seeds[category] = x[hits[len(hits) // 2], :context].tolist()
    model = DiffusionModel(net, schedule="cosine", parametrization="v", extra={
        "domain": "motion", "plugin": registry.domain_plugin("motion"),
        "package": registry.packages.get(registry.domain_plugin("motion"), ""),
        "encoder": encoder.state_dict(), "defaults": asdict(defaults), "trajdiff_version": __version__,
        "motion": {"mode": mode, "categories": list(categories), "context_tokens": context, "window_tokens": window,
                   "seeds": seeds},
    })
    config = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, noise="shared" if mode == "forecast" else "rolling",
        window=window if mode == "stream" else None, history=context if mode == "forecast" else 0,
        history_prob=0.9, cond_dropout=cond_dropout, max_minutes=minutes, seed=seed, progress=progress,
        checkpoint_every=max(100, steps // 5), warmup_steps=min(100, steps // 10 + 1),
    )
    torch.manual_seed(seed)
    result = Trainer(model, TrainData(torch.from_numpy(x), cond=cond), config, out_dir=out, resume=resume,
                     metadata={"windows": int(len(x)), "episodes": len(episodes)}).fit()
    final = float(np.mean(result.losses[-50:])) if result.losses else float("nan")
    return TrainedMotion(Path(out), mode, result.step, result.seconds, final, int(len(x)))


def _motion_extra(model: DiffusionModel) -> dict[str, Any]:
    extra = model.extra.get("motion")
    if extra is None:
        return {"mode": "forecast", "categories": [], "context_tokens": None, "window_tokens": None, "seeds": {}}
    return extra


def condition(model: DiffusionModel, label: str | None, batch: int) -> Tensor | None:
    """The one-hot condition for ``label`` (a category such as walk, run, dance), or None (unconditional)."""
    extra = _motion_extra(model)
    categories = extra["categories"]
    if label is None:
        return None
    if not categories:
        raise ConfigError("this motion model was trained without labels (use a model from train_motion or "
                          "`trajdiff sample`'s training), so --label cannot be used")
    if label not in categories:
        raise ConfigError(f"unknown label {label!r}; this model knows {categories}")
    cond = torch.zeros(batch, len(categories))
    cond[:, categories.index(label)] = 1.0
    return cond


def forecast_guides(encoder: MotionEncoder, constraints: Sequence[str] = ("bone_lengths", "ground", "foot_lock"),
                    costs: dict[str, float] | None = None, guidance: float | None = None) -> list[Any]:
    """Guides for motion sampling: classifier-free guidance (if ``guidance``), cost gradients (name -> scale:
    penetration, skating, bone_length, joint_limits) and clean-token projections (bone_lengths, ground,
    foot_lock), in that order."""
    projections = {"bone_lengths": guides.bone_projection, "ground": guides.ground_projection,
                   "foot_lock": guides.foot_lock_projection}
    cost_makers = {"penetration": guides.penetration_cost, "skating": guides.skating_cost,
                   "bone_length": guides.bone_cost, "joint_limits": guides.angle_cost}
    out: list[Any] = [ClassifierFree(guidance)] if guidance is not None else []
    for name, scale in (costs or {}).items():
        if name not in cost_makers:
            raise ConfigError(f"unknown motion cost {name!r}; choose from {sorted(cost_makers)}")
        out.append(CostGradient(cost_makers[name](encoder), scale=scale))
    for name in constraints:
        if name not in projections:
            raise ConfigError(f"unknown motion constraint {name!r}; choose from {sorted(projections)}")
        out.append(ProjectClean(projections[name](encoder)))
    return out


def sample_forecasts(model: DiffusionModel, encoder: MotionEncoder, contexts: np.ndarray, history_tokens: int, *,
                     samples: int, nfe: int = 20, label: str | None = None, guidance: float = 1.0,
                     constraints: Sequence[str] = (), costs: dict[str, float] | None = None,
                     solver: str = "dpmpp2m", seed: int = 0, extra_guides: Sequence[Any] = ()) -> np.ndarray:
    """Futures for encoded windows ``[N, L, D]`` whose first ``history_tokens`` are observed: ``[S, N, L, D]``.
    ``extra_guides`` (e.g. a `CostGradient` of `guides.root_path_cost`) act before the constraints."""
    n, length, dim = contexts.shape
    plan = plans.with_context(plans.full_sequence(length, nfe), slice(0, history_tokens))
    context = torch.from_numpy(contexts).float().repeat_interleave(samples, dim=0)
    cond = condition(model, label, len(context))
    generator = torch.Generator().manual_seed(seed)
    start = samplers.initial_state(context.shape, plan, model.schedule, context=context, generator=generator)
    scale = guidance if cond is not None else None
    chosen = forecast_guides(encoder, constraints, costs, scale)
    first = 1 if scale is not None else 0  # classifier-free guidance stays innermost
    drawn = samplers.sample(model.denoiser(), start, plan, model.schedule, solver=solver, cond=cond,
                            guides=[*chosen[:first], *extra_guides, *chosen[first:]], generator=generator)
    return drawn.reshape(n, samples, length, dim).transpose(0, 1).numpy()


def synthesize(model: DiffusionModel, encoder: MotionEncoder, *, seconds: float, label: str | None = None,
               samples: int = 1, guidance: float = 2.0, substeps: int = 2, context: np.ndarray | None = None,
               constraints: Sequence[str] = CONSTRAINTS, costs: dict[str, float] | None = DEFAULT_COSTS,
               solver: str = "ddim", seed: int = 0,
               progress: bool = False) -> np.ndarray:
    """Endless synthesis: ``samples`` motions of ``seconds`` generated through a rolling window, from a seed context
    (``context`` tokens ``[C, D]``, default the model's stored seed for ``label``). Returns joint positions
    ``[samples, frames, 3 J]`` in metres (the seed's first frame at the origin, facing +Z), seed included."""
    extra = _motion_extra(model)
    window = extra.get("window_tokens") or model.extra["defaults"]["horizon"] // encoder.patch
    if context is None:
        seeds = extra.get("seeds", {})
        key = label if label in seeds else next(iter(seeds), None)
        if key is None:
            raise ConfigError("this model stores no seed motion: pass --data (clips to start from) or context=")
        context = np.asarray(seeds[key], dtype=np.float32)
    seed_tokens = torch.as_tensor(context, dtype=torch.float32)[None].repeat(samples, 1, 1)
    cond = condition(model, label, samples)
    generator = torch.Generator().manual_seed(seed)
    tokens_needed = max(1, math.ceil(seconds * encoder.fps / encoder.patch) - seed_tokens.shape[1])
    stream = samplers.stream(
        model.denoiser(), model.schedule, window=window, batch=samples, dim=encoder.dim, context=seed_tokens,
        substeps=substeps, solver=solver, cond=cond, generator=generator,
        guides=forecast_guides(encoder, constraints, costs, guidance if cond is not None else None),
    )
    produced, started = [], time.monotonic()
    for n in range(tokens_needed):
        produced.append(next(stream))
        if progress and n % 50 == 0:
            print(f"  {n}/{tokens_needed} tokens, {time.monotonic() - started:.0f} s", flush=True)
    tokens = torch.cat([seed_tokens, torch.stack(produced, dim=1)], dim=1).double()
    from trajdiff.plugins.motion.features import decode_world

    world = decode_world(encoder._layout(), encoder.from_tokens(tokens), 0)
    return encoder.all_joints(world.numpy())
