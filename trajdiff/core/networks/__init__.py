"""Denoiser networks and a registry that rebuilds them from JSON-serializable configs.

Every network has ``.config`` (a dict with ``"kind"`` plus constructor kwargs) and
``build_network(net.config)`` rebuilds the same architecture, which is how checkpoints
store their model as ``config.json``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from trajdiff.core.networks.transformer import TemporalTransformer
from trajdiff.core.networks.unet import TemporalUNet
from trajdiff.core.networks.window_mlp import WindowMLP
from trajdiff.errors import ConfigError

NETWORKS: dict[str, type[nn.Module]] = {"unet": TemporalUNet, "transformer": TemporalTransformer,
                                        "window_mlp": WindowMLP}

__all__ = ["NETWORKS", "TemporalTransformer", "TemporalUNet", "WindowMLP", "build_network", "complete_network"]


def complete_network(config: dict[str, Any], *, dim: int, tokens: int) -> dict[str, Any]:
    """``config`` with the sizes the data decide: ``dim`` (features per token) always, and ``length`` (tokens
    per window) for a network built for one window length (``window_mlp``) unless the config gives one."""
    completed = {**config, "dim": dim}
    kind = completed.get("kind")
    if kind in NETWORKS and "length" in inspect.signature(NETWORKS[kind].__init__).parameters:
        if completed.get("length") is None:
            completed["length"] = tokens
    return completed


def build_network(config: dict[str, Any]) -> nn.Module:
    """Build a network from ``{"kind": "unet" | "transformer" | "window_mlp", **constructor_kwargs}``.

    Raises ConfigError for an unknown kind, unknown or missing kwargs, or bad values.
    """
    if not isinstance(config, dict):
        raise ConfigError(
            f"network config must be a dict like {{'kind': 'unet', 'dim': 2}}, got {type(config).__name__}."
        )
    kwargs = dict(config)
    kind = kwargs.pop("kind", None)
    if kind not in NETWORKS:
        raise ConfigError(f"unknown network kind {kind!r}; valid kinds: {', '.join(sorted(NETWORKS))}.")
    cls = NETWORKS[kind]
    params = {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(
            f"unknown argument(s) {', '.join(unknown)} for network kind {kind!r}; "
            f"valid arguments: {', '.join(params)}."
        )
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise ConfigError(f"network kind {kind!r} needs argument(s) {', '.join(missing)} (e.g. 'dim': 2).")
    return cls(**kwargs)
