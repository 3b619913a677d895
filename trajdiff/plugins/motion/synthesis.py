"""Motion-specific sampling: label conditioning with classifier-free guidance, forecasting with physical guides,
and endless synthesis through the rolling plan (`samplers.stream`).

The models come from `trajdiff.api.train` with the motion recipes (`MotionDomain.recipes`): "forecast" (one
noise level per window, the history held clean: Diffuser-style full-sequence sampling of the future) and
"stream" (the rolling window's staircase after a clean context: Rolling Diffusion / TEDi), both conditioned on
the clip category (``defaults["label"]``, one-hot over ``defaults["labels"]``); "stream" also stores a seed
context per category (``extra["recipe"]["stored"]["seeds"]``) for `synthesize`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.core import samplers
from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.core.guidance import BaseGuide, ClassifierFree, CostGradient
from trajdiff.core.model import DiffusionModel
from trajdiff.core.schedules import Schedule
from trajdiff.errors import ConfigError
from trajdiff.plugins.motion import guides
from trajdiff.plugins.motion.encoder import MotionEncoder

__all__ = [
    "CONSTRAINTS",
    "DEFAULT_COSTS",
    "ProjectClean",
    "condition",
    "forecast_guides",
    "sample_forecasts",
    "synthesize",
]

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


def _motion_extra(model: DiffusionModel) -> dict[str, Any]:
    """What sampling reads from a model's config: its recipe, label categories, context and rolling-window
    tokens, and seed contexts per category."""
    if "motion" in model.extra:  # a model written by the former motion-only trainer
        return dict(model.extra["motion"])
    defaults = model.extra["defaults"]
    patch = int(model.extra["encoder"]["patch"])
    recipe = model.extra.get("recipe") or {}
    return {"mode": recipe.get("name", "forecast"),
            "categories": list(defaults.get("labels") or []) if defaults.get("label") else [],
            "context_tokens": int(defaults["history"]) // patch, "window_tokens": int(defaults["horizon"]) // patch,
            "seeds": dict((recipe.get("stored") or {}).get("seeds", {}))}


def condition(model: DiffusionModel, label: str | None, batch: int) -> Tensor | None:
    """The one-hot condition for ``label`` (a category such as walk, run, dance), or None (unconditional)."""
    extra = _motion_extra(model)
    categories = extra["categories"]
    if label is None:
        return None
    if not categories:
        raise ConfigError("this motion model was trained without labels, so --label cannot be used; train one "
                          "with `trajdiff train --domain motion --recipe stream` (or forecast)")
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
    cond = condition(model, label, contexts.shape[0])
    scale = guidance if cond is not None else None
    chosen = forecast_guides(encoder, constraints, costs, scale)
    first = 1 if scale is not None else 0  # classifier-free guidance stays innermost
    known = Known.history(torch.from_numpy(contexts).float(), history_tokens)
    drawn = sample_conditional(model.denoiser(), model.schedule, known, samples=samples, nfe=nfe, solver=solver,
                               cond=cond, guides=[*chosen[:first], *extra_guides, *chosen[first:]],
                               generator=torch.Generator().manual_seed(seed))
    return drawn.numpy()


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
