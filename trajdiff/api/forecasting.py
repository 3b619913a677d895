"""Forecasting every entity of a data set: samples decoded to user units, a tidy table, files and a plot.

A folder (or list) of files written to a table, a large CSV split with ``partition_by``, or a run on a Ray
cluster goes through `trajdiff.api.distributed`, one file at a time; every entity draws its noise from its own
streams (seeded from the seed and its name), so each path writes the same rows."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.api.checks import check_costs, check_count, check_draws, check_seed, check_writable
from trajdiff.api.columns import align_columns
from trajdiff.api.loading import LoadedModel, load_model
from trajdiff.api.output import TABLE_SUFFIXES, forecast_table, write_forecast
from trajdiff.api.plots import plot_forecasts
from trajdiff.api.sampling import (
    apply_calibration,
    check_decoded,
    check_horizon,
    forecast_histories,
    keep_representatives,
    key_seed,
    precision_context,
)
from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.manager import Plugins


@dataclass
class ForecastResult:
    """Forecast samples in user units and a tidy table of them. A streamed forecast (one file at a time, or on
    Ray) keeps neither in memory: its ``table``, ``samples`` and ``history`` are empty and ``entities``, ``rows``
    and ``partitions`` count what was written to ``out``; ``workers``: the processes that forecast."""

    table: pd.DataFrame
    samples: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    skipped: list[str]
    seconds: float
    entities: int = 0
    rows: int = 0
    partitions: int = 1
    workers: int = 1


@dataclass
class ForecastOptions:
    """How to forecast, checked once and sent as it is to every partition (and Ray worker)."""

    samples: int
    draws: int | None = None
    nfe: int | None = None
    solver: str | None = None
    seed: int = 0
    costs: dict[str, float] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    antithetic: bool = False
    calibrated: bool = True
    horizon: int | None = None
    plan: str = "full"
    plan_options: dict[str, Any] | None = None
    roll_stride: int | None = None
    precision: str = "float32"


@dataclass
class Forecasts:
    """The forecasts of one data source: the table, and per entity its samples, history and known future."""

    table: pd.DataFrame
    samples: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    truths: dict[str, np.ndarray]
    skipped: list[str]
    names: list[str]
    columns: list[str]
    entities: list[str]  # every entity read (forecast or skipped), to find one split between partitions


def forecast(
    model_dir: str | Path | LoadedModel,
    data: Any,
    *,
    samples: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    costs: dict[str, float] | None = None,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    draws: int | None = None,
    antithetic: bool = False,
    calibrated: bool = True,
    horizon: int | None = None,
    plan: str = "full",
    plan_options: dict[str, Any] | None = None,
    roll_stride: int | None = None,
    ray: str | None = None,
    partition_by: str | None = None,
    workers: int | None = None,
    precision: str = "float32",
) -> ForecastResult:
    """Forecasts the next ``horizon`` steps after the end of every episode (entity) in ``data`` (what the domain
    reads, or `Episodes` already loaded) with the model in ``model_dir`` (or one `load_model` returned, to load it
    once for many calls).

    Returns one table row per sample, entity and future step (time stamps continued from the data,
    values in the user's units); writes it to ``out`` (.csv or .parquet) and a plot to ``plot``.
    ``draws``: draw this many samples per entity and keep ``samples`` of them, one per k-means cluster
    of where they end (the domain's ``endpoints``), so that the kept ones cover distinct outcomes
    (final position clustering; best-of-N scores favour it). Kept samples are real draws.
    ``antithetic``: draw the samples in mirrored pairs (see `sample_futures`), for a steadier median.
    A calibration stored by `calibrate` is applied unless ``calibrated`` is False (and only at the trained
    horizon, where it was fitted). ``horizon``: rows to forecast (default the trained horizon); a longer
    one rolls the trained window forward, ``roll_stride`` rows at a time (see `forecast_histories`).
    ``plan``: how the noise levels of a window's unknown tokens fall (``full``, ``autoregressive``,
    ``pyramid``, ``rolling``; ``plan_options`` such as ``chunk``, ``delay``, ``window``).

    Each entity's draws come from its own noise streams, seeded from ``seed`` and the entity's name, so an
    entity is forecast the same whatever else the data holds. Larger than memory: a folder or list of files
    with a table ``out`` and no ``plot`` is forecast one file (partition) at a time and appended to ``out``;
    ``partition_by`` (a column) first splits one large CSV/Parquet file into partitions by that column, a
    chunk of rows at a time; ``ray`` (``auto`` or a cluster address) forecasts the partitions on a Ray cluster
    (``workers`` actors, default one per CPU), the model loaded once per worker. The rows written are the
    same in every case (see `trajdiff.api.distributed`); a partition must hold all rows of its entities.
    ``precision`` "bfloat16" runs the network in bfloat16 (see `sample_futures`): faster on CPUs with bfloat16
    units, samples close to but not equal to float32's.
    """
    started = time.monotonic()
    samples, nfe, seed = check_count(samples, "samples"), check_count(nfe, "nfe"), check_seed(seed)
    costs, roll_stride = check_costs(costs), check_count(roll_stride, "roll_stride")
    workers = check_count(workers, "workers")
    check_writable(out, "out")
    check_writable(plot, "plot")
    options = ForecastOptions(samples or 0, draws, nfe, solver, seed, costs, dict(load_options or {}), antithetic,
                              calibrated, horizon, plan, plan_options, roll_stride, precision)
    precision_context(precision)  # checked before anything is read
    if ray is not None or partition_by is not None or _streamed(data, out, plot):
        from trajdiff.api.distributed import forecast_partitions

        if out is None or plot is not None:
            raise ConfigError("a partitioned or distributed forecast streams its rows to a table: give out "
                              "(.csv or .parquet) and no plot (plot one partition's forecast on its own)")
        folder = model_dir.folder if isinstance(model_dir, LoadedModel) else model_dir
        if folder is None:
            raise ConfigError("a partitioned or distributed forecast loads the model where it runs: pass the model "
                              "directory, not a model built in memory")
        return forecast_partitions(folder, data, options, out=Path(out), ray=ray, partition_by=partition_by,
                                   workers=workers, plugins=plugins, started=started)
    loaded = model_dir if isinstance(model_dir, LoadedModel) else load_model(model_dir, plugins=plugins)
    options = settle(loaded, options)
    result = forecast_data(loaded, data, options, model_dir=loaded.folder or "the model")
    if result.skipped:
        warn_skipped(result.skipped, loaded.defaults.history)
    if out is not None:
        write_forecast(loaded.domain, result.table, out, result.history, result.samples, result.columns)
    if plot is not None:
        _plot(loaded, Path(plot), result, options)
    return ForecastResult(result.table, result.samples, result.history, result.skipped, time.monotonic() - started,
                          entities=len(result.samples), rows=len(result.table))


def _streamed(data: Any, out: Any, plot: Any) -> bool:
    """Whether ``data`` is a folder or list of files forecast into a table one file at a time."""
    many = isinstance(data, (list, tuple)) or (isinstance(data, (str, Path)) and Path(data).is_dir())
    return many and plot is None and out is not None and "".join(Path(out).suffixes[-2:]).lower().endswith(
        TABLE_SUFFIXES)


def settle(loaded: LoadedModel, options: ForecastOptions) -> ForecastOptions:
    """``options`` with the model's defaults filled in and the draws and horizon checked against them."""
    settled = ForecastOptions(**asdict(options))
    settled.samples = options.samples or loaded.defaults.samples
    settled.draws = check_draws(options.draws, settled.samples)
    settled.horizon = check_horizon(loaded, options.horizon)
    return settled


def warn_skipped(skipped: list[str], history: int) -> None:
    warnings.warn(f"{len(skipped)} episode(s) shorter than the model's history of {history} rows were not "
                  f"forecast: {skipped[:5]}{' ...' if len(skipped) > 5 else ''}", stacklevel=3)


def forecast_data(loaded: LoadedModel, data: Any, options: ForecastOptions, *, model_dir: Any,
                  required: bool = True, progress: bool = True) -> Forecasts:
    """The forecasts of every entity in ``data`` (``options`` settled by `settle`). ``required``: no entity
    with enough history is a `DataError` (else an empty table: a partition may hold only short ones)."""
    d, o = loaded.defaults, options
    assert o.horizon is not None
    episodes = data if isinstance(data, Episodes) else loaded.domain.load(data, **o.load_options)
    episodes = align_columns(episodes, loaded.encoder, data)
    entities = [str((episodes.meta[i] if episodes.meta else {}).get("entity", episodes.ids[i]))
                for i in range(len(episodes))]
    keep = loaded.encoder.forecast_columns  # an encoder may forecast only some columns
    names = [episodes.columns[c] for c in keep] if keep else list(episodes.columns)
    kept = [i for i, sequence in enumerate(episodes.sequences) if len(sequence) >= max(d.history, 1)]
    forecast_ones = set(kept)
    skipped = [episodes.ids[i] for i in range(len(episodes)) if i not in forecast_ones]
    empty = Forecasts(pd.DataFrame(), {}, {}, {}, skipped, names, list(episodes.columns), entities)
    if not kept:
        if required:
            source = f"{data}: " if isinstance(data, (str, Path)) else ""
            raise DataError(f"{source}no episode has the {d.history} rows of history the model needs; the longest has "
                            f"{max(episodes.lengths)} rows")
        return empty
    observed = [episodes.sequences[i][len(episodes.sequences[i]) - d.history:] if d.history
                else episodes.sequences[i][-1:] for i in kept]
    keys = _keys([entities[i] for i in kept])
    decoded, frames = forecast_histories(
        loaded, observed, samples=o.draws or o.samples, horizon=o.horizon, stride=o.roll_stride, nfe=o.nfe,
        solver=o.solver, seed=o.seed, costs=o.costs, meta=[episodes.meta[i] for i in kept], antithetic=o.antithetic,
        plan=o.plan, plan_options=o.plan_options, keys=keys, progress=progress, precision=o.precision)
    applied = o.calibrated and o.horizon == d.horizon
    decoded = apply_calibration(loaded, decoded, frames, applied)
    check_decoded(loaded, decoded, observed, applied, model_dir)
    decoded = decoded[..., keep] if keep else decoded
    if o.draws is not None and o.draws > o.samples:  # per entity, seeded by its key: independent of the others
        decoded = np.concatenate([keep_representatives(loaded.domain, decoded[:, j:j + 1], names, o.samples,
                                                       seed=key_seed(o.seed, 0, key, 0))
                                  for j, key in enumerate(keys)], axis=1)
    result = empty
    stamps = []
    for j, i in enumerate(kept):
        raw = decoded[:, j]  # [S, H, F]
        meta = episodes.meta[i] if episodes.meta else {}
        entity = entities[i]
        times = meta.get("times")
        future = (loaded.domain.future_times(times, o.horizon) if times is not None
                  else np.arange(len(episodes.sequences[i]), len(episodes.sequences[i]) + o.horizon))
        result.samples[entity] = raw
        result.history[entity] = episodes.sequences[i][-max(d.history, 1):]
        if meta.get("future") is not None:  # a domain may put the known future in meta "future"
            known = np.asarray(meta["future"])[:o.horizon]
            result.truths[entity] = known[..., keep] if keep else known
        stamps.append(future)
    result.table = forecast_table([entities[i] for i in kept], stamps, decoded, names)
    return result


def _keys(entities: list[str]) -> list[str]:
    """One distinct noise key per episode: its entity, with ``#k`` for the k-th repeat of a name."""
    seen: dict[str, int] = {}
    keys = []
    for entity in entities:
        count = seen.get(entity, 0)
        seen[entity] = count + 1
        keys.append(entity if count == 0 else f"{entity}#{count}")
    return keys


def _plot(loaded: LoadedModel, plot: Path, result: Forecasts, options: ForecastOptions) -> None:
    try:
        if loaded.domain.plot_forecasts(plot, result.history, result.samples, result.names,
                                        truths=result.truths or None) is None:
            full = {entity: known for entity, known in result.truths.items() if len(known) == options.horizon}
            plot_forecasts(result.history, result.samples, result.names, plot, truths=full or None)
    except OSError as error:
        raise ConfigError(f"cannot write plot {plot}: {error.strerror or error}; choose another path") from error
