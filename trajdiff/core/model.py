"""A diffusion model: a network plus the recipe that gives its output meaning.

The recipe (schedule, parametrization, input scaling) travels with the weights in ``config.json``
so a saved model samples exactly as it was trained. ``extra`` holds what higher layers need to
rebuild their side (domain name, encoder state, history and horizon) and is stored verbatim.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trajdiff.core.checkpoint import load_checkpoint, save_checkpoint
from trajdiff.core.denoiser import Denoiser, network_denoiser
from trajdiff.core.networks import build_network
from trajdiff.core.parametrize import check_parametrization
from trajdiff.core.schedules import Schedule, build_schedule
from trajdiff.errors import CheckpointError, ConfigError


class DiffusionModel(nn.Module):
    """Network + schedule + parametrization, with an exponential moving average of the weights."""

    def __init__(
        self,
        network: nn.Module | dict[str, Any],
        schedule: Schedule | str | dict[str, Any] = "cosine",
        parametrization: str = "v",
        sigma_data: float = 1.0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.network = build_network(network) if isinstance(network, dict) else network
        if not hasattr(self.network, "config"):
            raise ConfigError("the network must expose a .config dict (see trajdiff.core.networks)")
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        self.schedule = build_schedule(schedule)
        self.parametrization = check_parametrization(parametrization)
        self.sigma_data = float(sigma_data)
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def config(self) -> dict[str, Any]:
        """Everything except the weights, JSON-serializable."""
        return {
            "network": self.network.config,
            "schedule": self.schedule.config,
            "parametrization": self.parametrization,
            "sigma_data": self.sigma_data,
            "extra": self.extra,
        }

    def denoiser(self, ema: bool = True) -> Denoiser:
        """The denoiser samplers call; the EMA weights by default (they sample better)."""
        return network_denoiser(self.ema if ema else self.network, self.schedule, self.parametrization,
                                self.sigma_data)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for ema_param, param in zip(self.ema.parameters(), self.network.parameters(), strict=True):
            ema_param.lerp_(param.detach(), 1.0 - decay)
        for ema_buffer, buffer in zip(self.ema.buffers(), self.network.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def save(self, directory: str | Path, *, metrics: dict | None = None) -> Path:
        """Writes a model directory (config.json, weights.safetensors, ema.safetensors, metrics.json)."""
        return save_checkpoint(
            directory,
            config=self.config,
            tensors={"weights": self.network.state_dict(), "ema": self.ema.state_dict()},
            metrics=metrics,
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DiffusionModel:
        missing = [key for key in ("network", "schedule", "parametrization") if key not in config]
        if missing:
            raise CheckpointError(f"model config lacks {missing}; was it written by trajdiff?")
        return cls(
            config["network"],
            schedule=config["schedule"],
            parametrization=config["parametrization"],
            sigma_data=config.get("sigma_data", 1.0),
            extra=config.get("extra", {}),
        )

    @classmethod
    def load(cls, directory: str | Path) -> DiffusionModel:
        """Rebuilds a model from its directory; validates the config, never unpickles."""
        checkpoint = load_checkpoint(directory)
        where, fix = Path(directory) / "config.json", "re-copy the model directory or re-train"
        problem = config_problem(checkpoint.config)
        if problem:
            raise CheckpointError(f"{where}: {problem}; {fix}")
        try:
            model = cls.from_config(checkpoint.config)
        except ConfigError as error:  # a network, schedule or parametrization setting out of range
            raise CheckpointError(f"{where}: {str(error).rstrip('.')}; {fix}") from None
        for name, module in (("weights", model.network), ("ema", model.ema)):
            if name not in checkpoint.tensors:
                raise CheckpointError(f"{Path(directory) / (name + '.safetensors')} is missing; re-train or re-copy")
            try:
                module.load_state_dict(checkpoint.tensors[name])
            except RuntimeError as exc:
                raise CheckpointError(
                    f"{Path(directory) / (name + '.safetensors')} does not match the network in config.json: "
                    f"{' '.join(line.strip() for line in str(exc).splitlines()[:2])}"
                ) from None
        model.eval()
        return model


_CONFIG_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "network": (dict, "an object"), "schedule": ((dict, str), "an object or a schedule name"),
    "parametrization": (str, "a string"), "extra": (dict, "an object"), "training": (dict, "an object"),
    "metadata": (dict, "an object"), "trajdiff_version": (str, "a string"),
}


def config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with the types of a stored model config (config.json), or None: each field its type, and
    ``sigma_data`` (the data's spread the network's inputs are scaled by) a finite number > 0."""
    for key, (kind, label) in _CONFIG_TYPES.items():
        if key in config and not isinstance(config[key], kind):
            return f"{key} is {config[key]!r:.60} ({type(config[key]).__name__}), not {label}"
    sigma = config.get("sigma_data", 1.0)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        return f"sigma_data is {sigma!r:.60}, not a finite number > 0"
    return None
