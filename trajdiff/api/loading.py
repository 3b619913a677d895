"""Model directories and windows: the domain's encoder for a model, encoded training windows, and
loading a trained model with its domain, encoder and calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.api.checks import validate_defaults
from trajdiff.core.calibration import Calibration
from trajdiff.core.data import Episodes
from trajdiff.core.model import DiffusionModel
from trajdiff.core.window_source import WindowIndex, WindowSource
from trajdiff.errors import CheckpointError, ConfigError, DataError, TrajdiffError
from trajdiff.plugins.identity import same_package
from trajdiff.plugins.manager import Plugins, get_plugins
from trajdiff.plugins.spec import Domain, Encoder, ModelDefaults


def registry_or_default(plugins: Plugins | None) -> Plugins:
    return plugins if plugins is not None else get_plugins()


def make_encoder(domain: Domain, defaults: ModelDefaults) -> Encoder:
    """The domain's encoder with the model's encoder options and window rows."""
    try:
        return domain.make_encoder(**defaults.encoder, history=defaults.history, horizon=defaults.horizon)
    except TypeError as error:  # an option the domain's encoder does not take
        raise ConfigError(f"domain {domain.name!r} does not accept the encoder options {sorted(defaults.encoder)}: "
                          f"{error}; see the domain's make_encoder for the options it takes") from error


def context_tokens(encoder: Encoder, defaults: ModelDefaults) -> int:
    """Context tokens of a window; checks that history and horizon fill whole tokens."""
    per = encoder.rows_per_token
    if defaults.history % per or defaults.horizon % per:
        raise ConfigError(f"history ({defaults.history}) and horizon ({defaults.horizon}) must be multiples of the "
                          f"encoder's {per} rows per token")
    return defaults.history // per


def window_index(episodes: Episodes, length: int, stride: int = 1, *,
                 history: int | None = None) -> tuple[WindowIndex, list[str]]:
    """(episode, start row) of every window of ``length`` rows (step ``stride``) as a `WindowIndex` (one offset per
    episode, nothing per window), and the ids of episodes too short for one. Windows are cut from the episodes
    when they are used. ``history`` (rows) only makes the error for data without a window name it."""
    index = WindowIndex(episodes.lengths, length, stride)
    too_short = [episodes.ids[i] for i in np.flatnonzero(index.counts == 0)]
    if not len(index):
        longest = max(episodes.lengths) if len(episodes) else 0
        rows = f"{length} rows" + ("" if history is None else f" (history {history} + horizon {length - history})")
        raise DataError(f"no episode is long enough for one window of {rows}; the longest has {longest} rows. "
                        "Use shorter --history/--horizon or more data.")
    return index, too_short


def window_source(episodes: Episodes, encoder: Encoder, history: int, length: int, stride: int = 1, *,
                  augment: Callable[[np.ndarray], np.ndarray] | None = None, labels: np.ndarray | None = None,
                  classes: int = 0, conditions: np.ndarray | None = None) -> tuple[WindowSource, list[str]]:
    """The windows of ``length`` rows (step ``stride``) as a `WindowSource` that encodes them (``history`` rows
    observed) a batch at a time, and the ids of episodes too short for one window. ``augment``, ``labels`` (a
    class per episode), ``classes`` and ``conditions`` (one row per window) as in `WindowSource`."""
    index, too_short = window_index(episodes, length, stride, history=history)

    def encode(rows: np.ndarray) -> np.ndarray:
        return encoder.encode(rows, history)[0]

    return WindowSource(episodes.sequences, index, encode, augment=augment, labels=labels, classes=classes,
                        conditions=conditions), too_short


def encode_windows(
    episodes: Episodes, encoder: Encoder, history: int, length: int, stride: int = 1,
    frames: list[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, list[tuple[int, int]], list[str]]:
    """All windows of ``length`` rows (step ``stride``) encoded at once: ``[N, length, D]``, their
    (episode, start) index, and the ids of episodes too short for one window. Pass a list as
    ``frames`` to collect each window's frame (needed to decode it). Memory grows with the windows
    (about ``length x D`` floats each): for small data; training uses `window_source`."""
    index, too_short = window_index(episodes, length, stride, history=history)
    encoded = []
    for i, start in index:
        tokens, frame = encoder.encode(episodes.sequences[i][start:start + length], history)
        encoded.append(tokens)
        if frames is not None:
            frames.append(frame)
    return np.stack(encoded).astype(np.float32), list(index), too_short


@dataclass
class LoadedModel:
    """A model directory with its domain and encoder, ready to sample."""

    model: DiffusionModel
    domain: Domain
    encoder: Encoder
    defaults: ModelDefaults
    calibration: Calibration | None = None  # written by `calibrate`, applied by forecast and evaluate
    plugins: Plugins = field(default_factory=get_plugins)  # the registry the domain came from (costs)
    folder: Path | None = None  # the model directory it was loaded from (None: built in memory)


def provenance(registry: Plugins, domain: Domain) -> dict[str, str]:
    """What a model records in its config's ``extra`` about the plugin of its ``domain``: the plugin (entry-point
    name), its distribution package and the package's version ("" where unknown)."""
    plugin, package, version = registry.owner(domain)
    return {"plugin": plugin, "package": package, "package_version": version}


def load_model(model_dir: str | Path, *, domain: str | None = None, plugins: Plugins | None = None) -> LoadedModel:
    """Loads a model directory and the domain it was trained for, bound to the model's own encoder
    (`Domain.with_encoder`). ``domain`` (``name`` or ``package:name``), if given, must be the model's domain.

    A model loads only with the plugin package that wrote it (``package`` and ``package_version`` in its
    config's ``extra``): where several plugins provide its domain's name, the recorded package is used (as if
    asked for ``package:name``); where the recorded package is not installed, or ``domain`` names another
    package, a `ConfigError` names the recorded package and version and what is installed. Another version of
    the recorded package is allowed, and reported as a `PluginVersionWarning` once per pair of versions
    (per plugins registry, so once per process for the command line). Models written before versions were
    recorded load as before: by domain name, the recorded package (if any) choosing among plugins that share
    the name."""
    model = DiffusionModel.load(model_dir)
    trained_for = model.extra.get("domain")
    if trained_for is None:
        raise CheckpointError(f"{model_dir} was not trained for a domain (no 'domain' in config.json extra); "
                              "train it with `trajdiff train --domain ...`")
    qualifier, _, asked = domain.rpartition(":") if domain is not None else ("", "", None)
    if asked is not None and asked != trained_for:
        raise ConfigError(f"{model_dir} was trained for domain {trained_for!r}, not {asked!r}; "
                          f"use a model trained with --domain {domain}")
    registry = registry_or_default(plugins)
    dom = registry.domain(_recorded_domain(model_dir, model.extra, qualifier, registry))
    try:
        encoder = dom.encoder_from_state(model.extra["encoder"])
    except TrajdiffError as error:  # the encoder refused the state; any other exception is the plugin's fault
        raise CheckpointError(f"{Path(model_dir) / 'config.json'}: extra.encoder is not a state the {dom.name!r} "
                              f"encoder loads ({error}); re-copy the model directory") from None
    defaults = validate_defaults(model.extra.get("defaults"), Path(model_dir) / "config.json")
    return LoadedModel(model, dom.with_encoder(encoder), encoder, defaults, Calibration.load(model_dir), registry,
                       Path(model_dir))


def _recorded_domain(model_dir: str | Path, extra: dict[str, Any], qualifier: str, registry: Plugins) -> str:
    """The name (plain or ``package:name``) that picks the domain a model was written with; see `load_model`."""
    name, package, plugin = extra["domain"], extra.get("package"), extra.get("plugin")
    providers = registry.domain_providers(name)
    if "package_version" not in extra:  # written before models recorded their plugin's version: as before
        if qualifier:
            return f"{qualifier}:{name}"
        mine = [choice for choice, provider in providers if same_package(provider.package, package)]
        return mine[0] if len(providers) > 1 and len(mine) == 1 else name
    version = extra["package_version"]
    written = f"package {package}" + (f" {version}" if version else "") + f" (plugin {plugin!r})"
    if qualifier and not (same_package(qualifier, package) or qualifier == plugin):
        raise ConfigError(f"{model_dir} was written with domain {name!r} from {written}, not from {qualifier!r}; "
                          f"load it with --domain {package}:{name}, or without naming a package")
    mine = [(choice, provider) for choice, provider in providers if same_package(provider.package, package)]
    if len(mine) > 1:
        mine = [(choice, provider) for choice, provider in mine if provider.plugin == plugin] or mine[:1]
    if not mine:
        installed = ", ".join(str(provider) for _, provider in providers) or "none"
        raise ConfigError(f"{model_dir} was written with domain {name!r} from {written}, which is not installed; "
                          f"installed plugins that provide {name!r}: {installed}. Install {package}"
                          + (f"=={version}" if version else "") + " to load this model")
    choice, provider = mine[0]
    if version and provider.version and provider.version != version:
        registry.warn_once(f"{model_dir} was written with domain {name!r} from {written}; loading it with "
                           f"{provider.package} {provider.version}, which may read it differently (warned once "
                           "for every model of that version)", key=f"{package} {version} -> {provider.version}")
    return choice
