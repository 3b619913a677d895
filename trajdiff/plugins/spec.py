"""The plugin contract: pluggy hook specifications and what a domain must provide.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named after the hooks below, registered under
the entry-point group ``trajdiff.plugins``. Built-in domains use the same group, so an installed third-party plugin is
indistinguishable from a built-in one.

A `Domain` owns everything specific to a kind of data: reading raw logs into `Episodes`, an `Encoder` that maps raw
windows to normalized tensors in a local frame and back, costs and constraints for guided sampling, metrics, and a
default model configuration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pluggy
from torch import Tensor

from trajdiff.core.data import Episodes
from trajdiff.core.window_source import WindowSource
from trajdiff.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    import typer

PROJECT = "trajdiff"
ENTRY_POINT_GROUP = "trajdiff.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Cost = Callable[[Tensor], Tensor]
"""A differentiable cost of encoded sequences ``[B, T, D] -> [B]`` (lower is better), for `CostGradient`."""


class BatchCost(ABC):
    """A cost that depends on the windows of a batch (their frames and meta, e.g. which agents share a
    scene), so it is bound to each batch before sampling. `api.sample_futures` binds it per batch."""

    name: str = ""

    @abstractmethod
    def bind(self, frames: list[dict[str, Any]], meta: list[dict[str, Any]] | None, samples: int) -> Cost:
        """The cost for one batch: ``frames`` and ``meta`` of its windows, each repeated ``samples`` times."""


Projection = Callable[[Tensor], Tensor]
"""A projection of encoded sequences onto a feasible set, ``[B, T, D] -> [B, T, D]``, for `Project`."""

Metric = Callable[[np.ndarray, np.ndarray], float]
"""A forecast metric: ``samples [S, N, H, F]`` and ``truth [N, H, F]`` in user units -> a number."""


@dataclass
class ModelDefaults:
    """A domain's default model: window rows (``history`` observed + ``horizon`` forecast), the network, training and
    sampling settings, and options for ``Domain.make_encoder``."""

    history: int
    horizon: int
    network: dict[str, Any]
    schedule: str = "cosine"
    parametrization: str = "v"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    stride: int = 1
    solver: str = "dpmpp2m"
    nfe: int = 20
    samples: int = 20
    encoder: dict[str, Any] = field(default_factory=dict)
    noise: str = "independent"
    """Training noise levels per token: "independent" (Diffusion Forcing: any plan works), "shared" (one level per
    window, which suits full-sequence sampling such as planning) or "rolling" (the rolling window's staircase over the
    horizon tokens after a clean history: Rolling Diffusion / TEDi, for endless generation through the rolling plan)."""
    history_prob: float = 0.75
    """Share of training windows whose history tokens are held clean (as when forecasting); the rest are noised like the
    future, which also teaches unconditional generation."""
    label: str | None = None
    """Condition the model on this key of each episode's meta (e.g. motion's "category"): the condition is the one-hot
    vector of the episode's value among ``labels``. None: unconditional."""
    labels: list[str] = field(default_factory=list)
    """The values of ``label``, in one-hot order; empty: the values found in the training data, sorted (the trained
    model stores the list it used)."""
    cond_dropout: float = 0.1
    """Share of training windows whose condition is dropped, so that the same network is also the unconditional model
    that classifier-free guidance needs (conditioned models only)."""
    condition: str | None = None
    """Condition the model on a quantity the domain computes per window (`Domain.window_conditions`, e.g. rl's
    "return"), exclusive with ``label``; the trained model keeps the domain's record of it in ``condition_info``."""
    condition_info: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    """Further `trajdiff.core.training.TrainConfig` options (``warmup_steps``, ``weighting``, ``ema_decay`` ...) beyond
    those the fields above set."""

    @property
    def length(self) -> int:
        """Rows in one window: history + horizon."""
        return self.history + self.horizon


@dataclass
class TrainingSet:
    """What a training run feeds the network, for `Recipe.store`: the fitted encoder, the model's settings, the
    windows ``[N, T, D]`` (a `WindowSource`: ``windows[i]``, ``windows[i, :k]`` encode only those; ``np.asarray``
    encodes all) and each window's index in ``defaults.labels`` (None for an unconditional model)."""

    encoder: Encoder
    defaults: ModelDefaults
    windows: WindowSource
    labels: np.ndarray | None


@dataclass(frozen=True)
class Recipe:
    """A named training configuration of a domain, run by ``api.train(..., recipe=NAME)`` through the one generic
    training path.

    ``defaults`` overrides fields of the domain's `ModelDefaults` (``noise``, ``history``, ``horizon``, ``label``,
    ``network``, ``training`` ...; ``encoder`` options are merged into the domain's); arguments given to ``api.train``
    override the recipe in turn. ``store``, if given, maps the `TrainingSet` to JSON values that the model keeps in
    ``config.json`` (``extra["recipe"]["stored"]``), e.g. seed motions per label for synthesis without data."""

    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    store: Callable[[TrainingSet], dict[str, Any]] | None = None


@dataclass
class DatasetCard:
    """A named data set a plugin can load or generate.

    ``make`` (for generated data) writes the data set to a path and returns it; real data sets
    instead say where to obtain the file (``source``, ``obtain``) and how to check it (``sha256``)."""

    name: str
    domain: str
    summary: str
    source: str = ""
    licence: str = ""
    sha256: str | None = None
    columns: list[str] = field(default_factory=list)
    obtain: str = ""
    make: Callable[..., Path] | None = None


class Encoder(ABC):
    """Maps raw windows ``[T, F]`` (user units) to normalized tensors ``[T, D]`` and back.

    ``encode`` may move a window into a local frame (e.g. relative to the last observed position) and returns what
    ``decode`` needs to undo it. ``fit`` sees the training episodes only. An encoder may pack ``rows_per_token``
    consecutive rows into one token (patches); window lengths are then multiples of it."""

    rows_per_token: int = 1

    columns: list[str] | None = None
    """The raw columns the model was trained on, by name and in order (motion: ``<joint>_x/_y/_z`` of its
    skeleton); None: no names recorded. Data read for a model are mapped to them by name
    (`trajdiff.api.columns.align_columns`): another order is put in this one, a missing or unexpected column is
    an error. A fitted encoder sets it (an attribute or a property) from the training episodes' columns."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Features per encoded token (D)."""

    @abstractmethod
    def fit(self, episodes: Episodes) -> Encoder:
        """Learns normalization statistics from training episodes; returns self."""

    @abstractmethod
    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        """A raw window ``[T, F]`` whose first ``history`` rows are observed -> (``[T, D]``, frame)."""

    @abstractmethod
    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        """Encoded tokens ``[..., T, D]`` -> raw ``[..., T, F]`` in user units."""

    def decode_windows(self, x: np.ndarray, frames: list[dict[str, Any]], start: int = 0) -> np.ndarray:
        """`decode` of N windows, rows ``start`` on: tokens ``[S, N, T, D]``, window j's frame ``frames[j]`` -> raw
        ``[S, N, T - start, F]``. Forecasts decode their future rows here; encoders override it with one pass."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != len(frames):
            raise ShapeError(f"decode_windows expects tokens [S, N, T, D] for {len(frames)} frames, got {x.shape}")
        return np.stack([self.decode(x[:, j], frame)[:, start:] for j, frame in enumerate(frames)], axis=1)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """A JSON-serializable state; ``Domain.encoder_from_state`` rebuilds the encoder from it."""

    @property
    def forecast_columns(self) -> list[int] | None:
        """Indices of the raw columns the model forecasts and outputs show (None: all); others are inputs only."""
        return None

    def encode_history(self, history: np.ndarray, horizon: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Observed rows ``[history, F]`` -> the tokens ``[T, D]`` of a window whose ``horizon`` further rows are
        unknown, and its frame. The one convention for an unknown future, in forecasts and backtests alike: the
        window is encoded with its last observed row repeated, then the future tokens are zeroed, so that only the
        history reaches the frame or the tokens. An encoder whose frame would read the padded rows overrides this."""
        history = np.asarray(history)
        rows = len(history)
        window = np.concatenate([history, np.repeat(history[-1:], horizon, axis=0)]) if horizon else history
        tokens, frame = self.encode(window, rows)
        tokens = np.array(tokens, copy=True)
        tokens[rows // self.rows_per_token:] = 0.0
        return tokens, frame

    def encode_histories(self, histories: list[np.ndarray], horizon: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """`encode_history` of N histories -> (tokens ``[N, T, D]``, one frame each). Forecasts encode through it;
        an encoder overrides it with one pass over all histories (cheaper)."""
        encoded = [self.encode_history(history, horizon) for history in histories]
        return np.stack([tokens for tokens, _ in encoded]), [frame for _, frame in encoded]

    def encode_mask(self, mask: np.ndarray) -> np.ndarray:
        """A cell mask ``[rows, F]`` (true = observed) in token space ``[tokens, D]``, for imputation and
        anomaly scores. The default holds where each token packs ``rows_per_token`` rows of the F raw
        columns one to one; an encoder whose features are derived (velocities, angles) overrides it."""
        per = self.rows_per_token
        rows, features = mask.shape
        if self.dim != per * features or rows % per:
            raise ConfigError(f"{type(self).__name__} does not map cells to token features one to one, so it cannot "
                              "impute or score cells; its domain does not support imputation")
        return np.asarray(mask, dtype=bool).reshape(rows // per, per * features)

    def column_scale(self) -> np.ndarray | None:
        """Each raw column's spread in the training data (e.g. its standard deviation), so that errors of
        different columns can be compared; None when the encoder keeps none."""
        return None

    def base(self, frame: dict[str, Any]) -> np.ndarray | None:
        """The deterministic forecast of the future rows ``[H, F]`` (user units) that the model refines,
        or None when the encoder has none. `trajdiff.core.calibration` may pull samples towards it."""
        return None


@dataclass
class BaselineContext:
    """What a baseline may read besides the observed rows of its N windows. Every field is optional (empty
    when the caller has nothing to give), so a baseline can also be called on bare arrays.

    ``columns``: the column names of the rows; ``encoder``: the model's fitted encoder; ``frames``: each
    window's frame from ``encoder.encode`` (e.g. for `Encoder.base`); ``times``: the time stamps of each
    window's observed rows (from the episode's meta "times"); ``meta``: the meta of each window's episode."""

    columns: list[str] = field(default_factory=list)
    encoder: Encoder | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)


Baseline = Callable[[np.ndarray, int, BaselineContext], np.ndarray | None]
"""A domain's trivial point forecast, to compare models with: ``(history, horizon, context) -> forecast`` maps
the observed rows of N windows ``[N, history, F]`` and the number of rows to forecast to ``[N, horizon, F]``,
both in user units (rows as `Domain.load` reads them); columns it does not forecast may be NaN. It returns
None where it does not apply to these windows (no base forecast, a season longer than the history ...)."""


class Domain(ABC):
    """What a kind of data brings to trajdiff. Subclass it and return instances from `trajdiff_domains`."""

    name: str = ""
    summary: str = ""

    @abstractmethod
    def load(self, source: Any, **options: Any) -> Episodes:
        """Reads raw data (a path, a DataFrame, a dataset id ...) into Episodes in user units.

        Each episode's ``meta`` should hold ``"times"`` (an array, one per row) so that forecasts can
        be time-stamped, and may hold ``"entity"`` (the entity id shown in outputs). Arrays under ``"missing"``
        and ``"future"`` have the columns as their last axis (they are reordered with them)."""

    @abstractmethod
    def make_encoder(self, **options: Any) -> Encoder:
        """A fresh, unfitted encoder. Options are ``ModelDefaults.encoder`` plus ``history`` and
        ``horizon`` (rows), which an encoder may use or ignore."""

    @abstractmethod
    def encoder_from_state(self, state: dict[str, Any]) -> Encoder:
        """Rebuilds a fitted encoder from ``Encoder.state_dict()``."""

    @abstractmethod
    def defaults(self) -> ModelDefaults:
        """The default model configuration for this domain."""

    def costs(self) -> dict[str, Cost | BatchCost]:
        """Costs for guided sampling, by name (in addition to those other plugins add)."""
        return {}

    def constraints(self) -> dict[str, Projection]:
        """Hard constraints as projections, by name."""
        return {}

    def metrics(self) -> dict[str, Metric]:
        """Forecast metrics, by name; `evaluate` reports each."""
        return {}

    def baselines(self) -> dict[str, Baseline]:
        """Trivial point forecasts by name (constant velocity, last value ...). `evaluate` scores each with
        ``metrics`` on exactly the windows the model is scored on and prints them beside the model, so that a
        model worse than a trivial forecast does not go unnoticed. Default: none."""
        return {}

    def point_metrics(self) -> list[str]:
        """Names in ``metrics`` that are errors (lower is better) on which one forecast per window meets the
        model like for like: the error of the samples' point forecast (their mean or median), or an error
        averaged over samples; the main one first. `evaluate` reports model / baseline ratios on these and
        warns where the model is worse than a baseline. Default: none (ratios on every metric, no warnings)."""
        return []

    def write_forecast(
        self, path: Path, histories: dict[str, np.ndarray], futures: dict[str, np.ndarray], columns: list[str],
    ) -> Path | None:
        """Writes forecasts in a format of the domain's own, chosen by ``path``'s extension (a BVH file, an
        animation ...). ``histories`` maps entity -> ``[T, F]``, ``futures`` entity -> ``[S, H, F]``, both in
        user units. Return None for an extension the domain does not write (the caller then reports it)."""
        return None

    def plot_forecasts(
        self, path: Path, histories: dict[str, np.ndarray], futures: dict[str, np.ndarray], columns: list[str],
        truths: dict[str, np.ndarray] | None = None,
    ) -> Path | None:
        """Draws forecasts the domain's way (e.g. positions on a map); None falls back to the generic
        per-column plot."""
        return None

    def endpoints(self, futures: np.ndarray, columns: list[str]) -> np.ndarray:
        """Sampled futures ``[S, H, F]`` of one entity in user units -> the points ``[S, C]`` on which
        representative samples are chosen (k-means, ``forecast(draws=...)``): where each sample ends.
        Default: the final row, every column. Domains with positions return those, in a metric frame."""
        return np.asarray(futures)[:, -1]

    def augment_windows(self, windows: np.ndarray, encoder: Encoder) -> np.ndarray:
        """A batch of training windows ``[N, T, D]`` (encoded; called per batch) -> the windows to train on, e.g.
        with mirrored copies added where the domain is symmetric. The result is the given windows followed by whole
        copies of them in the same order (``[k N, T, D]``), so that each window's label follows. Default: as is."""
        return windows

    def window_conditions(self, name: str, episodes: Episodes, windows: np.ndarray) -> tuple[np.ndarray, dict]:
        """Per-window condition ``name`` (``ModelDefaults.condition``) of training windows ``[N, 2]`` (episode, first
        row) -> (values ``[N, C]``, a JSON record the model keeps, e.g. how they were normalized). Default: none."""
        raise ConfigError(f"domain {self.name!r} computes no per-window condition {name!r}")

    def recipes(self) -> dict[str, Recipe]:
        """Named training configurations besides the defaults (e.g. a motion model for endless synthesis),
        which ``api.train(..., recipe=NAME)`` and ``trajdiff train --recipe NAME`` run. Default: none."""
        return {}

    def with_encoder(self, encoder: Encoder) -> Domain:
        """This domain for one model: the instance whose costs, constraints, metrics and writers use that
        model's fitted ``encoder``. `api.load_model` calls it, so every loaded model has its own, while the
        registry's instance stays shared and holds none. Default: self (hooks that need no encoder)."""
        return self

    def future_times(self, times: np.ndarray, count: int) -> np.ndarray:
        """Time stamps of ``count`` steps after ``times`` (default: continue the last interval)."""
        times = np.asarray(times)
        if len(times) >= 2:
            step = times[-1] - times[-2]
        else:
            step = np.timedelta64(1, "s") if np.issubdtype(times.dtype, np.datetime64) else 1
        return times[-1] + step * np.arange(1, count + 1)

    def __repr__(self) -> str:
        return f"<Domain {self.name!r}>"


@dataclass(frozen=True)
class CommandContext:
    """What the command line lends the commands a plugin adds through `trajdiff_commands`, so that a plugin
    never imports the api or cli layers (plugins sit below both).

    ``load_model(model_dir, domain=None)`` loads a model directory with the domain it was trained for
    (`trajdiff.api.load_model` bound to the CLI's plugins; ``domain`` checks the model was trained for it).
    ``fail(error)`` reports a `TrajdiffError` the way every trajdiff command does (``error: ...`` on stderr,
    exit status 2) and does not return. ``parse_options(values, flag, example)`` reads repeatable KEY=VALUE
    options as every trajdiff command does (values as JSON where they parse), e.g. ``--plan-option``.
    ``plan_help`` and ``plan_option_help`` are the shared help texts of ``--plan`` and ``--plan-option``."""

    load_model: Callable[..., Any]
    fail: Callable[[Exception], NoReturn]
    parse_options: Callable[[list[str], str, str], dict[str, Any]] = lambda values, flag, example: {}  # noqa: E731
    plan_help: str = ""
    plan_option_help: str = ""


class TrajdiffSpec:
    """Hook specifications. Every hook is called once per plugin; results are collected per plugin,
    so one failing plugin is reported by name and the others still contribute."""

    @hookspec
    def trajdiff_domains(self) -> list[Domain]:
        """Return a list of the domains this plugin contributes (`Domain` instances, names unique within the
        plugin). A name another plugin also provides replaces neither: users pick one as ``package:name``."""

    @hookspec
    def trajdiff_costs(self, domain: Domain) -> dict[str, Cost]:
        """Return extra costs for ``domain`` (a plugin may add costs to any domain, its own or another's),
        keyed by cost name; return an empty dict or None for domains it does not extend. A cost name the domain
        or another plugin already has is kept from both and picked as ``package:cost``."""

    @hookspec
    def trajdiff_datasets(self) -> list[DatasetCard]:
        """Return a list of the named data sets (`DatasetCard`) this plugin can load or generate; a name
        another plugin also provides is picked as ``package:name``."""

    @hookspec
    def trajdiff_commands(self, app: typer.Typer, cli: CommandContext) -> None:
        """Add commands to the ``trajdiff`` command line, as datasette and llm let plugins do: decorate functions with
        ``@app.command()`` (or ``app.add_typer(...)`` a group). Called once per plugin when the CLI is built, so
        ``trajdiff --help`` lists them. ``cli`` lends the model loader and the error reporter (`CommandContext`); an
        implementation may take ``app`` alone. A command name that another command already has is refused and reported;
        a plugin whose hook raises adds none of its commands. Return value ignored."""
