"""Training a model for any domain (`train`): the domain's default configuration, optionally one of its named
recipes over it, then the caller's arguments, all run through one path (encoder, windows, `Trainer`)."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajdiff import __version__
from trajdiff.api.checks import check_seed
from trajdiff.api.loading import (
    context_tokens,
    make_encoder,
    provenance,
    registry_or_default,
    window_index,
    window_source,
)
from trajdiff.core.data import Episodes
from trajdiff.core.model import DiffusionModel
from trajdiff.core.networks import complete_network
from trajdiff.core.training import TrainConfig, Trainer
from trajdiff.core.window_source import WindowSource
from trajdiff.errors import CheckpointError, ConfigError, DataError
from trajdiff.memory import return_freed_memory
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.spec import Domain, ModelDefaults, Recipe, TrainingSet

SET_BY_THE_PATH = ("steps", "batch_size", "lr", "noise", "window", "history", "history_prob", "cond_dropout",
                   "max_minutes", "seed", "progress", "device")
"""TrainConfig fields that `train` sets from the model settings and its arguments (not from ``training``)."""


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
    overwrite: bool = False,
    condition: str | None = None,
) -> TrainSummary:
    """Trains a model for ``domain`` on ``data`` (what the domain reads, or `Episodes` already loaded) and
    writes the model directory ``out``.

    ``recipe`` names one of the domain's training configurations (`Domain.recipes`, e.g. motion's
    "stream"); its settings replace the domain's defaults, and the arguments given here replace both:
    ``network`` the network, ``encoder`` (merged) encoder options. ``minutes`` stops training early.
    ``device``: "cpu" (default), "cuda" or "cuda:N"; the written model loads on any machine.

    Same data, options, ``seed`` and thread count give bit-identical weights on a CPU. ``resume`` continues
    the checkpoint in ``out`` (written every tenth of the steps and when interrupted) exactly where it
    stopped, and refuses other data than it was trained on; a folder that holds a model is replaced only
    with ``overwrite``. ``condition`` names a per-window condition of the domain (`Domain.window_conditions`, e.g.
    rl's "return") for a model that classifier-free guidance can steer."""
    torch.manual_seed(check_seed(seed))  # before anything draws: the network's initial weights, dropout
    _check_out(Path(out), resume=resume, overwrite=overwrite)
    registry = registry_or_default(plugins)
    dom = registry.domain(domain)
    chosen = _recipe(dom, recipe)
    defaults = _settings(dom, chosen, history=history, horizon=horizon, steps=steps, batch_size=batch_size, lr=lr,
                         stride=stride, network=network, encoder=encoder, condition=condition)
    episodes = data if isinstance(data, Episodes) else dom.load(data, **(load_options or {}))
    return_freed_memory()
    fitted = make_encoder(dom, defaults).fit(episodes)
    return_freed_memory()
    observed = context_tokens(fitted, defaults)
    index, too_short = window_index(episodes, defaults.length, defaults.stride, history=defaults.history)
    if too_short:
        warnings.warn(f"{len(too_short)} episode(s) shorter than one window ({defaults.length} rows) were not "
                      f"used for training: {too_short[:5]}{' ...' if len(too_short) > 5 else ''}", stacklevel=2)
    defaults, labels = episode_labels(episodes, index.episodes, defaults)
    defaults, conditions = window_conditions(dom, episodes, index, defaults)
    source, _ = window_source(episodes, fitted, defaults.history, defaults.length, defaults.stride,
                              augment=lambda windows: dom.augment_windows(windows, fitted), labels=labels,
                              classes=len(defaults.labels) if labels is not None else 0, conditions=conditions)
    net = complete_network(defaults.network, dim=fitted.dim, tokens=source.tokens)
    if labels is not None or conditions is not None:
        net["cond_dim"] = len(defaults.labels) if conditions is None else int(conditions.shape[1])
    defaults = replace(defaults, network=dict(net))
    extra: dict[str, Any] = {
        "domain": dom.name,
        **provenance(registry, dom),  # the plugin, package and version that wrote the model
        "encoder": fitted.state_dict(),
        "defaults": asdict(defaults),
        "trajdiff_version": __version__,
    }
    if chosen is not None:
        stored = chosen.store(TrainingSet(fitted, defaults, source, source.all_labels())) if chosen.store else {}
        extra["recipe"] = {"name": recipe, "stored": stored}
    model = DiffusionModel(net, schedule=defaults.schedule, parametrization=defaults.parametrization, extra=extra)
    config = _train_config(defaults, observed, source.tokens, conditioned=net.get("cond_dim", 0) > 0, minutes=minutes,
                           seed=seed, device=device, progress=progress)
    fingerprint = data_fingerprint(episodes, source, extra["encoder"], defaults.history)
    if resume:
        _check_same_data(Path(out), fingerprint)
    trainer = Trainer(model, source, config, out_dir=out, resume=resume,
                      metadata={"episodes": len(episodes), "skipped_episodes": too_short,
                                "data_fingerprint": fingerprint})
    result = trainer.fit()
    final = float(np.mean(result.losses[-50:])) if result.losses else float("nan")
    return TrainSummary(Path(out), dom.name, result.step, result.seconds, final, len(source), too_short,
                        result.stopped_early)


def _check_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    """A model folder is continued only with ``resume`` and replaced only with ``overwrite``."""
    holds_model = (out / "config.json").is_file()
    if resume and overwrite:
        raise ConfigError("choose one of --resume (continue the model in the folder) and --overwrite (replace it)")
    if resume and not holds_model:
        raise ConfigError(f"nothing to resume in {out}: it holds no checkpoint (config.json); train without --resume "
                          "to start a new model there")
    if holds_model and not resume and not overwrite:
        raise ConfigError(f"{out} already holds a model: pass --resume to continue training it, --overwrite to "
                          "replace it, or choose another --out")


FINGERPRINT = "sha256 of episodes + window index v1"
"""How `data_fingerprint` is made; a checkpoint whose ``metadata`` records another way cannot be checked."""


def data_fingerprint(episodes: Episodes, source: WindowSource, encoder_state: dict[str, Any], history: int) -> str:
    """sha256 of what a run trains on, without encoding a window: every episode's raw values (dtype, shape,
    bytes), the window index (length, stride, history rows, augmented copies), each episode's label and
    the fitted encoder's state (its options and statistics). A resumed run must give the same."""
    header = {"kind": FINGERPRINT, "columns": list(episodes.columns), "length": source.index.length,
              "stride": source.index.stride, "history": history, "copies": source.copies,
              "tokens": [source.tokens, source.dim], "encoder": encoder_state,
              "labels": None if source.labels is None else source.labels.tolist()}
    if source.conditions is not None:  # only then, so that earlier checkpoints keep their fingerprint
        header["conditions"] = hashlib.sha256(source.conditions.tobytes()).hexdigest()
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    for sequence in episodes.sequences:
        values = np.ascontiguousarray(sequence)
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(values.reshape(-1).view(np.uint8))  # the bytes, without a copy
    return digest.hexdigest()


def _check_same_data(out: Path, fingerprint: str) -> None:
    """Resuming with other data (or other windowing options) than the checkpoint was trained on is an error."""
    try:
        metadata = json.loads((out / "config.json").read_text()).get("metadata", {})
        saved = metadata.get("data_fingerprint")
    except (OSError, ValueError, AttributeError) as error:
        raise CheckpointError(f"cannot read {out / 'config.json'} to resume: {error}") from None
    if saved is None and metadata.get("data_sha256") is not None:
        warnings.warn(f"{out} records the sha256 of its encoded training windows, written before training data "
                      "were fingerprinted without encoding them; resuming without checking that the data are the "
                      "same", stacklevel=3)
    if saved is not None and saved != fingerprint:
        raise DataError(f"{out} was trained on other data (or other --history/--horizon/--stride/encoder options) "
                        f"than this run would use (training data fingerprint {saved[:12]} vs {fingerprint[:12]}); "
                        "resume with the same data and options, or train a new model with --overwrite")


def _recipe(dom: Domain, name: str | None) -> Recipe | None:
    """The domain's recipe called ``name`` (None for none); an unknown name is a ConfigError listing them."""
    if name is None:
        return None
    recipes = dom.recipes()
    if name not in recipes:
        known = ", ".join(f"{key} ({value.description})" for key, value in recipes.items()) or "none"
        raise ConfigError(f"domain {dom.name!r} has no training recipe {name!r}; its recipes: {known}")
    chosen = recipes[name]
    if not isinstance(chosen, Recipe):
        raise ConfigError(f"domain {dom.name!r}: recipes() must map names to Recipe, got {type(chosen).__name__} "
                          f"for {name!r}")
    return chosen


def _settings(dom: Domain, recipe: Recipe | None, *, network: dict[str, Any] | None,
              encoder: dict[str, Any] | None, **overrides: Any) -> ModelDefaults:
    """The domain's defaults, then the recipe's overrides, then the caller's (those not None)."""
    defaults = dom.defaults()
    if recipe is not None:
        known = {f.name for f in fields(ModelDefaults)}
        unknown = sorted(set(recipe.defaults) - known)
        if unknown:
            raise ConfigError(f"domain {dom.name!r}: recipe {recipe.description!r} sets unknown model option(s) "
                              f"{unknown}; valid: {sorted(known)}")
        merged = {**defaults.encoder, **recipe.defaults.get("encoder", {})}
        defaults = replace(defaults, **{**recipe.defaults, "encoder": merged})
    changes = {key: value for key, value in overrides.items() if value is not None}
    if network:
        changes["network"] = dict(network)
    if encoder:
        changes["encoder"] = {**defaults.encoder, **encoder}
    return replace(defaults, **changes) if changes else defaults


def episode_labels(episodes: Episodes, used: np.ndarray,
                    defaults: ModelDefaults) -> tuple[ModelDefaults, np.ndarray | None]:
    """For a label-conditioned model (``defaults.label``): the settings with the label values resolved, and
    each episode's index among them (0 for the ``used`` ones' complement, which give no window); (defaults,
    None) for an unconditional one."""
    if defaults.label is None:
        return defaults, None
    values: dict[int, str] = {}
    for i in (int(i) for i in used):
        meta = episodes.meta[i] or {}
        if defaults.label not in meta:
            raise DataError(f"episode {episodes.ids[i]!r} has no {defaults.label!r} in its meta, which this model "
                            "is conditioned on; give every episode one (or train without the label)")
        values[i] = str(meta[defaults.label])
    labels = list(defaults.labels) or sorted(set(values.values()))
    unknown = sorted({(value, episodes.ids[i]) for i, value in values.items() if value not in labels})
    if unknown:
        raise DataError(f"{defaults.label} value(s) not among the model's labels {labels}: "
                        + ", ".join(f"{value!r} (episode {episode!r})" for value, episode in unknown[:5]))
    per_episode = np.zeros(len(episodes), dtype=np.int64)
    for i, value in values.items():
        per_episode[i] = labels.index(value)
    return replace(defaults, labels=labels), per_episode


def window_conditions(dom: Domain, episodes: Episodes, index: Any,
                      defaults: ModelDefaults) -> tuple[ModelDefaults, np.ndarray | None]:
    """For a model conditioned per window (``defaults.condition``): the settings with the domain's record of the
    condition, and every training window's condition ``[N, C]``; (defaults, None) for other models."""
    if defaults.condition is None:
        return defaults, None
    if defaults.label is not None:
        raise ConfigError(f"a model is conditioned on a label ({defaults.label!r}) or on a per-window condition "
                          f"({defaults.condition!r}), not both")
    episode_of, starts = index.locate(np.arange(len(index)))
    values, info = dom.window_conditions(defaults.condition, episodes, np.stack([episode_of, starts], axis=1))
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or len(values) != len(index) or not np.isfinite(values).all():
        raise DataError(f"domain {dom.name!r}: condition {defaults.condition!r} must give one finite row per training "
                        f"window ({len(index)}), got shape {values.shape}")
    return replace(defaults, condition_info=dict(info)), values


def _train_config(defaults: ModelDefaults, observed: int, tokens: int, *, conditioned: bool,
                  minutes: float | None, seed: int, device: str | None, progress: bool) -> TrainConfig:
    """The Trainer's configuration for these model settings (``defaults.training`` adds further options)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(defaults.training) - known)
    clash = sorted(set(defaults.training) & set(SET_BY_THE_PATH))
    if unknown or clash:
        raise ConfigError(f"training options {unknown or clash} are not TrainConfig options this path takes; "
                          f"valid: {sorted(known - set(SET_BY_THE_PATH))}")
    options: dict[str, Any] = {"checkpoint_every": max(100, defaults.steps // 10), **defaults.training}
    return TrainConfig(
        steps=defaults.steps, batch_size=defaults.batch_size, lr=defaults.lr, noise=defaults.noise,
        window=tokens - observed if defaults.noise == "rolling" else None, history=observed,
        history_prob=defaults.history_prob if observed else 0.0,
        cond_dropout=defaults.cond_dropout if conditioned else 0.0,
        max_minutes=minutes, seed=seed, device=device, progress=progress, **options,
    )
