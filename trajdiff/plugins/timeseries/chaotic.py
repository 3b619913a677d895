"""Trajectories of chaotic flows (Lorenz, Rossler, Chen, Halvorsen, Thomas, Aizawa), as time series.

Why: the project's own forecasting data, free of licence questions, with a known ground truth (the
vector field) and tunable length and count. Integrated with torchdiffeq (dopri5, float64).

Parameters, initial conditions and the attractor's period (which sets the sampling step) come
from a dysts ``chaotic_attractors.json`` when ``params_file`` is given, else from the defaults
below, which are the standard literature values (the same as dysts 0.96). dysts' own "dt" entry is
its integrator's step (e.g. 3e-4 for Lorenz, 1/5000 of a period): sampling at it would give nearly
constant windows, so the sampling step is ``period / pts_per_period`` (dysts' convention,
``make_trajectory(pts_per_period=100)``), unless ``dt`` is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from trajdiff.errors import ConfigError, DataError

__all__ = ["SYSTEMS", "ChaoticSystem", "chaotic_series", "vector_field", "write_chaotic_dataset"]

VectorField = Callable[[Tensor, dict[str, float]], Tensor]


def _lorenz(s: Tensor, p: dict[str, float]) -> Tensor:
    x, y, z = s.unbind(-1)
    return torch.stack([p["sigma"] * (y - x), x * (p["rho"] - z) - y, x * y - p["beta"] * z], -1)


def _rossler(s: Tensor, p: dict[str, float]) -> Tensor:
    x, y, z = s.unbind(-1)
    return torch.stack([-y - z, x + p["a"] * y, p["b"] + z * (x - p["c"])], -1)


def _chen(s: Tensor, p: dict[str, float]) -> Tensor:
    x, y, z = s.unbind(-1)
    a, b, c = p["a"], p["b"], p["c"]
    return torch.stack([a * (y - x), (c - a) * x - x * z + c * y, x * y - b * z], -1)


def _halvorsen(s: Tensor, p: dict[str, float]) -> Tensor:
    x, y, z = s.unbind(-1)
    a, b = p["a"], p["b"]
    return torch.stack(
        [-a * x - b * (y + z) - y**2, -a * y - b * (z + x) - z**2, -a * z - b * (x + y) - x**2], -1
    )


def _thomas(s: Tensor, p: dict[str, float]) -> Tensor:
    x, y, z = s.unbind(-1)
    a, b = p["a"], p["b"]
    return torch.stack([-a * x + b * torch.sin(y), -a * y + b * torch.sin(z), -a * z + b * torch.sin(x)], -1)


def _aizawa(s: Tensor, p: dict[str, float]) -> Tensor:
    x, y, z = s.unbind(-1)
    a, b, c, d, e, f = (p[k] for k in "abcdef")
    r2 = x**2 + y**2
    return torch.stack(
        [(z - b) * x - d * y, d * x + (z - b) * y, c + a * z - z**3 / 3 - r2 * (1 + e * z) + f * z * x**3], -1
    )


@dataclass(frozen=True)
class ChaoticSystem:
    """One flow: its vector field and default parameters, start point, period and spread."""

    name: str  # the key in dysts' chaotic_attractors.json
    field: VectorField
    params: dict[str, float]
    initial: tuple[float, float, float]  # a point on (near) the attractor
    period: float  # dominant period, sets the default sampling step
    spread: float  # typical attractor std; start points are perturbed by 0.1 * spread
    citation: str


SYSTEMS: dict[str, ChaoticSystem] = {
    "lorenz": ChaoticSystem(
        "Lorenz", _lorenz, {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}, (-9.7869288, -15.03852, 20.533978),
        1.5008, 8.5, "Lorenz (1963), Deterministic nonperiodic flow, J. Atmos. Sci. 20: sigma=10, rho=28, beta=8/3",
    ),
    "rossler": ChaoticSystem(
        "Rossler", _rossler, {"a": 0.2, "b": 0.2, "c": 5.7}, (6.5134412, 0.4772013, 0.34164294), 5.9086, 4.3,
        "Rossler (1976), An equation for continuous chaos, Phys. Lett. A 57: a=0.2, b=0.2, c=5.7",
    ),
    "chen": ChaoticSystem(
        "Chen", _chen, {"a": 35.0, "b": 3.0, "c": 28.0}, (3.2689697, 5.2990458, 19.435349), 0.58689, 7.5,
        "Chen & Ueta (1999), Yet another chaotic attractor, Int. J. Bifurc. Chaos 9: a=35, b=3, c=28",
    ),
    "halvorsen": ChaoticSystem(
        "Halvorsen", _halvorsen, {"a": 1.4, "b": 4.0}, (-8.6807408, -2.4741399, 0.070775762), 1.4889, 4.4,
        "Sprott (2010), Elegant Chaos, World Scientific (Halvorsen's system): a=1.4, b=4",
    ),
    "thomas": ChaoticSystem(
        "Thomas", _thomas, {"a": 1.85, "b": 10.0}, (2.199442, 2.3634225, 3.220197), 4.969, 2.2,
        "Thomas (1999), Int. J. Bifurc. Chaos 9, in dysts' scaled form x' = -a x + b sin y: a=1.85, b=10",
    ),
    "aizawa": ChaoticSystem(
        "Aizawa", _aizawa, {"a": 0.95, "b": 0.7, "c": 0.6, "d": 3.5, "e": 0.25, "f": 0.1},
        (-0.78450179, -0.62887672, -0.17620268), 2.5837, 0.6,
        "Aizawa & Uezu (1982), Prog. Theor. Phys. 67; Langford (1984): a=0.95, b=0.7, c=0.6, d=3.5, e=0.25, f=0.1",
    ),
}

START = "2000-01-01"


def _system(system: str) -> ChaoticSystem:
    key = str(system).strip().lower() if isinstance(system, str) else None
    if key not in SYSTEMS:
        raise ConfigError(f"unknown chaotic system {system!r}; available: {', '.join(SYSTEMS)}")
    return SYSTEMS[key]


def _settings(sys: ChaoticSystem, params_file: Path | None) -> tuple[dict[str, float], list[float], float, str]:
    """(parameters, initial condition, period, where they came from) for ``sys``."""
    if params_file is None:
        return dict(sys.params), list(sys.initial), sys.period, "defaults"
    path = Path(params_file)
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: params_file not found; pass the path of dysts' chaotic_attractors.json") from e
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read params_file as JSON ({e})") from e
    entry = table.get(sys.name) if isinstance(table, dict) else None
    if not isinstance(entry, dict):
        raise DataError(f"{path}: no entry {sys.name!r}; the file must map system names to their settings, "
                        "as dysts' chaotic_attractors.json does")
    params = entry.get("parameters", sys.params)
    if not isinstance(params, dict) or set(params) != set(sys.params):
        raise DataError(f"{path}: {sys.name}.parameters must have exactly the keys {sorted(sys.params)}, "
                        f"got {params!r}")
    initial = entry.get("initial_conditions", list(sys.initial))
    period = entry.get("period", sys.period)
    try:
        params = {k: float(v) for k, v in params.items()}
        initial = [float(v) for v in initial]
        period = float(period)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: {sys.name} has a non-numeric parameter, initial condition or period ({e})") from e
    if len(initial) != 3 or not all(map(math.isfinite, [*params.values(), *initial, period])) or period <= 0:
        raise DataError(f"{path}: {sys.name} needs 3 finite initial conditions and a positive period")
    return params, initial, period, str(path)


def vector_field(system: str, state: np.ndarray | Tensor, params: dict[str, float] | None = None) -> np.ndarray:
    """The system's time derivative at ``state`` [..., 3] (default parameters unless given)."""
    sys = _system(system)
    s = torch.tensor(np.array(state, dtype=np.float64))
    return sys.field(s, dict(params or sys.params)).numpy()


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def chaotic_series(
    system: str,
    length: int,
    *,
    count: int = 1,
    dt: float | None = None,
    pts_per_period: int = 100,
    seed: int = 0,
    burn_in: int = 500,
    params_file: Path | None = None,
    start: str = START,
    freq: str = "1s",
    rtol: float = 1e-8,
    atol: float = 1e-8,
) -> pd.DataFrame:
    """``count`` trajectories of ``length`` samples as a long DataFrame: time, series, x, y, z.

    Start points are the system's initial condition perturbed by seeded noise (0.1 x the
    attractor's spread); the first ``burn_in`` samples are integrated and discarded so the
    trajectories settle on the attractor and drift apart. Samples are ``dt`` model-time units
    apart (default: period / pts_per_period); the time column counts samples from ``start`` in
    steps of ``freq`` so the file loads back with `load_series`. ``df.attrs`` records the system,
    parameters, dt and where the settings came from.
    """
    sys = _system(system)
    length = _positive_int(length, "length")
    count = _positive_int(count, "count")
    burn_in = _positive_int(burn_in, "burn_in", 0)
    pts_per_period = _positive_int(pts_per_period, "pts_per_period")
    params, initial, period, origin = _settings(sys, params_file)
    step = period / pts_per_period if dt is None else dt
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not (math.isfinite(step) and step > 0):
        raise ConfigError(f"dt must be a positive number, got {dt!r}")
    gen = torch.Generator().manual_seed(int(seed))
    y0 = torch.tensor(initial, dtype=torch.float64) + 0.1 * sys.spread * torch.randn(
        count, 3, generator=gen, dtype=torch.float64
    )
    t = torch.arange(burn_in + length, dtype=torch.float64) * float(step)
    from torchdiffeq import odeint  # here, not at import: it pulls in scipy.integrate (2 s on every CLI start)

    with torch.no_grad():
        path = odeint(lambda _t, s: sys.field(s, params), y0, t, method="dopri5", rtol=rtol, atol=atol)
    values = path[burn_in:].permute(1, 0, 2).reshape(count * length, 3).numpy()
    if not np.isfinite(values).all():
        raise DataError(f"{sys.name} diverged with these settings (seed={seed}, dt={step}); try another seed or the "
                        "default parameters")
    stamps = pd.date_range(start, periods=length, freq=freq)
    key = sys.name.lower()
    frame = pd.DataFrame(
        {
            "time": np.tile(stamps.to_numpy(), count),
            "series": np.repeat([f"{key}-{i}" for i in range(count)], length),
            "x": values[:, 0],
            "y": values[:, 1],
            "z": values[:, 2],
        }
    )
    frame.attrs.update(
        system=sys.name, params=params, dt=float(step), burn_in=burn_in, seed=int(seed), settings=origin,
        initial_conditions=y0.tolist(), citation=sys.citation,
    )
    return frame


def write_chaotic_dataset(
    path: str | Path, system: str = "lorenz", length: int = 2000, count: int = 16, **options: Any
) -> Path:
    """Writes :func:`chaotic_series` output to ``path`` (.csv, .csv.gz, .parquet or .pq); returns it."""
    out = Path(path)
    name = out.name.lower()
    if not name.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        raise ConfigError(f"{out}: write a .csv, .csv.gz, .parquet or .pq file")
    frame = chaotic_series(system, length, count=count, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith((".parquet", ".pq")):
        try:
            frame.to_parquet(out, index=False)
        except ImportError as e:
            raise ConfigError("writing Parquet needs pyarrow; install it with `pip install pyarrow`") from e
    else:
        frame.to_csv(out, index=False)
    return out
