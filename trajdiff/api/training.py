"""Training a model for any domain (`train`), or through one of a domain's own recipes."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajdiff import __version__
from trajdiff.api.loading import (
    context_tokens,
    encode_windows,
    make_encoder,
    registry_or_default,
)
from trajdiff.core.model import DiffusionModel
from trajdiff.core.training import TrainConfig, TrainData, Trainer
from trajdiff.errors import ConfigError
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.spec import Domain, ModelDefaults


@dataclass
class TrainSummary:
    """What a training run did."""

    model_dir: Path
    domain: str
    steps: int
    seconds: float
    final_loss: float
    windows: int
    skipped_episodes: list[str] = field(default_factory=list)
    stopped_early: bool = False


def _defaults(domain: Domain, **overrides: Any) -> ModelDefaults:
    defaults = domain.defaults()
    changes = {key: value for key, value in overrides.items() if value is not None}
    return replace(defaults, **changes) if changes else defaults


def train(
    domain: str,
    data: Any,
    out: str | Path,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    history: int | None = None,
    horizon: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    stride: int | None = None,
    network: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    recipe: str | None = None,
    device: str | None = None,
) -> TrainSummary:
    """Trains a model for ``domain`` on ``data`` and writes the model directory ``out``.

    ``network`` replaces the domain's default network; ``encoder`` updates its encoder options.
    ``recipe`` runs one of the domain's own training recipes (`Domain.recipes`) instead of the
    generic one; it takes ``steps``, ``minutes``, ``seed``, ``progress`` and ``resume``. ``device``:
    "cpu" (default), "cuda" or "cuda:N"; the written model loads on any machine."""
    registry = registry_or_default(plugins)
    dom = registry.domain(domain)
    if recipe is not None:
        return _train_recipe(dom, recipe, data, out, steps=steps, minutes=minutes, seed=seed, progress=progress,
                             resume=resume, load_options=load_options,
                             ignored={"history": history, "horizon": horizon, "batch_size": batch_size, "lr": lr,
                                      "stride": stride, "network": network, "encoder": encoder, "device": device})
    defaults = _defaults(dom, history=history, horizon=horizon, steps=steps, batch_size=batch_size, lr=lr,
                         stride=stride)
    if encoder:
        defaults = replace(defaults, encoder={**defaults.encoder, **encoder})
    episodes = dom.load(data, **(load_options or {}))
    encoder = make_encoder(dom, defaults).fit(episodes)
    observed = context_tokens(encoder, defaults)
    x, _, too_short = encode_windows(episodes, encoder, defaults.history, defaults.length, defaults.stride)
    if too_short:
        warnings.warn(f"{len(too_short)} episode(s) shorter than one window ({defaults.length} rows) were not "
                      f"used for training: {too_short[:5]}{' ...' if len(too_short) > 5 else ''}", stacklevel=2)
    x = dom.augment_windows(x, encoder)
    net = dict(network or defaults.network)
    net["dim"] = encoder.dim
    model = DiffusionModel(
        net, schedule=defaults.schedule, parametrization=defaults.parametrization,
        extra={
            "domain": dom.name,
            "plugin": registry.domain_plugin(dom.name),
            "package": registry.packages.get(registry.domain_plugin(dom.name), ""),
            "encoder": encoder.state_dict(),
            "defaults": asdict(defaults),
            "trajdiff_version": __version__,
        },
    )
    config = TrainConfig(
        steps=defaults.steps, batch_size=defaults.batch_size, lr=defaults.lr, history=observed,
        history_prob=defaults.history_prob if observed else 0.0, noise=defaults.noise, max_minutes=minutes,
        seed=seed, device=device,
        progress=progress,
        checkpoint_every=max(100, defaults.steps // 10),
    )
    torch.manual_seed(seed)
    if not resume and Path(out).exists() and (Path(out) / "config.json").exists():
        warnings.warn(f"{out} holds a model; it will be replaced (pass resume=True to continue it)", stacklevel=2)
    trainer = Trainer(model, TrainData(torch.from_numpy(x)), config, out_dir=out, resume=resume,
                      metadata={"windows": int(x.shape[0]), "episodes": len(episodes),
                                "skipped_episodes": too_short})
    result = trainer.fit()
    final = float(np.mean(result.losses[-50:])) if result.losses else float("nan")
    return TrainSummary(Path(out), dom.name, result.step, result.seconds, final, int(x.shape[0]), too_short,
                        result.stopped_early)


def _train_recipe(dom: Domain, recipe: str, data: Any, out: str | Path, *, steps: int | None, minutes: float | None,
                  seed: int, progress: bool, resume: bool, load_options: dict[str, Any] | None,
                  ignored: dict[str, Any]) -> TrainSummary:
    recipes = dom.recipes()
    if recipe not in recipes:
        known = ", ".join(f"{name} ({what})" for name, what in recipes.items()) or "none"
        raise ConfigError(f"domain {dom.name!r} has no training recipe {recipe!r}; its recipes: {known}")
    given = sorted(name for name, value in ignored.items() if value)
    if given:
        raise ConfigError(f"the {recipe!r} recipe of domain {dom.name!r} sets its own {', '.join(given)}; "
                          "leave them out (or train without --recipe)")
    episodes = dom.load(data, **(load_options or {}))
    result = dom.train_recipe(recipe, episodes, Path(out), steps=steps, minutes=minutes, seed=seed,
                              progress=progress, resume=resume)
    return TrainSummary(Path(out), dom.name, int(result["steps"]), float(result["seconds"]),
                        float(result["final_loss"]), int(result["windows"]))
