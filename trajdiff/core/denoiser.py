"""The denoiser interface every sampler calls: ``denoise(x, k, cond) -> Prediction(x0, eps)``.

``x`` is ``[B, T, D]``, ``k`` the per-token levels ``[B, T]``, ``cond`` an optional ``[B, C]``
conditioning vector (``None`` = unconditional). Samplers never see networks, parametrizations
or preconditioning; `network_denoiser` hides them, and guides wrap denoisers the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from trajdiff.core.parametrize import Prediction, check_parametrization, network_input, to_prediction
from trajdiff.core.schedules import Schedule, token_coefficients

Denoiser = Callable[[Tensor, Tensor, Tensor | None], Prediction]


def network_denoiser(
    network: nn.Module, schedule: Schedule, parametrization: str, sigma_data: float = 1.0
) -> Denoiser:
    """Adapts a network ``f(x_in, k, cond) -> output`` to the denoiser interface.

    The network sees ``x * c_in`` (unit variance at every level) and its output is read as the
    given parametrization.
    """
    check_parametrization(parametrization)

    def denoise(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
        alpha, sigma = token_coefficients(schedule, k)
        output = network(network_input(x, alpha, sigma, sigma_data, schedule.variance_preserving), k, cond)
        return to_prediction(output, x, alpha, sigma, parametrization)

    return denoise


class CountingDenoiser:
    """Wraps a denoiser and counts its calls (number of function evaluations, NFE)."""

    def __init__(self, denoise: Denoiser) -> None:
        self.denoise = denoise
        self.calls = 0

    def __call__(self, x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
        self.calls += 1
        return self.denoise(x, k, cond)


def gaussian_denoiser(mean: Tensor, cov: Tensor, schedule: Schedule) -> Denoiser:
    """The exact (Bayes-optimal) denoiser for data ~ N(mean, cov), applied to every token.

    For ``x = alpha x0 + sigma eps``: E[x0 | x] = mean + alpha C (alpha^2 C + sigma^2 I)^-1 (x - alpha mean).
    Used to test samplers against closed-form answers and in the sampler benchmark.
    """
    eigval, eigvec = torch.linalg.eigh(cov.double())
    mean64 = mean.double()

    def denoise(x: Tensor, k: Tensor, cond: Tensor | None = None) -> Prediction:
        alpha, sigma = schedule.alpha_sigma(k.double())
        alpha, sigma = alpha[..., None], sigma[..., None]
        centred = (x.double() - alpha * mean64) @ eigvec  # coordinates in the eigenbasis
        gain = alpha * eigval / (alpha.square() * eigval + sigma.square())
        x0 = mean64 + (gain * centred) @ eigvec.T
        prediction = to_prediction(x0, x.double(), alpha, sigma, "x0")
        return Prediction(prediction.x0.to(x.dtype), prediction.eps.to(x.dtype))

    return denoise
