"""Model directories and windows: the domain's encoder for a model, encoded training windows, and
loading a trained model with its domain, encoder and calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.core.calibration import Calibration
from trajdiff.core.data import Episodes
from trajdiff.core.model import DiffusionModel
from trajdiff.errors import CheckpointError, ConfigError, DataError
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


def window_index(episodes: Episodes, length: int, stride: int = 1) -> tuple[list[tuple[int, int]], list[str]]:
    """(episode, start row) of every window of ``length`` rows (step ``stride``), and the ids of episodes too
    short for one. Indices only: windows are cut from the episodes when they are used."""
    index, too_short = [], []
    for i, sequence in enumerate(episodes.sequences):
        if len(sequence) < length:
            too_short.append(episodes.ids[i])
            continue
        index.extend((i, start) for start in range(0, len(sequence) - length + 1, stride))
    if not index:
        longest = max(episodes.lengths) if len(episodes) else 0
        raise DataError(f"no episode is long enough for one window of {length} rows; the longest has {longest} rows. "
                        "Use shorter --history/--horizon or more data.")
    return index, too_short


def encode_windows(
    episodes: Episodes, encoder: Encoder, history: int, length: int, stride: int = 1,
    frames: list[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, list[tuple[int, int]], list[str]]:
    """All windows of ``length`` rows (step ``stride``) encoded: ``[N, length, D]``, their
    (episode, start) index, and the ids of episodes too short for one window. Pass a list as
    ``frames`` to collect each window's frame (needed to decode it)."""
    try:
        index, too_short = window_index(episodes, length, stride)
    except DataError:
        longest = max(episodes.lengths) if len(episodes) else 0
        raise DataError(
            f"no episode is long enough for one window of {length} rows (history {history} + horizon "
            f"{length - history}); the longest has {longest} rows. Use shorter --history/--horizon or more data."
        ) from None
    encoded = []
    for i, start in index:
        tokens, frame = encoder.encode(episodes.sequences[i][start:start + length], history)
        encoded.append(tokens)
        if frames is not None:
            frames.append(frame)
    return np.stack(encoded).astype(np.float32), index, too_short


@dataclass
class LoadedModel:
    """A model directory with its domain and encoder, ready to sample."""

    model: DiffusionModel
    domain: Domain
    encoder: Encoder
    defaults: ModelDefaults
    calibration: Calibration | None = None  # written by `calibrate`, applied by forecast and evaluate
    plugins: Plugins = field(default_factory=get_plugins)  # the registry the domain came from (costs)


def load_model(model_dir: str | Path, *, domain: str | None = None, plugins: Plugins | None = None) -> LoadedModel:
    """Loads a model directory and the domain it was trained for (checked against ``domain`` if given),
    bound to the model's own encoder (`Domain.with_encoder`)."""
    model = DiffusionModel.load(model_dir)
    trained_for = model.extra.get("domain")
    if trained_for is None:
        raise CheckpointError(f"{model_dir} was not trained for a domain (no 'domain' in config.json extra); "
                              "train it with `trajdiff train --domain ...`")
    if domain is not None and domain != trained_for:
        raise ConfigError(f"{model_dir} was trained for domain {trained_for!r}, not {domain!r}; "
                          f"use a model trained with --domain {domain}")
    registry = registry_or_default(plugins)
    dom = registry.domain(trained_for)
    encoder = dom.encoder_from_state(model.extra["encoder"])
    defaults = ModelDefaults(**model.extra["defaults"])
    return LoadedModel(model, dom.with_encoder(encoder), encoder, defaults, Calibration.load(model_dir), registry)
