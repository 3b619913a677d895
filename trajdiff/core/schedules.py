"""Noise schedules: a per-token level k in [0, 1] -> (alpha, sigma).

A noisy token is ``x_k = alpha(k) * x0 + sigma(k) * eps``. Level 0 is exactly clean
(alpha = 1, sigma = 0) for every schedule, so context tokens held at 0 are the data itself.
Level 1 is (numerically) pure noise. Each schedule also gives d(alpha)/dk and d(sigma)/dk,
which the probability-flow ODE and the flow-matching solvers need.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from trajdiff.errors import ConfigError


class Schedule(ABC):
    """Maps noise levels to signal and noise scales; subclasses are small and stateless."""

    name: str = ""
    variance_preserving: bool = False  # alpha^2 + sigma^2 = 1 at every level

    @abstractmethod
    def alpha_sigma(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """Signal scale alpha(k) and noise scale sigma(k), elementwise."""

    @abstractmethod
    def derivatives(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """d alpha / dk and d sigma / dk, elementwise (used by ODE and flow solvers)."""

    def log_snr(self, k: Tensor) -> Tensor:
        """log(alpha^2 / sigma^2); +inf at k = 0."""
        alpha, sigma = self.alpha_sigma(k)
        return 2.0 * (torch.log(alpha) - torch.log(sigma))

    def snr(self, k: Tensor) -> Tensor:
        """alpha^2 / sigma^2; +inf at k = 0."""
        alpha, sigma = self.alpha_sigma(k)
        return alpha.square() / sigma.square()

    @property
    def config(self) -> dict[str, Any]:
        """A JSON-serializable dict that rebuilds this schedule with `build_schedule`."""
        return {"kind": self.name, **self._params()}

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value}" for key, value in self._params().items())
        return f"{type(self).__name__}({params})"


class CosineVP(Schedule):
    """Variance-preserving cosine schedule: alpha = cos(pi/2 * u), sigma = sin(pi/2 * u), u = k * u_max.

    ``u_max`` keeps alpha(1) small but non-zero so that eps-prediction stays invertible; it is set
    from the minimum log-SNR (default -15, alpha(1) ~ 5.5e-4), as in Nichol & Dhariwal's cosine
    schedule and its continuous-time form (Kingma et al., 2021).
    """

    name = "cosine"
    variance_preserving = True

    def __init__(self, log_snr_min: float = -15.0) -> None:
        self.log_snr_min = float(log_snr_min)
        # log_snr = -2 log tan(pi/2 u)  =>  u_max = 2/pi * atan(exp(-log_snr_min / 2))
        self.u_max = 2.0 / math.pi * math.atan(math.exp(-self.log_snr_min / 2.0))

    def alpha_sigma(self, k: Tensor) -> tuple[Tensor, Tensor]:
        angle = (0.5 * math.pi * self.u_max) * k
        return torch.cos(angle), torch.sin(angle)

    def derivatives(self, k: Tensor) -> tuple[Tensor, Tensor]:
        rate = 0.5 * math.pi * self.u_max
        angle = rate * k
        return -rate * torch.sin(angle), rate * torch.cos(angle)

    def _params(self) -> dict[str, Any]:
        return {"log_snr_min": self.log_snr_min}


class LinearVP(Schedule):
    """Variance-preserving schedule of DDPM's linear betas in continuous time (Song et al., 2021).

    alpha^2(k) = exp(-(beta_min k + (beta_max - beta_min) k^2 / 2)), sigma^2 = 1 - alpha^2.
    """

    name = "linear"
    variance_preserving = True

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def _log_alpha_bar(self, k: Tensor) -> Tensor:
        return -(self.beta_min * k + 0.5 * (self.beta_max - self.beta_min) * k.square())

    def alpha_sigma(self, k: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha_bar = self._log_alpha_bar(k)
        alpha = torch.exp(0.5 * log_alpha_bar)
        sigma = torch.sqrt(-torch.expm1(log_alpha_bar))
        return alpha, sigma

    def derivatives(self, k: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.alpha_sigma(k)
        beta = self.beta_min + (self.beta_max - self.beta_min) * k
        # d(alpha^2)/dk = -beta alpha^2; d(sigma^2)/dk = beta alpha^2.
        d_alpha = -0.5 * beta * alpha
        d_sigma = 0.5 * beta * alpha.square() / sigma
        return d_alpha, d_sigma

    def _params(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


class EDM(Schedule):
    """Variance-exploding sigmas of Karras et al. (2022): alpha = 1, and for k > 0

    sigma(k) = (sigma_min^(1/rho) + k (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho.

    Uniform steps in k are the paper's rho-spaced sigmas. Level 0 is exactly clean (sigma = 0),
    the paper's appended final sigma. Networks see inputs scaled by 1/sqrt(sigma_data^2 + sigma^2)
    (see `parametrize.input_scale`).
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> None:
        if not 0.0 <= sigma_min < sigma_max:
            raise ConfigError(f"EDM schedule needs 0 <= sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.rho = float(rho)

    def _root(self, k: Tensor) -> Tensor:
        lo = self.sigma_min ** (1.0 / self.rho)
        hi = self.sigma_max ** (1.0 / self.rho)
        return lo + k * (hi - lo)

    def alpha_sigma(self, k: Tensor) -> tuple[Tensor, Tensor]:
        sigma = torch.where(k > 0, self._root(k).pow(self.rho), torch.zeros_like(k))
        return torch.ones_like(k), sigma

    def derivatives(self, k: Tensor) -> tuple[Tensor, Tensor]:
        lo = self.sigma_min ** (1.0 / self.rho)
        hi = self.sigma_max ** (1.0 / self.rho)
        d_sigma = self.rho * self._root(k).pow(self.rho - 1.0) * (hi - lo)
        return torch.zeros_like(k), d_sigma

    def _params(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho}


class FlowMatching(Schedule):
    """Rectified-flow linear interpolant: x_k = (1 - k) x0 + k eps (Liu et al.; Lipman et al., 2023)."""

    name = "flow"

    def alpha_sigma(self, k: Tensor) -> tuple[Tensor, Tensor]:
        return 1.0 - k, k.clone()

    def derivatives(self, k: Tensor) -> tuple[Tensor, Tensor]:
        return -torch.ones_like(k), torch.ones_like(k)


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (CosineVP, LinearVP, EDM, FlowMatching)
}


def build_schedule(config: str | dict[str, Any] | Schedule) -> Schedule:
    """A schedule from its name, its `config` dict, or an existing instance."""
    if isinstance(config, Schedule):
        return config
    if isinstance(config, str):
        config = {"kind": config}
    params = dict(config)
    kind = params.pop("kind", None)
    if kind not in SCHEDULES:
        raise ConfigError(f"unknown schedule {kind!r}; choose one of {sorted(SCHEDULES)}")
    try:
        return SCHEDULES[kind](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for schedule {kind!r}: {exc}") from None


def token_coefficients(schedule: Schedule, k: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha, sigma) for per-token levels ``k`` ``[B, T]``, shaped to broadcast against ``[B, T, D]``.

    A level tensor broadcast over the batch (a plan row, the sampler's case) is evaluated on its one
    row, so the coefficients cost what the plan's row costs, not the batch; nothing is cached and
    nothing is read back to the host.
    """
    row = k[:1] if k.dim() == 2 and k.shape[0] > 1 and k.stride(0) == 0 else k
    alpha, sigma = schedule.alpha_sigma(row)
    return alpha[..., None], sigma[..., None]
