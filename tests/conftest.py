"""Shared fixtures: a known Gaussian whose optimal denoiser is closed-form, and thread settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def gaussian() -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and a well-conditioned, non-diagonal covariance in 4 dimensions (float64)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = a @ a.T / 4 + 0.1 * torch.eye(4, dtype=torch.float64)
    mean = torch.randn(4, generator=g, dtype=torch.float64)
    return mean, cov


def joint_gaussian_denoiser(mean: torch.Tensor, cov: torch.Tensor, schedule):
    """Exact denoiser for sequences x0 ~ N(mean, cov) over all T*D entries, with per-token levels.

    With x = A x0 + S eps (A, S diagonal per token): E[x0 | x] = m + C A (A C A + S^2)^-1 (x - A m).
    Clean tokens (S = 0) condition the others exactly: the posterior is the Gaussian conditional.
    """
    from trajdiff.core.parametrize import Prediction, to_prediction

    def denoise(x: torch.Tensor, k: torch.Tensor, cond=None) -> Prediction:
        b, t, d = x.shape
        alpha, sigma = schedule.alpha_sigma(k.double())
        a = alpha[..., None].expand(b, t, d).reshape(b, t * d)
        s = sigma[..., None].expand(b, t, d).reshape(b, t * d)
        flat = x.double().reshape(b, t * d)
        m = mean.reshape(-1)
        x0 = torch.empty_like(flat)
        for i in range(b):  # small batches in tests; each row has its own levels
            system = a[i, :, None] * cov * a[i, None, :] + torch.diag(s[i].square())
            gain = cov * a[i, None, :] @ torch.linalg.pinv(system, hermitian=True)
            x0[i] = m + gain @ (flat[i] - a[i] * m)
        prediction = to_prediction(x0.reshape(b, t, d), x.double(), alpha[..., None], sigma[..., None], "x0")
        return Prediction(prediction.x0.to(x.dtype), prediction.eps.to(x.dtype))

    return denoise


def batched_joint_gaussian_denoiser(mean: torch.Tensor, cov: torch.Tensor, schedule):
    """Same as `joint_gaussian_denoiser` but vectorised for plans whose levels are shared by the batch."""
    from trajdiff.core.parametrize import Prediction, to_prediction

    def denoise(x: torch.Tensor, k: torch.Tensor, cond=None) -> Prediction:
        b, t, d = x.shape
        if not torch.all(k == k[:1]):
            raise AssertionError("batched denoiser needs levels shared across the batch")
        alpha, sigma = schedule.alpha_sigma(k[0].double())
        a = alpha[:, None].expand(t, d).reshape(-1)
        s = sigma[:, None].expand(t, d).reshape(-1)
        system = a[:, None] * cov * a[None, :] + torch.diag(s.square())
        gain = cov * a[None, :] @ torch.linalg.pinv(system, hermitian=True)
        m = mean.reshape(-1)
        x0 = m + (x.double().reshape(b, -1) - a * m) @ gain.T
        al = alpha.expand(b, t)[..., None]
        sg = sigma.expand(b, t)[..., None]
        prediction = to_prediction(x0.reshape(b, t, d), x.double(), al, sg, "x0")
        return Prediction(prediction.x0.to(x.dtype), prediction.eps.to(x.dtype))

    return denoise


def ar1_sequence(horizon: int, rho: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of a stationary AR(1) sequence of `horizon` scalar tokens (D = 1)."""
    idx = torch.arange(horizon, dtype=torch.float64)
    cov = rho ** (idx[:, None] - idx[None, :]).abs()
    mean = torch.linspace(-0.5, 0.5, horizon, dtype=torch.float64)
    return mean, cov
