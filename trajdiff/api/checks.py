"""Checks where values enter the public API: counts, seeds, levels, guide scales, output paths, a model's
stored defaults, and the samples themselves before anything is written or scored.

Why here: every api function (and through it the command line) takes the same arguments, and a bad one
should fail at once with one line that names it, not as a traceback deep in torch or, worse, as a
file of NaN. ``None`` always means "the default"; 0 is never a stand-in for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.errors import CheckpointError, ConfigError, SampleError
from trajdiff.plugins.spec import ModelDefaults

SCALE_MAX = 100.0
"""Largest guide scale accepted. A scale is the size of the gradient step a cost's guide takes on the
normalized sample (data scaled to unit spread) at every network evaluation: 0 turns the guide off, useful
values are about 0.01-10, and steps 100 times the data's spread per unit of gradient overshoot and diverge
(measured: the timeseries smoothness guide gives values of 1e7 at 100 and 1e17 at 1,000)."""

SAMPLE_LIMIT = 2.0 ** 20
"""Samples farther than this many times the data's range (or magnitude, if larger) from it are refused
(normalized samples: this many training standard deviations from 0). Why 2**20 (about 1e6): at that
distance float32, the precision the network samples in, steps by 2**20 * 2**-23 = 1/8 of that range, so
such a value cannot carry anything of the data; only a diverging guide, a broken calibration or a corrupt
model produces it."""

SEED_LIMIT = 2 ** 63
"""Seeds are whole numbers in [0, 2**63): torch generators take 64-bit seeds, rolled windows use seed + 1,
seed + 2, ..., and numpy's generators refuse negative ones."""


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_count(value: Any, name: str, minimum: int = 1) -> int | None:
    """A whole number >= ``minimum`` (samples, nfe, stride, max_windows ...); None stays None (the default)."""
    if value is None:
        return None
    if not _whole(value) or value < minimum:
        hint = " (pass None for the default)" if _whole(value) and value == 0 else ""
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}{hint}")
    return int(value)


def check_required(value: Any, name: str, minimum: int = 1) -> int:
    """`check_count` for an argument without a default."""
    checked = check_count(value, name, minimum)
    if checked is None:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got None")
    return checked


def check_seed(seed: Any) -> int:
    """A seed torch and numpy accept (see `SEED_LIMIT`)."""
    if not _whole(seed) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"seed must be a whole number from 0 to 2**63 - 1 (torch seeds are 64-bit), got {seed!r}")
    return int(seed)


def check_level(level: Any, name: str = "level") -> float:
    """An interval level strictly between 0 and 1."""
    if not _number(level) or not 0.0 < float(level) < 1.0:
        raise ConfigError(f"{name} must be a number between 0 and 1 (e.g. 0.9 for the central 90% interval), "
                          f"got {level!r}")
    return float(level)


def check_draws(draws: Any, samples: int) -> int | None:
    """``draws`` (None: no selection) is a count of at least ``samples``: that many of the draws are kept."""
    draws = check_count(draws, "draws")
    if draws is not None and draws < samples:
        raise ConfigError(f"draws ({draws}) must be at least samples ({samples}): {samples} of the drawn samples "
                          "are kept")
    return draws


def check_costs(costs: Any) -> dict[str, float]:
    """Cost name -> guide scale, each a finite number in [0, `SCALE_MAX`]; None is no guide."""
    if costs is None:
        return {}
    if not isinstance(costs, Mapping):
        raise ConfigError(f"costs must map a cost name to a guide scale, e.g. {{'smoothness': 0.5}}; got "
                          f"{type(costs).__name__}")
    checked = {}
    for name, scale in costs.items():
        if not isinstance(name, str):
            raise ConfigError(f"costs: cost name {name!r} is not a string")
        if not _number(scale):
            problem = f"a {type(scale).__name__}, not a number"
        elif not math.isfinite(scale):
            problem = "not finite"
        elif not 0.0 <= scale <= SCALE_MAX:
            problem = "out of range"
        else:
            checked[name] = float(scale)
            continue
        raise ConfigError(f"cost {name!r}: scale {scale!r} is {problem}; a guide scale is a number from 0 to "
                          f"{SCALE_MAX:g} (the step it takes on normalized samples: 0 is off, about 0.01-10 is "
                          "useful, larger steps diverge)")
    return checked


PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".eps", ".ps")
"""File types a ``plot`` is written as (those matplotlib writes)."""


def check_writable(path: Any, name: str = "out") -> Path | None:
    """Fails now, before any sampling, when ``path`` cannot be written: it is a folder, sits under a file,
    or its folder (or the nearest existing one above it) is not writable; a ``plot`` must be an image file."""
    if path is None:
        return None
    target = Path(path).expanduser()
    if name == "plot" and target.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"cannot write {target} (given as plot): a plot is an image; name a "
                          f"{', '.join(PLOT_SUFFIXES[:3])} file (or {', '.join(PLOT_SUFFIXES[3:])})")
    if target.is_dir():
        raise ConfigError(f"cannot write {target} (given as {name}): it is a folder; give a file name in it")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"cannot write {target} (given as {name}): the file is not writable")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {target} (given as {name}): {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {target} (given as {name}): no permission to write in {folder}")
    return target


def guide_cause(costs: Mapping[str, float] | None) -> str:
    """The likely cause of non-finite samples, for an error message."""
    if costs:
        named = ", ".join(f"{name}={scale:g}" for name, scale in costs.items())
        return f"the guide {named} (too large a scale for this cost diverges: try a smaller one)"
    return "the model itself (try another solver or nfe; its weights may be corrupt)"


def check_samples(values: np.ndarray, *, cause: str, reference: Sequence[np.ndarray] | np.ndarray | None = None,
                  spread: np.ndarray | None = None, what: str = "the samples") -> None:
    """Raises :class:`SampleError` naming ``cause`` when ``values`` ``[..., F]`` hold NaN or infinities, or
    values more than `SAMPLE_LIMIT` times the range (or magnitude, if larger) of ``reference`` (arrays ``[..., F]``
    of data in the same units, e.g. the histories) from that range; ``spread`` (per column, e.g. the training
    standard deviation) is the least range. Without a reference the values are normalized (unit spread)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if values.size == 0:
        return
    total = values.size
    # One pass for each column's extremes (NaN and infinities reach them), the exact counts only on failure.
    flat = values.reshape(-1, values.shape[-1])
    high, low = flat.max(axis=0), flat.min(axis=0)
    if not (np.isfinite(high).all() and np.isfinite(low).all()):
        bad = int((~np.isfinite(values)).sum())
        raise SampleError(f"{what} hold {bad} NaN or infinite value(s) of {total}; likely cause: {cause}. "
                          "Nothing was written")
    centre, width = _data_range(values.shape[-1], reference)
    if spread is not None and np.shape(spread) == np.shape(width):
        width = np.fmax(width, np.asarray(spread, dtype=np.float64))
    reach = np.maximum(high - centre, centre - low) / width  # within SAMPLE_LIMIT widths iff the extremes are
    if bool((reach > SAMPLE_LIMIT).any()):
        distance = np.abs(values.astype(np.float64) - centre) / width
        far = int((distance > SAMPLE_LIMIT).sum())
        units = "times the data's range from it" if reference is not None else "training standard deviations out"
        raise SampleError(f"{what} hold {far} value(s) of {total} more than 2**20 {units} (up to "
                          f"{float(distance.max()):.3g}); likely cause: {cause}. Nothing was written")


def _data_range(columns: int, reference: Sequence[np.ndarray] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the centre of the reference data's range and its width: the range or the data's largest
    magnitude, whichever is larger (1 for zeros; unbounded where a column has no finite value)."""
    if reference is None:
        return np.zeros(columns), np.ones(columns)
    parts = [reference] if isinstance(reference, np.ndarray) else list(reference)
    rows = [np.asarray(part, dtype=np.float64).reshape(-1, columns) for part in parts
            if np.size(part) and np.shape(part)[-1] == columns]
    data = np.concatenate(rows) if rows else np.full((1, columns), np.nan)
    finite = np.isfinite(data)
    low = np.where(finite, data, np.inf).min(axis=0)
    high = np.where(finite, data, -np.inf).max(axis=0)
    known = finite.any(axis=0)
    low, high = np.where(known, low, 0.0), np.where(known, high, 0.0)
    width = np.maximum(high - low, np.maximum(np.abs(low), np.abs(high)))  # nearly constant data: its magnitude
    width = np.where(width > 0, width, 1.0)
    return (low + high) / 2, np.where(known, width, np.inf)


# ------------------------------------------------------------------------------------ a model's defaults


def _whole_from(minimum: int) -> Callable[[Any], str | None]:
    return lambda value: None if _whole(value) and value >= minimum else f"a whole number >= {minimum}"


def _fraction(value: Any) -> str | None:
    return None if _number(value) and 0.0 <= value <= 1.0 else "a number from 0 to 1"


def _positive(value: Any) -> str | None:
    return None if _number(value) and math.isfinite(value) and value > 0 else "a finite number > 0"


def _of(kind: type, label: str) -> Callable[[Any], str | None]:
    return lambda value: None if isinstance(value, kind) else label


DEFAULTS_RULES: dict[str, Callable[[Any], str | None]] = {
    "history": _whole_from(0), "horizon": _whole_from(1), "steps": _whole_from(1), "batch_size": _whole_from(1),
    "stride": _whole_from(1), "nfe": _whole_from(1), "samples": _whole_from(1),
    "network": _of(dict, "an object"), "encoder": _of(dict, "an object"), "training": _of(dict, "an object"),
    "schedule": _of(str, "a string"), "parametrization": _of(str, "a string"), "solver": _of(str, "a string"),
    "noise": _of(str, "a string"), "lr": _positive, "history_prob": _fraction, "cond_dropout": _fraction,
    "label": lambda value: None if value is None or isinstance(value, str) else "a string or null",
    "condition": lambda value: None if value is None or isinstance(value, str) else "a string or null",
    "condition_info": _of(dict, "an object"),
    "labels": lambda value: (None if isinstance(value, list) and all(isinstance(v, str) for v in value)
                             else "a list of strings"),
}
"""One rule per `ModelDefaults` field: None when a stored value is fine, else what it should be."""


def validate_defaults(raw: Any, source: str | Path = "config.json") -> ModelDefaults:
    """A model's stored defaults (config.json extra.defaults) as `ModelDefaults`, each field checked; raises
    :class:`CheckpointError` naming ``source`` and the field."""
    fix = "re-train the model or restore config.json"
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: extra.defaults is {type(raw).__name__}, not an object; {fix}")
    known = {f.name for f in fields(ModelDefaults)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{source}: defaults has unknown field(s) {unknown} (a newer trajdiff?); {fix}")
    missing = [name for name in ("history", "horizon", "network") if name not in raw]
    if missing:
        raise CheckpointError(f"{source}: defaults lacks {missing}; {fix}")
    for name, value in raw.items():
        expected = DEFAULTS_RULES.get(name, lambda _: None)(value)
        if expected is not None:
            raise CheckpointError(f"{source}: defaults.{name} is {value!r} ({type(value).__name__}), not "
                                  f"{expected}; {fix}")
    return ModelDefaults(**raw)
