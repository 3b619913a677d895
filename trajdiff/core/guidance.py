"""Guides that steer sampling and compose in a list.

A guide may wrap the denoiser (change its x0 / eps prediction), set up the starting state, and
act after every solver step. The sampler loop keeps tokens whose level did not change
bit-identical, whatever a guide does.

- `Inpaint`: known entries are overwritten (observations, start and goal states);
- `CostGradient`: gradient steps on a differentiable cost of the x0 prediction (Diffuser's value
  guidance, MotionDiffuser's constraint costs; DPS when the gradient goes through the network);
- `Project`: a hard projection onto the feasible set after each step (SafeDiffuser, PhysDiff);
- `ClassifierFree`: mixes conditional and unconditional predictions (Ho & Salimans, 2022).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import Schedule
from trajdiff.core.streams import normal
from trajdiff.errors import ConfigError, ShapeError

Cost = Callable[[Tensor], Tensor]
"""A differentiable cost of clean sequences ``[B, T, D] -> [B]`` (lower is better)."""


class BaseGuide:
    """No-op defaults for the three guide hooks."""

    evaluations: int = 1
    """Network evaluations per call of the wrapped denoiser (what ``nfe`` counts)."""

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        return denoise

    def prepare(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        return x

    def after_step(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        return x


def _eps_from_x0(x: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor, fallback: Tensor) -> Tensor:
    """The noise consistent with ``x`` and a changed x0 estimate (the old one where sigma = 0)."""
    eps = (x - alpha * x0) / sigma.clamp_min(1e-12)
    return torch.where((sigma > 0).expand_as(x), eps, fallback)


class Inpaint(BaseGuide):
    """Entries where ``mask`` is true take ``values``: exactly in the output, and at every step the
    x0 prediction holds them and the noisy state holds them noised to the current level.

    ``mask`` and ``values`` broadcast to ``[B, T, D]`` (a ``[T, D]`` mask applies to every sample).
    """

    def __init__(self, mask: Tensor, values: Tensor) -> None:
        if mask.dtype != torch.bool:
            raise ShapeError(f"Inpaint mask must be boolean, got {mask.dtype}")
        try:
            torch.broadcast_shapes(mask.shape, values.shape)
        except RuntimeError:
            raise ShapeError(
                f"Inpaint mask {tuple(mask.shape)} and values {tuple(values.shape)} do not broadcast together"
            ) from None
        self.mask = mask
        self.values = values

    def _masked(self, x: Tensor) -> tuple[Tensor, Tensor]:
        try:
            mask = self.mask.to(x.device).expand_as(x)
            values = self.values.to(device=x.device, dtype=x.dtype).expand_as(x)
        except RuntimeError:
            raise ShapeError(
                f"Inpaint mask {tuple(self.mask.shape)} does not fit sequences of shape {tuple(x.shape)}"
            ) from None
        return mask, values

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        def inpainted(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            prediction = denoise(x, k, cond)
            mask, values = self._masked(x)
            alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
            x0 = torch.where(mask, values, prediction.x0)
            return Prediction(x0, _eps_from_x0(x, x0, alpha, sigma, prediction.eps))

        return inpainted

    def _overwrite(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        mask, values = self._masked(x)
        alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
        noise = normal(x.shape, generator, dtype=x.dtype, device=x.device)
        noised = torch.where((sigma > 0).expand_as(x), alpha * values + sigma * noise, values)
        return torch.where(mask, noised, x)

    def prepare(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        return self._overwrite(x, k, schedule, generator)

    def after_step(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        return self._overwrite(x, k, schedule, generator)


class CostGradient(BaseGuide):
    """Lowers ``cost(x0_hat)`` by ``inner_steps`` gradient steps of size ``scale`` on the x0 prediction.

    Guidance acts on tokens whose level is above ``stop_level`` (late, nearly clean steps are left to
    the model) and never on clean context tokens. With ``through_model=True`` the gradient is taken
    with respect to the noisy input through the network (DPS, Chung et al., 2023): costlier, and
    it also moves the prediction where the cost is flat in x0 but not in x.
    """

    def __init__(
        self,
        cost: Cost,
        scale: float = 0.1,
        inner_steps: int = 1,
        stop_level: float = 0.0,
        through_model: bool = False,
    ) -> None:
        if inner_steps < 1:
            raise ConfigError(f"inner_steps must be >= 1, got {inner_steps}")
        if not 0.0 <= stop_level <= 1.0:
            raise ConfigError(f"stop_level must be in [0, 1], got {stop_level}")
        self.cost = cost
        self.scale = float(scale)
        self.inner_steps = int(inner_steps)
        self.stop_level = float(stop_level)
        self.through_model = through_model

    def _cost_gradient(self, x0: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x0.detach().requires_grad_(True)
            value = self.cost(leaf)
            if value.dim() > 1:
                raise ShapeError(f"a cost must return one value per sample [B], got shape {tuple(value.shape)}")
            (grad,) = torch.autograd.grad(value.sum(), leaf)
        return grad

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        def guided(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            active = (k > self.stop_level)[..., None]
            if not bool(active.any()):
                return denoise(x, k, cond)
            alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
            if self.through_model:
                with torch.enable_grad():
                    leaf = x.detach().requires_grad_(True)
                    prediction = denoise(leaf, k, cond)
                    value = self.cost(prediction.x0)
                    (grad,) = torch.autograd.grad(value.sum(), leaf)
                x0 = prediction.x0.detach() - self.scale * torch.where(active, grad, torch.zeros_like(grad))
                prediction = Prediction(prediction.x0.detach(), prediction.eps.detach())
            else:
                prediction = denoise(x, k, cond)
                x0 = prediction.x0
                for _ in range(self.inner_steps):
                    grad = self._cost_gradient(x0)
                    x0 = x0 - self.scale * torch.where(active, grad, torch.zeros_like(grad))
            x0 = x0.detach()
            return Prediction(x0, _eps_from_x0(x, x0, alpha, sigma, prediction.eps))

        return guided


class Project(BaseGuide):
    """Applies ``fn`` (a projection onto the feasible set, ``[B, T, D] -> [B, T, D]``) to the x0
    prediction and to the state after every step, so the output satisfies the constraint exactly."""

    def __init__(self, fn: Callable[[Tensor], Tensor], on_prediction: bool = True) -> None:
        self.fn = fn
        self.on_prediction = on_prediction

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        if not self.on_prediction:
            return denoise

        def projected(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            prediction = denoise(x, k, cond)
            alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
            x0 = self.fn(prediction.x0)
            return Prediction(x0, _eps_from_x0(x, x0, alpha, sigma, prediction.eps))

        return projected

    def after_step(self, x: Tensor, k: Tensor, schedule: Schedule, generator: torch.Generator | None) -> Tensor:
        projected = self.fn(x)
        if projected.shape != x.shape:
            raise ShapeError(f"a projection must keep the shape {tuple(x.shape)}, got {tuple(projected.shape)}")
        return projected


class ClassifierFree(BaseGuide):
    """prediction = uncond + scale * (cond - uncond); scale 1 is the plain conditional model, 0 the
    unconditional one. Needs a model trained with condition dropout (``Trainer(cond_dropout=...)``)."""

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)
        self.evaluations = 1 if self.scale == 1.0 else 2  # conditional and unconditional predictions

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        def mixed(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            if cond is None:
                return denoise(x, k, None)
            conditional = denoise(x, k, cond)
            if self.scale == 1.0:
                return conditional
            unconditional = denoise(x, k, None)
            weight = self.scale
            return Prediction(
                unconditional.x0 + weight * (conditional.x0 - unconditional.x0),
                unconditional.eps + weight * (conditional.eps - unconditional.eps),
            )

        return mixed
