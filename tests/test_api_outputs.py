"""Forecast outputs: tables by extension, domain-specific writers, and the error for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajdiff.api import write_forecast
from trajdiff.errors import ConfigError
from trajdiff.plugins.timeseries.domain import TimeSeriesDomain


class _Writes(TimeSeriesDomain):
    name = "writer"

    def write_forecast(self, path, histories, futures, columns):  # type: ignore[override]
        if path.suffix != ".npz":
            return None
        np.savez(path, **{entity: samples for entity, samples in futures.items()})
        return path


def _table() -> pd.DataFrame:
    return pd.DataFrame({"sample": [0, 0], "entity": ["a", "a"], "step": [1, 2], "x": [1.0, 2.0]})


def test_tables_are_written_by_extension(tmp_path: Path) -> None:
    for name in ("f.csv", "f.csv.gz", "f.parquet"):
        path = write_forecast(TimeSeriesDomain(), _table(), tmp_path / name, {}, {}, ["x"])
        back = pd.read_parquet(path) if name.endswith("parquet") else pd.read_csv(path)
        pd.testing.assert_frame_equal(back, _table())


def test_a_domain_writes_its_own_formats_and_others_are_refused(tmp_path: Path) -> None:
    futures = {"a": np.arange(6.0).reshape(1, 2, 3)}
    path = write_forecast(_Writes(), _table(), tmp_path / "out" / "f.npz", {}, futures, ["x"])
    np.testing.assert_array_equal(np.load(path)["a"], futures["a"])
    with pytest.raises(ConfigError, match=r"cannot write .*f\.bvh: use a \.csv.*domain 'timeseries' writes no \.bvh"):
        write_forecast(TimeSeriesDomain(), _table(), tmp_path / "f.bvh", {}, futures, ["x"])
