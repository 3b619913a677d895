"""What a network predicts, and conversions between predictions.

Four targets, all defined through ``x = alpha * x0 + sigma * eps``:

- ``eps``: the noise;
- ``x0``: the clean data;
- ``v``: ``alpha * eps - sigma * x0`` (Salimans & Ho, 2022);
- ``velocity``: ``eps - x0``, the rectified-flow velocity (the time derivative of the
  flow-matching interpolant; for other schedules it is simply another linear target).

Any one of them, together with ``x``, determines the other three. Tokens with sigma = 0
(clean context) have x0 = x whatever the network says.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from trajdiff.errors import ConfigError

Parametrization = Literal["eps", "x0", "v", "velocity"]
PARAMETRIZATIONS: tuple[str, ...] = ("eps", "x0", "v", "velocity")

_TINY = 1e-12


class Prediction(NamedTuple):
    """A denoiser's estimate of the clean data and of the noise in ``x``."""

    x0: Tensor
    eps: Tensor


def check_parametrization(kind: str) -> str:
    if kind not in PARAMETRIZATIONS:
        raise ConfigError(f"unknown parametrization {kind!r}; choose one of {list(PARAMETRIZATIONS)}")
    return kind


def _safe(value: Tensor) -> Tensor:
    """Keeps a divisor away from zero without changing its sign convention (all divisors are >= 0)."""
    return value.clamp_min(_TINY)


def to_prediction(output: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, kind: str) -> Prediction:
    """Turns a network output of the given kind into (x0, eps) estimates.

    ``alpha`` and ``sigma`` broadcast against ``x`` (per token: ``[B, T, 1]``). Each estimate is
    ``a * x + b * output`` with coefficients per token, worked out on ``alpha``'s shape (one value per token,
    not per feature), so the estimates cost two passes over ``x`` each; a clean token (sigma = 0) gets the
    coefficients of ``x0 = x, eps = 0``.
    """
    if kind == "x0":
        x0_coefficients = (torch.zeros_like(alpha), torch.ones_like(alpha))
        eps_coefficients = (1.0 / _safe(sigma), -alpha / _safe(sigma))
    elif kind == "eps":
        x0_coefficients = (1.0 / _safe(alpha), -sigma / _safe(alpha))
        eps_coefficients = (torch.zeros_like(alpha), torch.ones_like(alpha))
    elif kind == "v":
        norm = _safe(alpha.square() + sigma.square())
        x0_coefficients = (alpha / norm, -sigma / norm)
        eps_coefficients = (sigma / norm, alpha / norm)
    elif kind == "velocity":
        norm = _safe(alpha + sigma)
        x0_coefficients = (1.0 / norm, -sigma / norm)
        eps_coefficients = (1.0 / norm, alpha / norm)
    else:
        check_parametrization(kind)
        raise AssertionError("unreachable")
    clean = sigma == 0
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    x0_x, x0_out = torch.where(clean, one, x0_coefficients[0]), torch.where(clean, zero, x0_coefficients[1])
    eps_x, eps_out = torch.where(clean, zero, eps_coefficients[0]), torch.where(clean, zero, eps_coefficients[1])
    return Prediction(torch.addcmul(x0_x * x, x0_out, output), torch.addcmul(eps_x * x, eps_out, output))


def target(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, kind: str) -> Tensor:
    """The training target of the given kind for clean data ``x0`` noised with ``eps``."""
    if kind == "x0":
        return x0
    if kind == "eps":
        return eps
    if kind == "v":
        return alpha * eps - sigma * x0
    if kind == "velocity":
        return eps - x0
    check_parametrization(kind)
    raise AssertionError("unreachable")


def x0_error_scale(alpha: Tensor, sigma: Tensor, kind: str) -> Tensor:
    """Factor m with  ||target - output||^2 = m * ||x0 - x0_hat||^2  at fixed x.

    Used to express a weighting defined on the x0 error (such as min-SNR) in the target's space.
    """
    snr = alpha.square() / _safe(sigma.square())
    if kind == "x0":
        return torch.ones_like(snr)
    if kind == "eps":
        return snr
    if kind == "v":
        return (alpha.square() + sigma.square()).square() / _safe(sigma.square())
    if kind == "velocity":
        return (alpha + sigma).square() / _safe(sigma.square())
    check_parametrization(kind)
    raise AssertionError("unreachable")


def input_scale(alpha: Tensor, sigma: Tensor, sigma_data: float = 1.0) -> Tensor:
    """Preconditioning c_in = 1 / sqrt(alpha^2 sigma_data^2 + sigma^2): networks see unit-variance inputs
    under every schedule (essential for EDM's large sigmas, harmless for VP ones)."""
    return torch.rsqrt(alpha.square() * sigma_data**2 + sigma.square())


def network_input(x: Tensor, alpha: Tensor, sigma: Tensor, sigma_data: float, variance_preserving: bool) -> Tensor:
    """What the network sees: ``x * c_in``. Under a variance-preserving schedule with unit-variance data
    c_in is exactly 1, so the multiply is skipped (training and sampling both come through here)."""
    if variance_preserving and sigma_data == 1.0:
        return x
    return x * input_scale(alpha, sigma, sigma_data)
