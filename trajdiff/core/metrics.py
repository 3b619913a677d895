"""Forecast metrics for trajectories and probabilistic samples (torch, differentiable).

Shape conventions: a trajectory is [..., T, D] (time, features); an ensemble of S samples puts
the sample axis first, [S, ...]. Leading dims broadcast. Every function takes
``reduction="mean"`` (a scalar) or ``"none"`` (per item / per element). NaN inputs propagate.

Probabilistic scores use the "fair" ensemble estimator by default (Ferro 2014; identical to the
probability-weighted-moment "PWM" estimator of Zamo & Naveau 2018): the pairwise term
E|X - X'| is averaged over the S(S-1) distinct pairs, which makes the score an unbiased estimate
of the score of the distribution the samples come from. ``estimator="nrg"`` divides by S^2
instead (the plain energy form of the empirical distribution). With S = 1 the pairwise term is 0.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from trajdiff.errors import ConfigError, ShapeError

__all__ = [
    "ade",
    "constraint_violation",
    "crps_samples",
    "energy_score",
    "fde",
    "interval_coverage",
    "min_ade",
    "min_fde",
]

Reduction = Literal["mean", "none"]
Estimator = Literal["fair", "nrg"]


def _tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (np.ndarray, np.generic, int, float)):
        t = torch.as_tensor(x)
    else:
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _reduce(x: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "none":
        return x
    raise ConfigError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _broadcast(a: torch.Size, b: torch.Size, what: str) -> None:
    try:
        torch.broadcast_shapes(a, b)
    except RuntimeError as e:
        raise ShapeError(f"{what}: shapes {tuple(a)} and {tuple(b)} do not broadcast") from e


def _check_trajectories(pred: torch.Tensor, true: torch.Tensor, names: tuple[str, str]) -> None:
    p, t = names
    for x, n in ((pred, p), (true, t)):
        if x.ndim < 2:
            raise ShapeError(
                f"{n} must be [..., T, D], got shape {tuple(x.shape)}; for one feature use x[..., None]"
            )
    if pred.shape[-2:] != true.shape[-2:]:
        raise ShapeError(
            f"{p} {tuple(pred.shape)} and {t} {tuple(true.shape)} differ in [T, D]; compare trajectories of "
            "the same length and features"
        )
    _broadcast(pred.shape, true.shape, f"{p} vs {t}")


def _check_samples(samples: torch.Tensor, true: torch.Tensor) -> int:
    if samples.ndim != true.ndim + 1:
        raise ShapeError(
            "samples must be [S, *true.shape] with the sample axis first; got samples "
            f"{tuple(samples.shape)} and true {tuple(true.shape)} "
            "(for a single sample use samples.unsqueeze(0))"
        )
    if samples.shape[0] == 0:
        raise ShapeError("samples has S = 0 samples; draw at least one")
    _broadcast(samples.shape[1:], true.shape, "samples[0] vs true")
    return samples.shape[0]


def _check_estimator(estimator: str) -> None:
    if estimator not in ("fair", "nrg"):
        raise ConfigError(f"estimator must be 'fair' or 'nrg', got {estimator!r}")


def _displacement(pred: Any, true: Any, names: tuple[str, str] = ("pred", "true")) -> torch.Tensor:
    """Euclidean distance per time step: [..., T]."""
    p, t = _tensor(pred, names[0]), _tensor(true, names[1])
    _check_trajectories(p, t, names)
    return torch.linalg.vector_norm(p - t, dim=-1)


def ade(pred: torch.Tensor, true: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Average displacement error: Euclidean distance over D, averaged over T.

    pred, true: [..., T, D] (leading dims broadcast). Returns a scalar, or [...] with reduction="none".
    """
    return _reduce(_displacement(pred, true).mean(-1), reduction)


def fde(pred: torch.Tensor, true: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Final displacement error: Euclidean distance at the last time step. Shapes as :func:`ade`."""
    return _reduce(_displacement(pred, true)[..., -1], reduction)


def _min_over_samples(samples: Any, true: Any, final: bool, reduction: Reduction) -> torch.Tensor:
    s, t = _tensor(samples, "samples"), _tensor(true, "true")
    _check_samples(s, t)
    dist = _displacement(s, t, ("samples", "true"))  # [S, ..., T]
    per_sample = dist[..., -1] if final else dist.mean(-1)  # [S, ...]
    return _reduce(per_sample.min(dim=0).values, reduction)


def min_ade(samples: torch.Tensor, true: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Best-of-S ADE: per item, the smallest ADE among the S samples, then averaged over items.

    samples: [S, ..., T, D]; true: [..., T, D]. reduction="none" returns the per-item values [...].
    """
    return _min_over_samples(samples, true, final=False, reduction=reduction)


def min_fde(samples: torch.Tensor, true: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Best-of-S FDE; shapes and reduction as :func:`min_ade`."""
    return _min_over_samples(samples, true, final=True, reduction=reduction)


def crps_samples(
    samples: torch.Tensor,
    true: torch.Tensor,
    *,
    estimator: Estimator = "fair",
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Continuous ranked probability score of an ensemble, per element (lower is better).

    CRPS = E|X - y| - 0.5 E|X - X'|. samples: [S, ...]; true: [...]. Returns [...] (default) or
    the mean. The pairwise term is computed in O(S log S) from the sorted samples x_(1..S):
    sum_{i,j} |x_i - x_j| = 2 sum_i (2i - S - 1) x_(i), divided by S(S-1) ("fair"/PWM) or S^2 ("nrg").
    """
    _check_estimator(estimator)
    s, t = _tensor(samples, "samples"), _tensor(true, "true")
    n = _check_samples(s, t)
    abs_term = (s - t).abs().mean(dim=0)
    if n == 1:
        return _reduce(abs_term, reduction)
    # centring does not change the pairwise sum (weights sum to 0) but avoids cancellation
    x = (s - s.mean(dim=0, keepdim=True)).sort(dim=0).values
    i = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    w = (2 * i - n - 1).reshape(n, *([1] * (x.ndim - 1)))
    pair_sum = 2 * (w * x).sum(dim=0)
    denom = n * (n - 1) if estimator == "fair" else n * n
    return _reduce(abs_term - 0.5 * pair_sum / denom, reduction)


def energy_score(
    samples: torch.Tensor,
    true: torch.Tensor,
    *,
    estimator: Estimator = "fair",
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Energy score, the multivariate CRPS: E||X - y|| - 0.5 E||X - X'|| (lower is better).

    samples: [S, ..., D]; true: [..., D]. Returns [...] (default) or the mean. The pairwise term
    costs O(S^2) distances per item; estimators as :func:`crps_samples`.
    """
    _check_estimator(estimator)
    s, t = _tensor(samples, "samples"), _tensor(true, "true")
    if t.ndim < 1:
        raise ShapeError("true must be [..., D] with a feature axis; for scalars use crps_samples")
    n = _check_samples(s, t)
    if s.shape[-1] != t.shape[-1]:
        raise ShapeError(f"samples have {s.shape[-1]} features but true has {t.shape[-1]}")
    first = torch.linalg.vector_norm(s - t, dim=-1).mean(dim=0)
    if n == 1:
        return _reduce(first, reduction)
    x = s.movedim(0, -2)  # [..., S, D]
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # [..., S, S]
    denom = n * (n - 1) if estimator == "fair" else n * n
    return _reduce(first - 0.5 * dist.sum(dim=(-2, -1)) / denom, reduction)


def _quantile_sorted(x: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile along dim 0 of already sorted ``x`` (same rule as torch.quantile)."""
    pos = q * (x.shape[0] - 1)
    lo = int(pos)
    hi = min(lo + 1, x.shape[0] - 1)
    frac = pos - lo
    return x[lo] + frac * (x[hi] - x[lo])


def interval_coverage(
    samples: torch.Tensor, true: torch.Tensor, level: float, *, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Fraction of truths inside the central ``level`` interval of the samples (per element).

    samples: [S, ...]; true: [...]. The interval runs between the empirical (1-level)/2 and
    (1+level)/2 quantiles (linear interpolation). A calibrated model gives about ``level``.
    reduction="none" returns 1.0/0.0 per element.
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise ConfigError(f"coverage level must be strictly between 0 and 1 (e.g. 0.9), got {level!r}")
    s, t = _tensor(samples, "samples"), _tensor(true, "true")
    _check_samples(s, t)
    x = s.sort(dim=0).values
    lo, hi = _quantile_sorted(x, (1 - level) / 2), _quantile_sorted(x, (1 + level) / 2)
    inside = ((t >= lo) & (t <= hi)).to(x.dtype)
    return _reduce(inside, reduction)


def constraint_violation(
    values: torch.Tensor,
    lower: float | torch.Tensor | None = None,
    upper: float | torch.Tensor | None = None,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean amount by which ``values`` fall below ``lower`` or above ``upper`` (0 where inside).

    values: any shape; lower/upper: numbers or tensors broadcastable to it (e.g. [D] per feature).
    """
    if lower is None and upper is None:
        raise ConfigError("constraint_violation needs lower, upper or both")
    v = _tensor(values, "values")
    if isinstance(lower, (int, float)) and isinstance(upper, (int, float)) and lower > upper:
        raise ConfigError(f"lower bound {lower} exceeds upper bound {upper}; swap them")
    out = torch.zeros_like(v)
    if lower is not None:
        lo = torch.as_tensor(lower, dtype=v.dtype, device=v.device)
        _broadcast(v.shape, lo.shape, "values vs lower")
        out = out + torch.relu(lo - v)
    if upper is not None:
        hi = torch.as_tensor(upper, dtype=v.dtype, device=v.device)
        _broadcast(v.shape, hi.shape, "values vs upper")
        out = out + torch.relu(v - hi)
    return _reduce(out, reduction)
