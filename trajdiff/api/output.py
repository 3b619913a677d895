"""Writing results: tables (CSV, Parquet), a domain's own formats, JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.errors import ConfigError
from trajdiff.plugins.spec import Domain

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def forecast_table(entities: list[str], times: list[np.ndarray], futures: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The tidy table of forecasts ``futures`` ``[S, N, H, F]``: one row per entity, sample and step (in that order),
    columns ``sample, entity, time, step`` and ``names``; ``times`` holds each entity's H future time stamps.
    Built column by column, so its cost does not grow with one small frame per entity and sample."""
    count, n, horizon, _ = futures.shape
    stamps = [np.asarray(t) for t in times]
    time = (np.concatenate([np.tile(t, count) for t in stamps]) if len({t.dtype for t in stamps}) <= 1
            else np.concatenate([np.tile(t.astype(object), count) for t in stamps]))
    values = np.ascontiguousarray(futures.transpose(1, 0, 2, 3)).reshape(n * count * horizon, -1)
    columns = {"sample": np.tile(np.repeat(np.arange(count), horizon), n),
               "entity": pd.array(np.asarray(entities, dtype=object), dtype="str").take(
                   np.repeat(np.arange(n), count * horizon)),
               "time": time, "step": np.tile(np.arange(1, horizon + 1), n * count)}
    return pd.DataFrame({**columns, **{name: values[:, c] for c, name in enumerate(names)}})


def write_forecast(
    domain: Domain, table: pd.DataFrame, path: str | Path, histories: dict[str, np.ndarray],
    futures: dict[str, np.ndarray], columns: list[str],
) -> Path:
    """Writes forecasts as a table (.csv, .parquet) or in a format the domain writes (its ``write_forecast``)."""
    path = Path(path)
    if "".join(path.suffixes[-2:]).lower().endswith(TABLE_SUFFIXES):
        return write_table(table, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = domain.write_forecast(path, histories, futures, columns)
    except OSError as error:
        raise _unwritable(path, error) from error
    if written is None:
        raise ConfigError(f"cannot write {path}: use a .csv, .csv.gz or .parquet file name (domain {domain.name!r} "
                          f"writes no {path.suffix or 'extension-less'} files)")
    return written


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Writes a table as CSV or Parquet, by extension."""
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]).lower()
    if not suffix.endswith(TABLE_SUFFIXES):
        raise ConfigError(f"cannot write {path}: use a .csv, .csv.gz or .parquet file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix.endswith((".parquet", ".pq")):
            table.to_parquet(path, index=False)
        else:
            table.to_csv(path, index=False)
    except OSError as error:
        raise _unwritable(path, error) from error
    return path


def write_json(result: dict[str, Any], out: str | Path | None) -> None:
    if out is not None:
        import json

        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(result, indent=2))
        except OSError as error:
            raise _unwritable(Path(out), error) from error


def _unwritable(path: Path, error: OSError) -> ConfigError:
    return ConfigError(f"cannot write {path}: {error.strerror or error}; choose another path")
