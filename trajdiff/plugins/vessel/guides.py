"""Costs and constraints for vessel forecasts, built per forecast batch from user inputs.

Two ways in. From the command line and `api.forecast`, the domain's costs ``keep_out``, ``max_speed``,
``max_turn`` and ``waypoint`` (``--cost NAME[=SCALE]``) take their settings from loader options
(``--load-option keep_out=zones.geojson``, ``waypoint=40.65,-74.03``, ...; stored in each episode's
meta "guide") and are bound to each batch's frames through ``cost.bind(frames, meta, samples)``.
From Python, ``vessel_guides(encoder, keep_out=..., ...)`` returns a factory of guides for the samplers.

Keep-out polygons (land, restricted areas; GeoJSON), a maximum speed, a maximum turn rate and the
attraction towards a waypoint are costs of positions in metres. Positions depend on each window's
frame (origin and course), so the costs cannot be fixed functions of tokens: `vessel_guides`
validates the user's inputs once and returns a `VesselGuides` factory that `api.forecast` calls per
batch of windows with their frames; it returns one `MetricGuide`.

`MetricGuide` works like `trajdiff.core.guidance.CostGradient` (gradient steps on the model's x0
prediction, Diffuser / MotionDiffuser style) but takes the steps in metres in a common local frame
of the batch, so one step size suits every forecast step and every vessel: with the quadratic
penalties below, a unit step moves a point out of a keep-out area by about its penetration depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.guidance import BaseGuide
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import Schedule
from trajdiff.errors import ConfigError
from trajdiff.plugins.spec import BatchCost
from trajdiff.plugins.vessel.encoder import VesselEncoder
from trajdiff.plugins.vessel.geo import load_polygons, signed_distance, to_local

__all__ = [
    "COST_NAMES",
    "GUIDE_LOAD_OPTIONS",
    "GUIDE_OPTIONS",
    "BindableCost",
    "MetricGuide",
    "VesselGuides",
    "guide_settings",
    "vessel_guides",
    "violations",
]

GUIDE_OPTIONS = ("keep_out", "margin_m", "max_speed_knots", "max_turn_deg_per_min", "waypoint", "waypoint_weight",
                 "inner_steps", "stop_level")
SPEED_WEIGHT = 0.5  # a position sits in two displacements: half steps keep the update stable
TURN_WEIGHT = 0.25
MOVING_M_S = 0.25  # turn limits apply only to steps faster than this (course is noise when still)


@dataclass
class Batch:
    """Per-row frame tensors of one batch (rows = windows x samples) and its common reference point."""

    theta: Tensor
    velocity: Tensor
    scale_x: Tensor  # east metres in the row's frame -> east metres in the common frame
    offset: Tensor  # [B, 2] the row's origin in the common frame
    lat_ref: float
    lon_ref: float


@dataclass
class VesselGuides:
    """Validated guide settings; call it with a batch's frames and sample count to get its guides."""

    encoder: VesselEncoder
    keep_out: list[np.ndarray] = field(default_factory=list)  # rings of (lon, lat) degrees
    margin_m: float = 0.0
    max_speed_knots: float | None = None
    max_turn_deg_per_min: float | None = None
    waypoint: tuple[float, float] | None = None  # (lat, lon)
    waypoint_weight: float = 0.2
    inner_steps: int = 3
    stop_level: float = 0.0

    def batch(self, frames: Sequence[dict[str, Any]], samples: int) -> Batch:
        """Frame tensors for ``frames`` each repeated ``samples`` times (the order `sample_futures` uses)."""
        lat0 = np.array([f["lat0"] for f in frames], dtype=np.float64)
        lon0 = np.array([f["lon0"] for f in frames], dtype=np.float64)
        lat_ref, lon_ref = float(lat0.mean()), float(lon0.mean())
        offset = to_local(lat0, lon0, lat_ref, lon_ref)
        scale_x = np.cos(np.radians(lat_ref)) / np.cos(np.radians(lat0))

        def rows(a: Any) -> Tensor:
            return torch.as_tensor(np.asarray(a), dtype=torch.float32).repeat_interleave(samples, dim=0)

        return Batch(rows([f["theta"] for f in frames]), rows([f["velocity"] for f in frames]), rows(scale_x),
                     rows(offset), lat_ref, lon_ref)

    def to_common(self, x: Tensor, b: Batch) -> Tensor:
        """Tokens ``[B, T, 2]`` -> (east, north) metres in the batch's common frame."""
        xy = self.encoder.torch_local(x, b.theta, b.velocity)
        return torch.stack([xy[..., 0] * b.scale_x[:, None], xy[..., 1]], dim=-1) + b.offset[:, None, :]

    def from_common(self, p: Tensor, b: Batch, like: Tensor) -> Tensor:
        """Metres in the common frame -> tokens; extra features (place) are copied from ``like``."""
        xy = p - b.offset[:, None, :]
        xy = torch.stack([xy[..., 0] / b.scale_x[:, None], xy[..., 1]], dim=-1)
        tokens = self.encoder.torch_tokens(xy, b.theta, b.velocity)
        return torch.cat([tokens, like[..., tokens.shape[-1]:].to(tokens.dtype)], dim=-1)

    def cost(self, p: Tensor, b: Batch) -> Tensor:
        """The total cost ``[B]`` of positions ``p [B, T, 2]`` (common frame, metres); only rows from the last
        observed one on count."""
        h = self.encoder.history
        future = p[:, h - 1:]  # origin + forecast
        total = p.new_zeros(p.shape[0])
        if self.keep_out:
            for ring in self._rings(b, p):
                depth = torch.relu(self.margin_m - signed_distance(future[:, 1:], ring))
                total = total + 0.5 * depth.square().sum(-1)
        step = p[:, h - 1:] - p[:, h - 2:-1]  # the last observed displacement, then the forecast's
        length = step.square().sum(-1).add(1e-6).sqrt()
        if self.max_speed_knots is not None:
            limit = self.max_speed_knots * self.encoder.knots_per_step
            total = total + SPEED_WEIGHT * 0.5 * torch.relu(length[:, 1:] - limit).square().sum(-1)
        if self.max_turn_deg_per_min is not None:
            limit = math.radians(self.max_turn_deg_per_min) * (self.encoder.interval_s or 60.0) / 60.0
            a, c = step[:, :-1], step[:, 1:]
            angle = torch.atan2(a[..., 0] * c[..., 1] - a[..., 1] * c[..., 0], (a * c).sum(-1))
            mean_length = ((length[:, :-1] + length[:, 1:]) / 2).detach()
            moving = (torch.minimum(length[:, :-1], length[:, 1:]) > MOVING_M_S * (self.encoder.interval_s or 60.0))
            excess = torch.relu(angle.abs() - limit) * mean_length * moving.detach()
            total = total + TURN_WEIGHT * 0.5 * excess.square().sum(-1)
        if self.waypoint is not None:
            target = torch.as_tensor(to_local(self.waypoint[0], self.waypoint[1], b.lat_ref, b.lon_ref),
                                     dtype=p.dtype)
            weight = torch.arange(1, future.shape[1], dtype=p.dtype) / (future.shape[1] - 1)
            total = total + self.waypoint_weight * 0.5 * (weight * (future[:, 1:] - target).square().sum(-1)).sum(-1)
        return total

    def _rings(self, b: Batch, like: Tensor) -> list[Tensor]:
        return [torch.as_tensor(to_local(r[:, 1], r[:, 0], b.lat_ref, b.lon_ref), dtype=like.dtype)
                for r in self.keep_out]

    def __call__(self, frames: Sequence[dict[str, Any]], samples: int) -> list[BaseGuide]:
        return [MetricGuide(self, self.batch(frames, samples))]

    def bound_cost(self, frames: Sequence[dict[str, Any]], samples: int) -> Callable[[Tensor], Tensor]:
        """The cost of tokens ``[B, T, 2] -> [B]`` for this batch, for `CostGradient`. Its gradient is
        preconditioned (divided by the encoder's per-token variance), so that a step of scale 1 in tokens
        moves positions by the metric gradient: the same step sizes as `MetricGuide`."""
        b = self.batch(frames, samples)
        _, std = self.encoder._stats()
        inverse = self.encoder._tokens(torch.as_tensor(1.0 / np.square(std), dtype=torch.float32)[None])[0]
        inverse = torch.nn.functional.pad(inverse, (0, self.encoder.dim - inverse.shape[-1]), value=1.0)

        def cost(x: Tensor) -> Tensor:
            return self.cost(self.to_common(_Precondition.apply(x, inverse.to(x.dtype)), b), b)

        return cost


class _Precondition(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by a fixed tensor."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: Tensor) -> Tensor:
        ctx.save_for_backward(factor)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (factor,) = ctx.saved_tensors
        return grad * factor, None


COST_NAMES = {"keep_out": ("keep_out",), "max_speed": ("max_speed_knots",), "max_turn": ("max_turn_deg_per_min",),
              "waypoint": ("waypoint",)}


class BindableCost(BatchCost):
    """A domain cost whose settings come from episode meta "guide" (loader options) and whose frames come
    from the forecast batch: ``bind(frames, meta, samples)`` returns the cost of that batch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.__name__ = name

    def __call__(self, x: Tensor) -> Tensor:
        raise ConfigError(f"the vessel cost {self.name!r} depends on each forecast's position and course: use it "
                          "through trajdiff.api.forecast / `trajdiff forecast --cost`, or call cost.bind(frames, "
                          "meta, samples)")

    def bind(self, frames: Sequence[dict[str, Any]], meta: Sequence[dict[str, Any]] | None,
             samples: int) -> Callable[[Tensor], Tensor]:
        settings = next((m.get("guide") for m in meta or [] if m.get("guide")), None)
        needed = COST_NAMES[self.name][0]
        if not settings or settings.get(needed) is None:
            hint = {"keep_out": "keep_out=zones.geojson", "max_speed": "speed_limit_knots=20",
                    "max_turn": "max_turn_deg_per_min=30", "waypoint": "waypoint=40.65,-74.03"}[self.name]
            raise ConfigError(f"the vessel cost {self.name!r} needs its setting: pass --load-option {hint} "
                              f"(load_options={{...}} in Python) together with --cost {self.name}")
        encoder = frames[0].get("encoder")
        if not isinstance(encoder, VesselEncoder):
            raise ConfigError(f"the vessel cost {self.name!r} needs frames made by a VesselEncoder")
        only = {k: v for k, v in settings.items() if k in needed or k not in _TERMS}
        return vessel_guides(encoder, **only).bound_cost(frames, samples)


_TERMS = ("keep_out", "max_speed_knots", "max_turn_deg_per_min", "waypoint")
GUIDE_LOAD_OPTIONS = {"keep_out": "keep_out", "margin_m": "margin_m", "speed_limit_knots": "max_speed_knots",
                      "max_turn_deg_per_min": "max_turn_deg_per_min", "waypoint": "waypoint",
                      "waypoint_weight": "waypoint_weight"}


def guide_settings(options: dict[str, Any]) -> dict[str, Any]:
    """Pops the guide settings out of loader ``options`` (keep_out, margin_m, speed_limit_knots,
    max_turn_deg_per_min, waypoint, waypoint_weight) and checks them; keep-out GeoJSON is read once."""
    settings = {GUIDE_LOAD_OPTIONS[k]: options.pop(k) for k in list(options) if k in GUIDE_LOAD_OPTIONS}
    if not settings:
        return {}
    if settings.get("keep_out") is not None and not isinstance(settings["keep_out"], list):
        settings["keep_out"] = load_polygons(settings["keep_out"])
    if settings.get("waypoint") is not None:
        settings["waypoint"] = _waypoint(settings["waypoint"])
    for key in ("margin_m", "max_speed_knots", "max_turn_deg_per_min", "waypoint_weight"):
        if settings.get(key) is not None:
            settings[key] = _number(settings[key], key, inclusive=key == "margin_m")
    return settings


def _eps(x: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor, fallback: Tensor) -> Tensor:
    eps = (x - alpha * x0) / sigma.clamp_min(1e-12)
    return torch.where((sigma > 0).expand_as(x), eps, fallback)


class MetricGuide(BaseGuide):
    """Gradient steps (``inner_steps`` of size 1, in metres) on the cost of the x0 prediction of every token
    whose level is above ``stop_level``; clean context tokens are never moved."""

    def __init__(self, guides: VesselGuides, batch: Batch) -> None:
        self.guides, self.b = guides, batch

    def steer(self, x0: Tensor, active: Tensor) -> Tensor:
        """x0 tokens ``[B, T, 2]`` moved downhill on the cost where ``active [B, T]``."""
        p = self.guides.to_common(x0.detach().float(), self.b)
        rows = active.repeat_interleave(self.guides.encoder.patch, dim=1)
        for _ in range(self.guides.inner_steps):
            with torch.enable_grad():
                leaf = p.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.guides.cost(leaf, self.b).sum(), leaf)
            p = p - torch.where(rows[..., None], grad, torch.zeros_like(grad))
        moved = self.guides.from_common(p, self.b, x0).to(x0.dtype)
        return torch.where(active[..., None], moved, x0)

    def wrap(self, denoise: Denoiser, schedule: Schedule) -> Denoiser:
        def guided(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
            prediction = denoise(x, k, cond)
            active = k > self.guides.stop_level
            if not bool(active.any()):
                return prediction
            x0 = self.steer(prediction.x0, active).detach()
            alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k))
            return Prediction(x0, _eps(x, x0, alpha, sigma, prediction.eps))

        return guided


def _number(value: Any, name: str, low: float = 0.0, *, inclusive: bool = False) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < low or (number == low and not inclusive):
        raise ConfigError(f"{name} must be {'at least' if inclusive else 'greater than'} {low:g}, got {value!r}")
    return number


def _waypoint(value: Any) -> tuple[float, float]:
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else value
    try:
        lat, lon = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"waypoint must be 'LAT,LON' in degrees (e.g. 40.65,-74.03), got {value!r}") from None
    if not (abs(lat) <= 90 and abs(lon) <= 180):
        raise ConfigError(f"waypoint {value!r} is not a position: write latitude first, then longitude, in degrees")
    return lat, lon


def vessel_guides(
    encoder: VesselEncoder,
    *,
    keep_out: str | Path | dict[str, Any] | list[np.ndarray] | None = None,
    margin_m: Any = 0.0,
    max_speed_knots: Any = None,
    max_turn_deg_per_min: Any = None,
    waypoint: Any = None,
    waypoint_weight: Any = 0.2,
    inner_steps: Any = 3,
    stop_level: Any = 0.0,
) -> VesselGuides:
    """Validated guides from user inputs (numbers may be strings, as from the command line).

    ``keep_out``: a GeoJSON file, a GeoJSON mapping, or a list of ``[K, 2]`` (lon, lat) rings, kept at least
    ``margin_m`` metres away; ``max_speed_knots``; ``max_turn_deg_per_min``; ``waypoint`` ``(lat, lon)`` or
    ``"LAT,LON"`` with ``waypoint_weight`` in (0, 1] (the fraction of the distance that one step pulls the
    final position); ``inner_steps`` gradient steps per sampler step; guidance stops below ``stop_level``.
    """
    if not isinstance(encoder, VesselEncoder):
        raise ConfigError(f"vessel guides need a fitted VesselEncoder, got {type(encoder).__name__}")
    rings: list[np.ndarray] = []
    if keep_out is not None:
        if isinstance(keep_out, list):
            rings = [np.asarray(r, dtype=np.float64) for r in keep_out]
            if any(r.ndim != 2 or r.shape[1] != 2 or len(r) < 3 for r in rings):
                raise ConfigError("keep_out rings must be [K >= 3, 2] arrays of (lon, lat) degrees")
        else:
            rings = load_polygons(keep_out)
    guides = VesselGuides(
        encoder=encoder,
        keep_out=rings,
        margin_m=_number(margin_m, "margin_m", inclusive=True),
        max_speed_knots=None if max_speed_knots is None else _number(max_speed_knots, "max_speed_knots"),
        max_turn_deg_per_min=None if max_turn_deg_per_min is None else _number(max_turn_deg_per_min,
                                                                               "max_turn_deg_per_min"),
        waypoint=None if waypoint is None else _waypoint(waypoint),
        waypoint_weight=_number(waypoint_weight, "waypoint_weight"),
        inner_steps=int(_number(inner_steps, "inner_steps", 1, inclusive=True)),
        stop_level=_number(stop_level, "stop_level", inclusive=True),
    )
    if guides.waypoint_weight > 1 or guides.stop_level > 1:
        raise ConfigError("waypoint_weight and stop_level must be at most 1")
    if not (rings or guides.max_speed_knots or guides.max_turn_deg_per_min or guides.waypoint):
        raise ConfigError("no guide given: pass keep_out=..., max_speed_knots=..., max_turn_deg_per_min=... or "
                          "waypoint=LAT,LON")
    return guides


def violations(positions: np.ndarray, rings: list[np.ndarray], margin_m: float = 0.0) -> np.ndarray:
    """For (lat, lon) rows ``[..., 2]``: True where a position lies inside a keep-out ring (or within
    ``margin_m`` of it)."""
    positions = np.asarray(positions, dtype=np.float64)
    lat_ref, lon_ref = float(positions[..., 0].mean()), float(positions[..., 1].mean())
    p = torch.as_tensor(to_local(positions[..., 0], positions[..., 1], lat_ref, lon_ref))
    out = torch.zeros(p.shape[:-1], dtype=torch.bool)
    for ring in rings:
        r = torch.as_tensor(to_local(ring[:, 1], ring[:, 0], lat_ref, lon_ref))
        out |= signed_distance(p, r) < margin_m
    return out.numpy()


