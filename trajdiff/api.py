"""The Python face of trajdiff: train, forecast, evaluate and calibrate for any domain.

Each function works from what a user has (a domain name, a data file or DataFrame, a model
directory) and is what the command line calls. The domain, found through the plugin manager,
does everything data-specific: loading, encoding into a local normalized frame and back, metrics.

    from trajdiff import api
    api.train("timeseries", "ETTh1.csv", "runs/etth1", steps=2000)
    frame = api.forecast("runs/etth1", "ETTh1.csv", samples=20, out="forecast.csv", plot="forecast.png")
    api.calibrate("runs/etth1", "validation.csv", spread=False, antithetic=True)   # stored, applied from now on
    scores = api.evaluate("runs/etth1", "test.csv", antithetic=True)
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trajdiff import __version__
from trajdiff.calibration import Calibration, coverage, fit_calibration
from trajdiff.core import plans, samplers
from trajdiff.core.data import Episodes
from trajdiff.core.guidance import CostGradient
from trajdiff.core.model import DiffusionModel
from trajdiff.core.selection import representative_samples
from trajdiff.core.training import TrainConfig, TrainData, Trainer
from trajdiff.errors import CheckpointError, ConfigError, DataError
from trajdiff.plotting import pyplot, save_figure
from trajdiff.plugins.manager import Plugins, get_plugins
from trajdiff.plugins.spec import Domain, Encoder, ModelDefaults


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


def _plugins(plugins: Plugins | None) -> Plugins:
    return plugins if plugins is not None else get_plugins()


def _defaults(domain: Domain, **overrides: Any) -> ModelDefaults:
    defaults = domain.defaults()
    changes = {key: value for key, value in overrides.items() if value is not None}
    return replace(defaults, **changes) if changes else defaults


def make_encoder(domain: Domain, defaults: ModelDefaults) -> Encoder:
    """The domain's encoder with the model's encoder options and window rows."""
    try:
        return domain.make_encoder(**defaults.encoder, history=defaults.history, horizon=defaults.horizon)
    except TypeError as error:  # an option the domain's encoder does not take
        raise ConfigError(f"domain {domain.name!r} does not accept the encoder options {sorted(defaults.encoder)}: "
                          f"{error}; see the domain's make_encoder for the options it takes") from error


def _tokens(encoder: Encoder, defaults: ModelDefaults) -> int:
    """Context tokens of a window; checks that history and horizon fill whole tokens."""
    per = int(getattr(encoder, "rows_per_token", 1))
    if defaults.history % per or defaults.horizon % per:
        raise ConfigError(f"history ({defaults.history}) and horizon ({defaults.horizon}) must be multiples of the "
                          f"encoder's {per} rows per token")
    return defaults.history // per


def encode_windows(
    episodes: Episodes, encoder: Encoder, history: int, length: int, stride: int = 1,
    frames: list[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, list[tuple[int, int]], list[str]]:
    """All windows of ``length`` rows (step ``stride``) encoded: ``[N, length, D]``, their
    (episode, start) index, and the ids of episodes too short for one window. Pass a list as
    ``frames`` to collect each window's frame (needed to decode it)."""
    encoded, index, too_short = [], [], []
    for i, sequence in enumerate(episodes.sequences):
        if len(sequence) < length:
            too_short.append(episodes.ids[i])
            continue
        for start in range(0, len(sequence) - length + 1, stride):
            tokens, frame = encoder.encode(sequence[start:start + length], history)
            encoded.append(tokens)
            if frames is not None:
                frames.append(frame)
            index.append((i, start))
    if not encoded:
        longest = max(episodes.lengths) if len(episodes) else 0
        raise DataError(
            f"no episode is long enough for one window of {length} rows (history {history} + horizon "
            f"{length - history}); the longest has {longest} rows. Use shorter --history/--horizon or more data."
        )
    return np.stack(encoded).astype(np.float32), index, too_short


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
    registry = _plugins(plugins)
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
    context_tokens = _tokens(encoder, defaults)
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
        steps=defaults.steps, batch_size=defaults.batch_size, lr=defaults.lr, history=context_tokens,
        history_prob=defaults.history_prob if context_tokens else 0.0, noise=defaults.noise, max_minutes=minutes,
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


@dataclass
class LoadedModel:
    """A model directory with its domain and encoder, ready to sample."""

    model: DiffusionModel
    domain: Domain
    encoder: Encoder
    defaults: ModelDefaults
    calibration: Calibration | None = None  # written by `calibrate`, applied by forecast and evaluate


def load_model(model_dir: str | Path, *, domain: str | None = None, plugins: Plugins | None = None) -> LoadedModel:
    """Loads a model directory and the domain it was trained for (checked against ``domain`` if given)."""
    model = DiffusionModel.load(model_dir)
    trained_for = model.extra.get("domain")
    if trained_for is None:
        raise CheckpointError(f"{model_dir} was not trained for a domain (no 'domain' in config.json extra); "
                              "train it with `trajdiff train --domain ...`")
    if domain is not None and domain != trained_for:
        raise ConfigError(f"{model_dir} was trained for domain {trained_for!r}, not {domain!r}; "
                          f"use a model trained with --domain {domain}")
    dom = _plugins(plugins).domain(trained_for)
    encoder = dom.encoder_from_state(model.extra["encoder"])
    defaults = ModelDefaults(**model.extra["defaults"])
    return LoadedModel(model, dom, encoder, defaults, Calibration.load(model_dir))


def sample_futures(
    loaded: LoadedModel,
    contexts: np.ndarray,
    *,
    samples: int,
    nfe: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    costs: dict[str, float] | None = None,
    batch_limit: int = 4096,
    frames: list[dict[str, Any]] | None = None,
    meta: list[dict[str, Any]] | None = None,
    antithetic: bool = False,
) -> np.ndarray:
    """Samples futures for encoded contexts ``[N, L, D]`` (history rows observed): ``[S, N, L, D]``.

    ``antithetic`` draws the starting noise in pairs ``(z, -z)`` per context (``samples`` must be
    even): each sample is still a draw from the model, but with a deterministic solver the pairs
    mirror each other, so the samples' median and mean carry far less Monte Carlo noise.

    ``costs`` maps a cost name (the domain's or a plugin's) to a guidance scale. A cost with a ``bind``
    method (e.g. one coupling the agents of a batch) is bound per chunk with ``bind(frames, meta, samples)``
    when ``frames`` (the encoder's, one per context) and optionally ``meta`` (one dict per context) are given.
    """
    defaults = loaded.defaults
    model = loaded.model
    n, length, dim = contexts.shape
    if antithetic and samples % 2:
        raise ConfigError(f"antithetic sampling draws samples in pairs; samples must be even, got {samples}")
    nfe = nfe or defaults.nfe
    plan = plans.full_sequence(length, nfe)
    context_tokens = _tokens(loaded.encoder, defaults)
    if context_tokens:
        plan = plans.with_context(plan, slice(0, context_tokens))
    guides = []
    if costs:
        available = get_plugins().costs(loaded.domain)
        for name, scale in costs.items():
            if name not in available:
                raise ConfigError(f"domain {loaded.domain.name!r} has no cost {name!r}; available: {sorted(available)}")
            guides.append(CostGradient(available[name], scale=scale))
    bindable = frames is not None and any(callable(getattr(g.cost, "bind", None)) for g in guides)
    generator = torch.Generator().manual_seed(seed)
    context = torch.from_numpy(contexts).float()
    out = torch.empty(samples, n, length, dim)
    denoise = model.denoiser(ema=True)
    per_chunk = max(1, batch_limit // samples)
    for lo in range(0, n, per_chunk):
        chunk = context[lo:lo + per_chunk].repeat_interleave(samples, dim=0)
        noise = samplers.antithetic_noise(chunk.shape, samples, generator=generator) if antithetic else None
        start = samplers.initial_state(chunk.shape, plan, model.schedule, context=chunk, generator=generator,
                                       noise=noise)
        chunk_guides = [_bound(g, frames, meta, lo, lo + per_chunk, samples) for g in guides] if bindable else guides
        drawn = samplers.sample(denoise, start, plan, model.schedule, solver=solver or defaults.solver,
                                guides=chunk_guides, generator=generator)
        out[:, lo:lo + per_chunk] = drawn.reshape(-1, samples, length, dim).transpose(0, 1)
    return out.numpy()


def _bound(guide: CostGradient, frames: Any, meta: Any, lo: int, hi: int, samples: int) -> CostGradient:
    """The guide with its cost bound to the frames and meta of contexts ``lo:hi`` (if the cost binds)."""
    bind = getattr(guide.cost, "bind", None)
    if not callable(bind):
        return guide
    cost = bind(frames[lo:hi], meta[lo:hi] if meta is not None else None, samples)
    return CostGradient(cost, scale=guide.scale, inner_steps=guide.inner_steps, stop_level=guide.stop_level,
                        through_model=guide.through_model)


def _bases(encoder: Encoder, frames: list[dict[str, Any]]) -> np.ndarray | None:
    """The encoder's deterministic forecasts ``[N, H, F]`` for these frames, or None if it has none."""
    bases = [encoder.base(frame) for frame in frames]
    return None if any(b is None for b in bases) else np.stack(bases)


def _calibrated(loaded: LoadedModel, futures: np.ndarray, frames: list[dict[str, Any]], use: bool) -> np.ndarray:
    """Futures ``[S, N, H, F]`` with the model's stored calibration applied (unchanged without one)."""
    if not use or loaded.calibration is None:
        return futures
    return loaded.calibration.apply(futures, _bases(loaded.encoder, frames))


def _check_draws(draws: int | None, samples: int) -> None:
    if draws is not None and draws < samples:
        raise ConfigError(f"draws ({draws}) must be at least samples ({samples}): {samples} of the drawn samples "
                          "are kept")


def keep_representatives(domain: Domain, futures: np.ndarray, columns: list[str], keep: int, *,
                         seed: int = 0) -> np.ndarray:
    """``keep`` of the samples ``[S, N, H, F]`` (user units) of each of N windows: one per k-means cluster
    of where they end (``domain.endpoints``), so that they cover distinct outcomes -> ``[keep, N, H, F]``."""
    ends = np.stack([domain.endpoints(futures[:, j], columns) for j in range(futures.shape[1])])  # [N, S, C]
    chosen = representative_samples(ends, keep, seed=seed)  # [N, keep]
    return np.stack([futures[chosen[j], j] for j in range(futures.shape[1])], axis=1)


@dataclass
class ForecastResult:
    """Forecast samples in user units and a tidy table of them."""

    table: pd.DataFrame
    samples: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    skipped: list[str]
    seconds: float


def forecast(
    model_dir: str | Path,
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
) -> ForecastResult:
    """Forecasts the next ``horizon`` steps after the end of every episode (entity) in ``data``.

    Returns one table row per sample, entity and future step (time stamps continued from the data,
    values in the user's units); writes it to ``out`` (.csv or .parquet) and a plot to ``plot``.
    ``draws``: draw this many samples per entity and keep ``samples`` of them, one per k-means cluster
    of where they end (the domain's ``endpoints``), so that the kept ones cover distinct outcomes
    (final position clustering; best-of-N scores favour it). Kept samples are real draws.
    ``antithetic``: draw the samples in mirrored pairs (see `sample_futures`), for a steadier median.
    A calibration stored by `calibrate` is applied unless ``calibrated`` is False.
    """
    started = time.monotonic()
    loaded = load_model(model_dir, plugins=plugins)
    d = loaded.defaults
    samples = samples or d.samples
    _check_draws(draws, samples)
    episodes = loaded.domain.load(data, **(load_options or {}))
    contexts, frames, kept, skipped = [], [], [], []
    for i, sequence in enumerate(episodes.sequences):
        if len(sequence) < max(d.history, 1):
            skipped.append(episodes.ids[i])
            continue
        history_rows = sequence[len(sequence) - d.history:] if d.history else sequence[-1:]
        window = np.concatenate([history_rows, np.repeat(history_rows[-1:], d.horizon, axis=0)])[-d.length:]
        tokens, frame = loaded.encoder.encode(window, d.history)
        contexts.append(tokens)
        frames.append(frame)
        kept.append(i)
    if skipped:
        warnings.warn(f"{len(skipped)} episode(s) shorter than the model's history of {d.history} rows were not "
                      f"forecast: {skipped[:5]}{' ...' if len(skipped) > 5 else ''}", stacklevel=2)
    if not kept:
        raise DataError(f"no episode has the {d.history} rows of history the model needs; the longest has "
                        f"{max(episodes.lengths)} rows")
    drawn = sample_futures(loaded, np.stack(contexts).astype(np.float32), samples=draws or samples, nfe=nfe,
                           solver=solver, seed=seed, costs=costs, frames=frames, meta=[episodes.meta[i] for i in kept],
                           antithetic=antithetic)
    keep = getattr(loaded.encoder, "forecast_columns", None)  # an encoder may forecast only some columns
    names = [episodes.columns[c] for c in keep] if keep else list(episodes.columns)
    rows = []
    by_entity: dict[str, np.ndarray] = {}
    truths: dict[str, np.ndarray] = {}  # a domain may put the known future in meta "future" (rows after the data)
    histories: dict[str, np.ndarray] = {}
    decoded = np.stack([loaded.encoder.decode(drawn[:, j], frames[j])[:, d.history:] for j in range(len(kept))],
                       axis=1)  # [S, N, H, F]
    decoded = _calibrated(loaded, decoded, frames, calibrated)
    decoded = decoded[..., keep] if keep else decoded
    if draws is not None and draws > samples:
        decoded = keep_representatives(loaded.domain, decoded, names, samples, seed=seed)
    for j, i in enumerate(kept):
        raw = decoded[:, j]  # [S, H, F]
        meta = episodes.meta[i] if episodes.meta else {}
        entity = str(meta.get("entity", episodes.ids[i]))
        times = meta.get("times")
        future = (loaded.domain.future_times(times, d.horizon) if times is not None
                  else np.arange(len(episodes.sequences[i]), len(episodes.sequences[i]) + d.horizon))
        by_entity[entity] = raw
        histories[entity] = episodes.sequences[i][-max(d.history, 1):]
        if meta.get("future") is not None:
            known = np.asarray(meta["future"])[:d.horizon]
            truths[entity] = known[..., keep] if keep else known
        for s in range(raw.shape[0]):
            frame = pd.DataFrame(raw[s], columns=names)
            frame.insert(0, "step", np.arange(1, d.horizon + 1))
            frame.insert(0, "time", future)
            frame.insert(0, "entity", entity)
            frame.insert(0, "sample", s)
            rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    if out is not None:
        write_forecast(loaded.domain, table, out, histories, by_entity, episodes.columns)
    if plot is not None:
        if loaded.domain.plot_forecasts(Path(plot), histories, by_entity, names, truths=truths or None) is None:
            full = {entity: known for entity, known in truths.items() if len(known) == d.horizon}
            plot_forecasts(histories, by_entity, names, plot, truths=full or None)
    return ForecastResult(table, by_entity, histories, skipped, time.monotonic() - started)


TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def write_forecast(
    domain: Domain, table: pd.DataFrame, path: str | Path, histories: dict[str, np.ndarray],
    futures: dict[str, np.ndarray], columns: list[str],
) -> Path:
    """Writes forecasts as a table (.csv, .parquet) or in a format the domain writes (its ``write_forecast``)."""
    path = Path(path)
    if "".join(path.suffixes[-2:]).lower().endswith(TABLE_SUFFIXES):
        return write_table(table, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = domain.write_forecast(path, histories, futures, columns)
    if written is None:
        raise ConfigError(f"cannot write {path}: use a .csv, .csv.gz or .parquet file name (domain {domain.name!r} "
                          f"writes no {path.suffix or 'extension-less'} files)")
    return written


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Writes a table as CSV or Parquet, by extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".parquet", ".pq")):
        table.to_parquet(path, index=False)
    elif suffix.endswith((".csv", ".csv.gz")):
        table.to_csv(path, index=False)
    else:
        raise ConfigError(f"cannot write {path}: use a .csv, .csv.gz or .parquet file name")
    return path


def plot_forecasts(
    histories: dict[str, np.ndarray],
    futures: dict[str, np.ndarray],
    columns: list[str],
    path: str | Path,
    truths: dict[str, np.ndarray] | None = None,
    max_entities: int = 4,
    max_columns: int = 4,
) -> Path:
    """History, sampled futures (fan of samples and their median) and, if known, the true future."""
    plt = pyplot()

    entities = list(futures)[:max_entities]
    cols = list(range(min(len(columns), max_columns)))
    figure, axes = plt.subplots(len(cols), len(entities), figsize=(4 * len(entities), 2.2 * len(cols)),
                                squeeze=False)
    for e, entity in enumerate(entities):
        hist, fut = histories[entity], futures[entity]
        h = np.arange(-len(hist) + 1, 1)
        f = np.arange(1, fut.shape[1] + 1)
        for c in cols:
            ax = axes[c, e]
            ax.plot(h, hist[:, c], color="black", lw=1.2, label="history")
            lo, hi = np.quantile(fut[..., c], [0.05, 0.95], axis=0)
            ax.fill_between(f, lo, hi, color="tab:blue", alpha=0.2, label="90% interval")
            for s in range(min(5, fut.shape[0])):
                ax.plot(f, fut[s, :, c], color="tab:blue", alpha=0.35, lw=0.7)
            ax.plot(f, np.median(fut[..., c], axis=0), color="tab:blue", lw=1.4, label="median")
            if truths is not None and entity in truths:
                ax.plot(f, truths[entity][:, c], color="black", ls="--", lw=1.0, label="truth")
            if e == 0:
                ax.set_ylabel(columns[c])
            if c == 0:
                ax.set_title(str(entity))
    axes[0, 0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return save_figure(figure, path)


@dataclass
class Backtest:
    """Forecasts of held-out windows beside what happened: the raw material of `evaluate` and `calibrate`."""

    futures: np.ndarray  # [S, N, H, F] samples in user units
    truth: np.ndarray  # [N, H, F]
    frames: list[dict[str, Any]]
    columns: list[str]
    too_short: list[str]


def backtest(loaded: LoadedModel, episodes: Episodes, *, samples: int, nfe: int | None = None,
             solver: str | None = None, stride: int | None = None, max_windows: int | None = None, seed: int = 0,
             antithetic: bool = False) -> Backtest:
    """Every window of history + horizon rows (step ``stride``, default the horizon; at most ``max_windows``,
    evenly spread) forecast from its history alone: raw samples, before any calibration."""
    d = loaded.defaults
    frames: list[dict[str, Any]] = []
    contexts, index, too_short = encode_windows(episodes, loaded.encoder, d.history, d.length, stride or d.horizon,
                                                frames=frames)
    if max_windows is not None and len(index) > max_windows:
        keep = np.linspace(0, len(index) - 1, max_windows).round().astype(int)
        contexts, index, frames = contexts[keep], [index[i] for i in keep], [frames[i] for i in keep]
    truth = np.stack([episodes.sequences[i][s + d.history:s + d.length] for i, s in index])
    masked = contexts.copy()
    masked[:, _tokens(loaded.encoder, d):] = 0.0  # the true future must not leak into the context
    drawn = sample_futures(loaded, masked, samples=samples, nfe=nfe, solver=solver, seed=seed, antithetic=antithetic)
    futures = np.stack([loaded.encoder.decode(drawn[:, j], frames[j])[:, d.history:] for j in range(len(index))],
                       axis=1)
    return Backtest(futures, truth, frames, list(episodes.columns), too_short)


def _write_json(result: dict[str, Any], out: str | Path | None) -> None:
    if out is not None:
        import json

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))


def evaluate(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    stride: int | None = None,
    max_windows: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    draws: int | None = None,
    antithetic: bool = False,
    calibrated: bool = True,
) -> dict[str, Any]:
    """Backtests the model on ``data``: every window of history + horizon rows (step ``stride``, default
    the horizon) is forecast from its history and scored with the domain's metrics against its true
    future. Returns (and writes as JSON to ``out``) the metrics with counts and timing. ``draws`` as in
    `forecast`: ``samples`` representatives of that many draws are scored; ``antithetic`` and
    ``calibrated`` as in `forecast`."""
    started = time.monotonic()
    loaded = load_model(model_dir, plugins=plugins)
    d = loaded.defaults
    samples = samples or d.samples
    _check_draws(draws, samples)
    episodes = loaded.domain.load(data, **(load_options or {}))
    run = backtest(loaded, episodes, samples=draws or samples, nfe=nfe, solver=solver, stride=stride,
                   max_windows=max_windows, seed=seed, antithetic=antithetic)
    decoded = _calibrated(loaded, run.futures, run.frames, calibrated)
    if draws is not None and draws > samples:
        decoded = keep_representatives(loaded.domain, decoded, run.columns, samples, seed=seed)
    scores = {name: float(metric(decoded, run.truth)) for name, metric in loaded.domain.metrics().items()}
    applied = loaded.calibration if calibrated else None
    result = {
        "model": str(model_dir),
        "domain": loaded.domain.name,
        "data": str(data) if not isinstance(data, pd.DataFrame) else "DataFrame",
        "windows": len(run.truth),
        "skipped_episodes": run.too_short,
        "samples": samples,
        "draws": draws or samples,
        "antithetic": antithetic,
        "nfe": nfe or d.nfe,
        "calibration": asdict(applied) if applied is not None else None,
        "metrics": scores,
        "seconds": time.monotonic() - started,
    }
    _write_json(result, out)
    return result


def calibrate(
    model_dir: str | Path,
    data: Any,
    *,
    samples: int | None = None,
    nfe: int | None = None,
    solver: str | None = None,
    stride: int | None = None,
    max_windows: int | None = None,
    seed: int = 0,
    level: float = 0.9,
    spread: bool = True,
    antithetic: bool = False,
    load_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """Fits a `Calibration` on held-out ``data`` (a validation period the model was not trained on) and
    stores it in the model directory, where `forecast` and `evaluate` apply it from then on.

    The weight on the model's median (against the encoder's base forecast, if it has one) is chosen
    by MSE, then (with ``spread``) the factor on the spread that makes the central ``level`` interval
    cover that share of ``data``. Returns the calibration with MSE and coverage before and after."""
    started = time.monotonic()
    loaded = load_model(model_dir, plugins=plugins)
    samples = samples or loaded.defaults.samples
    episodes = loaded.domain.load(data, **(load_options or {}))
    run = backtest(loaded, episodes, samples=samples, nfe=nfe, solver=solver, stride=stride, max_windows=max_windows,
                   seed=seed, antithetic=antithetic)
    if len(run.truth) < 10:
        raise DataError(f"calibration needs at least 10 held-out windows; {data} gives {len(run.truth)} of "
                        f"{loaded.defaults.length} rows (lower --stride, or give a longer validation period)")
    keep = getattr(loaded.encoder, "forecast_columns", None)
    futures, truth = (run.futures[..., keep], run.truth[..., keep]) if keep else (run.futures, run.truth)
    bases = _bases(loaded.encoder, run.frames)
    bases = bases[..., keep] if keep and bases is not None else bases
    std = truth.reshape(-1, truth.shape[-1]).std(axis=0)  # per column, so that units do not weigh in
    std = np.where(std > 0, std, 1.0)
    scaled_base = None if bases is None else bases / std
    fitted = fit_calibration(futures / std, truth / std, scaled_base, level=level, spread=spread,
                             data=str(data) if not isinstance(data, pd.DataFrame) else "DataFrame")
    fitted.save(model_dir)
    after = fitted.apply(futures / std, scaled_base)

    def mse(x: np.ndarray) -> float:
        return float(np.mean((np.median(x, axis=0) - truth / std) ** 2))

    return {**asdict(fitted), "model": str(model_dir), "samples": samples,
            "mse_before": mse(futures / std), "mse_after": mse(after),
            "coverage_before": coverage(futures, truth, level), "coverage_after": coverage(after, truth / std, level),
            "seconds": time.monotonic() - started}
