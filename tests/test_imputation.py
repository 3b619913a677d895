"""Imputation and anomaly scores by inpainting, with a small model trained on periodic series."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from trajdiff import api
from trajdiff.api.imputation import anomaly_scores, impute
from trajdiff.errors import DataError


def _series(n: int, sid: str, phase: float, rng: np.random.Generator) -> pd.DataFrame:
    t = np.arange(n)
    return pd.DataFrame({
        "time": pd.date_range("2020-01-01", periods=n, freq="1h"), "series": sid,
        "a": np.sin(2 * np.pi * t / 24 + phase) + 0.05 * rng.standard_normal(n),
        "b": np.cos(2 * np.pi * t / 24 + phase) + 0.05 * rng.standard_normal(n),
    })


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("impute")
    data = folder / "train.csv"
    pd.concat([_series(600, f"s{i}", rng.uniform(0, 2 * np.pi), rng) for i in range(6)]).to_csv(data, index=False)
    api.train("timeseries", data, folder / "model", steps=300, history=32, horizon=32, progress=False)
    test = _series(256, "t0", 1.0, rng)
    return folder / "model", test, folder


def test_imputation_fills_gaps_better_than_interpolation_and_keeps_observations(model) -> None:
    model_dir, test, folder = model
    holes = test.copy()
    holes.loc[40:51, "a"] = np.nan  # half a period missing in one column while the other is observed
    holes.loc[150:161, "b"] = np.nan
    path = folder / "holes.csv"
    holes.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader announces the 24 filled cells
        result = impute(model_dir, path, samples=8, out=folder / "imputed.csv")
    assert result.filled == 24
    missing = holes[["a", "b"]].isna().to_numpy()
    truth = test[["a", "b"]].to_numpy()
    out = result.table[["a", "b"]].to_numpy()
    assert np.array_equal(out[~missing], truth[~missing])  # observed cells come back unchanged
    assert np.array_equal(result.table[["a_imputed", "b_imputed"]].to_numpy(), missing)
    model_mse = np.mean((out - truth)[missing] ** 2)
    interpolation_mse = np.mean((holes[["a", "b"]].interpolate().to_numpy() - truth)[missing] ** 2)
    assert model_mse < 0.25 * interpolation_mse, (model_mse, interpolation_mse)
    assert len(pd.read_csv(folder / "imputed.csv")) == len(test)


def test_anomaly_scores_single_out_injected_spikes(model) -> None:
    model_dir, test, folder = model
    spiky = test.copy()
    spikes = [60, 130, 200]
    spiky.loc[spikes, "a"] += 2.5
    path = folder / "spiky.csv"
    spiky.to_csv(path, index=False)
    result = anomaly_scores(model_dir, path)
    scores = result.table["score"].to_numpy()
    assert len(scores) == len(test) and list(result.table.columns)[:3] == ["entity", "time", "score"]
    others = np.delete(scores, spikes)
    assert scores[spikes].min() > np.quantile(others, 0.98)
    assert np.all(result.table.loc[spikes, "a_score"] > result.table.loc[spikes, "b_score"])


def test_series_shorter_than_the_window_is_a_clear_error(model) -> None:
    model_dir, test, folder = model
    path = folder / "short.csv"
    test.iloc[:40].to_csv(path, index=False)
    with pytest.raises(DataError, match="64 rows of one model window; the longest has 40"):
        impute(model_dir, path)
