"""The timeseries domain: loading (every bad-input case), encoder, chaotic generator, metrics, plugin hooks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trajdiff.errors import ConfigError, DataError, ShapeError, TrajdiffError
from trajdiff.plugins import timeseries as plugin
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.spec import DatasetCard, ModelDefaults
from trajdiff.plugins.timeseries.chaotic import SYSTEMS, chaotic_series, vector_field, write_chaotic_dataset
from trajdiff.plugins.timeseries.domain import ETTH1_SHA256, TimeSeriesDomain, smoothness
from trajdiff.plugins.timeseries.encoder import SeriesEncoder
from trajdiff.plugins.timeseries.loader import load_series
from trajdiff.plugins.timeseries.metrics import coverage_50, coverage_90, crps, mae_median, mse_median

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ETTH1 = SHARED_DATA / "ett" / "ETTh1.csv"
DYSTS = SHARED_DATA / "dysts" / "chaotic_attractors.json"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent")


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HOURLY = "date,a,b\n2020-01-01 00:00,1,10\n2020-01-01 01:00,2,20\n2020-01-01 02:00,3,30\n2020-01-01 03:00,4,40\n"


# ------------------------------------------------------------------------------------- happy path


def test_loads_a_regular_csv_with_meta(tmp_path: Path) -> None:
    path = _csv(tmp_path, HOURLY, "sensor.csv")
    ep = load_series(path)
    assert ep.columns == ["a", "b"] and ep.ids == ["sensor"] and ep.lengths == [4]
    np.testing.assert_array_equal(ep.sequences[0], [[1, 10], [2, 20], [3, 30], [4, 40]])
    meta = ep.meta[0]
    assert meta["entity"] == "sensor" and meta["source"] == str(path)
    assert meta["times"].dtype == np.dtype("datetime64[ns]") and len(meta["times"]) == 4
    assert meta["times"][1] - meta["times"][0] == np.timedelta64(1, "h")
    report = meta["report"]
    assert report["duplicates_removed"] == 0 and report["rows_sorted"] == 0 and report["rows"] == 4
    assert report["cells_filled"] == {"a": 0, "b": 0} and report["resampled"] is False


def test_columns_option_and_text_columns_are_ignored_and_reported(tmp_path: Path) -> None:
    path = _csv(tmp_path, "Timestamp,name,a,b\n2020-01-01,x,1,2\n2020-01-02,y,3,4\n")
    with pytest.warns(UserWarning, match=r"non-numeric column\(s\) ignored: \['name'\]"):
        ep = load_series(path)
    assert ep.columns == ["a", "b"] and ep.meta[0]["report"]["columns_ignored"] == ["name"]
    assert load_series(path, columns=["b"]).columns == ["b"]


# ---------------------------------------------------------------------------------- bad input


def test_missing_time_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "when,a\n2020-01-01,1\n", "notime.csv")
    with pytest.raises(DataError) as err:
        load_series(path)
    msg = str(err.value)
    assert "notime.csv" in msg and "date/time/timestamp/datetime" in msg and "['when', 'a']" in msg
    assert "time_column='NAME'" in msg
    with pytest.raises(DataError, match=r"time column 'stamp' not found; the columns are \['when', 'a'\]"):
        load_series(path, time_column="stamp")
    assert load_series(path, time_column="when").lengths == [1]


def test_unparsable_timestamp_names_line_and_value(tmp_path: Path) -> None:
    text = "date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,2\nnot-a-date,9\n2020-01-01 02:00,3\n"
    path = _csv(tmp_path, text, "stamps.csv")
    with pytest.raises(DataError) as err:
        load_series(path)
    msg = str(err.value)
    assert "stamps.csv" in msg and "column 'date'" in msg and "1 timestamp(s)" in msg
    assert "'not-a-date' at line 4" in msg and "bad_times='skip'" in msg
    with pytest.warns(UserWarning, match=r"1 row\(s\) with unparsable timestamps skipped"):
        ep = load_series(path, bad_times="skip")
    np.testing.assert_array_equal(ep.sequences[0][:, 0], [1, 2, 3])
    assert ep.meta[0]["report"]["bad_times_skipped"] == 1 and ep.meta[0]["report"]["rows_read"] == 4


def test_empty_timestamp_counts_as_unparsable(tmp_path: Path) -> None:
    path = _csv(tmp_path, "date,a\n2020-01-01,1\n,2\n")
    with pytest.raises(DataError, match="an empty cell at line 3"):
        load_series(path)


def test_numeric_time_column_is_explained(tmp_path: Path) -> None:
    path = _csv(tmp_path, "time,a\n0,1\n1,2\n")
    with pytest.raises(DataError, match=r"holds numbers, not timestamps.*unit='s'"):
        load_series(path)


def test_non_numeric_values_name_column_first_line_and_count(tmp_path: Path) -> None:
    text = "date,a,b\n2020-01-01,1,2\n2020-01-02,2,abc\n2020-01-03,3,4\n2020-01-04,4,oops\n"
    path = _csv(tmp_path, text, "values.csv")
    with pytest.raises(DataError) as err:
        load_series(path)
    msg = str(err.value)
    assert "values.csv" in msg and "column 'b'" in msg and "2 value(s)" in msg and "'abc' at line 3" in msg
    assert "columns=[...]" in msg


def test_infinite_values_are_rejected(tmp_path: Path) -> None:
    path = _csv(tmp_path, "date,a\n2020-01-01,1\n2020-01-02,inf\n")
    with pytest.raises(DataError, match="'inf' at line 3"):
        load_series(path)


def test_duplicated_timestamps_keep_the_last_and_are_counted(tmp_path: Path) -> None:
    text = ("date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n2020-01-01 01:00,5\n2020-01-01 02:00,3\n"
            "2020-01-01 02:00,6\n2020-01-01 03:00,4\n")
    with pytest.warns(UserWarning, match=r"2 row\(s\) with a duplicated timestamp removed \(kept the last\)"):
        ep = load_series(_csv(tmp_path, text))
    np.testing.assert_array_equal(ep.sequences[0][:, 0], [1, 5, 6, 4])
    assert ep.meta[0]["report"]["duplicates_removed"] == 2


def test_unsorted_rows_are_sorted_and_counted(tmp_path: Path) -> None:
    text = "date,a\n2020-01-01 02:00,3\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n2020-01-01 03:00,4\n"
    with pytest.warns(UserWarning, match=r"3 row\(s\) moved to sort by time"):
        ep = load_series(_csv(tmp_path, text))
    np.testing.assert_array_equal(ep.sequences[0][:, 0], [1, 2, 3, 4])
    assert ep.meta[0]["report"]["rows_sorted"] == 3
    assert (np.diff(ep.meta[0]["times"]) == np.timedelta64(1, "h")).all()


def test_nan_gaps_filled_and_counted_per_column(tmp_path: Path) -> None:
    text = ("date,a,b\n2020-01-01 00:00,,5\n2020-01-01 01:00,2,\n2020-01-01 02:00,,\n2020-01-01 03:00,8,1\n"
            "2020-01-01 04:00,10,2\n")
    path = _csv(tmp_path, text)
    with pytest.warns(UserWarning, match=r"4 empty cell\(s\) filled by interpolate \(a: 2, b: 2\)"):
        ep = load_series(path)
    # a: leading gap takes the first value, inner gap is linear in time; b: linear between 5 and 1
    np.testing.assert_allclose(ep.sequences[0][:, 0], [2, 2, 5, 8, 10])
    np.testing.assert_allclose(ep.sequences[0][:, 1], [5, 11 / 3, 7 / 3, 1, 2])
    assert ep.meta[0]["report"]["cells_filled"] == {"a": 2, "b": 2}
    with pytest.warns(UserWarning, match="filled by ffill"):
        ffilled = load_series(path, fill="ffill")
    np.testing.assert_allclose(ffilled.sequences[0], [[2, 5], [2, 5], [2, 5], [8, 1], [10, 2]])


def test_fill_none_raises_naming_column_and_first_line(tmp_path: Path) -> None:
    text = "date,a,b\n2020-01-01 00:00,1,5\n2020-01-01 01:00,2,\n2020-01-01 02:00,,7\n"
    path = _csv(tmp_path, text, "gaps.csv")
    with pytest.raises(DataError) as err:
        load_series(path, fill="none")
    msg = str(err.value)
    assert "gaps.csv" in msg and "2 empty cell(s)" in msg and "column 'b' at line 3" in msg
    assert "fill='interpolate'" in msg


def test_all_empty_column_cannot_be_filled(tmp_path: Path) -> None:
    path = _csv(tmp_path, "date,a,b\n2020-01-01,1,\n2020-01-02,2,\n")
    with pytest.raises(DataError, match="column 'b' of the series has no values at all"):
        load_series(path, columns=["a", "b"])


def test_series_shorter_than_min_length(tmp_path: Path) -> None:
    text = "date,id,a\n2020-01-01,long,1\n2020-01-02,long,2\n2020-01-03,long,3\n2020-01-01,short,4\n"
    path = _csv(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_series(path, id_column="id", min_length=2)
    msg = str(err.value)
    assert "series 'short' has 1 row(s)" in msg and "min_length=2" in msg
    assert load_series(path, id_column="id", min_length=1).lengths == [3, 1]


def test_irregular_series_needs_freq_and_suggests_the_median(tmp_path: Path) -> None:
    text = "date,a\n2020-01-01 00:00,0\n2020-01-01 01:00,1\n2020-01-01 02:00,2\n2020-01-01 04:00,4\n"
    path = _csv(tmp_path, text, "uneven.csv")
    with pytest.raises(DataError) as err:
        load_series(path)
    msg = str(err.value)
    assert "uneven.csv" in msg and "irregular timestamps" in msg and "at line 5" in msg and "freq='1h'" in msg


def test_resampling_a_linear_series_is_exact(tmp_path: Path) -> None:
    # x(t) = 2 + 3 t (t in hours) and y(t) = -t, sampled at uneven times; on the hourly grid it is exact
    hours = np.array([0.25, 0.9, 1.0, 2.6, 3.1, 5.75])
    stamps = pd.Timestamp("2021-03-01") + pd.to_timedelta(hours, unit="h")
    frame = pd.DataFrame({"time": stamps, "x": 2 + 3 * hours, "y": -hours})
    path = tmp_path / "uneven.parquet"
    frame.to_parquet(path, index=False)
    with pytest.warns(UserWarning, match="resampled to freq='1h'"):
        ep = load_series(path, freq="1h")
    grid_hours = np.arange(1, 6)  # 01:00 .. 05:00 (the grid starts at the first whole hour)
    np.testing.assert_allclose(ep.sequences[0][:, 0], 2 + 3 * grid_hours, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ep.sequences[0][:, 1], -grid_hours, rtol=0, atol=1e-9)
    expected = (pd.Timestamp("2021-03-01") + pd.to_timedelta(grid_hours, unit="h")).to_numpy()
    np.testing.assert_array_equal(ep.meta[0]["times"], expected)
    report = ep.meta[0]["report"]
    assert report["resampled"] is True and report["freq"] == "1h"
    assert report["rows_resampled"] == 4 and report["rows_off_grid"] == 5  # only 01:00 was observed


def test_bad_freq_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a pandas frequency"):
        load_series(_csv(tmp_path, HOURLY), freq="every hour")


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, HOURLY, "data.txt")
    with pytest.raises(DataError) as err:
        load_series(path)
    assert "data.txt" in str(err.value) and ".csv, .csv.gz, .parquet, .pq" in str(err.value)
    with pytest.raises(DataError, match="nothere.csv: file not found"):
        load_series(tmp_path / "nothere.csv")
    with pytest.raises(DataError, match="the file is empty"):
        load_series(_csv(tmp_path, "", "empty.csv"))


def test_blank_lines_keep_line_numbers_right(tmp_path: Path) -> None:
    text = "date,a\n2020-01-01,1\n\n2020-01-02,x\n"
    with pytest.raises(DataError, match="'x' at line 4"):
        load_series(_csv(tmp_path, text))
    with pytest.warns(UserWarning, match=r"1 empty line\(s\) skipped"):
        ep = load_series(_csv(tmp_path, "date,a\n2020-01-01,1\n\n2020-01-02,2\n"))
    assert ep.meta[0]["report"]["blank_lines_skipped"] == 1


def test_malformed_csv_rows_and_other_separators(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"rows.csv: cannot be read as CSV .*line 3, saw 3"):
        load_series(_csv(tmp_path, "date,a\n2020-01-01,1\n2020-01-02,2,5\n", "rows.csv"))
    ep = load_series(_csv(tmp_path, "date;a\n2020-01-01;1.5\n2020-01-02;2.5\n", "semi.csv"))
    np.testing.assert_array_equal(ep.sequences[0][:, 0], [1.5, 2.5])


def test_errors_are_trajdiff_errors(tmp_path: Path) -> None:
    with pytest.raises(TrajdiffError):
        load_series(tmp_path / "x.csv")
    with pytest.raises(ConfigError, match="fill must be one of"):
        load_series(_csv(tmp_path, HOURLY), fill="zero")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- formats and inputs


def test_parquet_and_gzip_csv_match_csv(tmp_path: Path) -> None:
    frame = pd.read_csv(_csv(tmp_path, HOURLY))
    frame.to_csv(tmp_path / "g.csv.gz", index=False)
    frame.assign(date=pd.to_datetime(frame["date"])).to_parquet(tmp_path / "p.pq", index=False)
    a = load_series(tmp_path / "data.csv")
    for name, stem in (("g.csv.gz", "g"), ("p.pq", "p")):
        b = load_series(tmp_path / name)
        np.testing.assert_array_equal(a.sequences[0], b.sequences[0])
        np.testing.assert_array_equal(a.meta[0]["times"], b.meta[0]["times"])
        assert b.ids == [stem]


def test_dataframe_input_with_datetime_index_and_row_numbers() -> None:
    idx = pd.date_range("2022-01-01", periods=5, freq="15min", name="timestamp")
    frame = pd.DataFrame({"load": [1.0, 2.0, 3.0, 4.0, 5.0], "temp": [0.5] * 5}, index=idx)
    ep = load_series(frame)
    assert ep.columns == ["load", "temp"] and ep.ids == ["series"] and ep.meta[0]["source"] == "DataFrame"
    np.testing.assert_array_equal(ep.meta[0]["times"], idx.to_numpy())
    bad = frame.reset_index().astype({"load": object})
    bad.loc[3, "load"] = "n.a."
    with pytest.raises(DataError, match="DataFrame: column 'load' has 1 value.*'n.a.' at row 4"):
        load_series(bad)


def test_several_series_by_id(tmp_path: Path) -> None:
    text = ("date,station,a\n2020-01-01 00:00,b,10\n2020-01-01 00:00,a,1\n2020-01-01 01:00,b,20\n"
            "2020-01-01 01:00,a,2\n2020-01-01 01:00,a,3\n2020-01-01 02:00,b,30\n")
    with pytest.warns(UserWarning):
        ep = load_series(_csv(tmp_path, text), id_column="station")
    assert ep.ids == ["b", "a"] and [m["entity"] for m in ep.meta] == ["b", "a"]
    assert ep.columns == ["a"] and ep.lengths == [3, 2]
    np.testing.assert_array_equal(ep.sequences[1][:, 0], [1, 3])
    assert [m["report"]["duplicates_removed"] for m in ep.meta] == [0, 1]
    with pytest.raises(DataError, match=r"id column 'site' not found"):
        load_series(_csv(tmp_path, text), id_column="site")
    auto = "date,Series,a\n2020-01-01,s1,1\n2020-01-01,s2,2\n"
    assert load_series(_csv(tmp_path, auto)).ids == ["s1", "s2"]
    with pytest.warns(UserWarning, match="duplicated timestamp"):
        single = load_series(_csv(tmp_path, auto), id_column=False)
    assert single.lengths == [1] and single.meta[0]["report"]["columns_ignored"] == ["Series"]


# ------------------------------------------------------------------------------------- encoder


def _episodes() -> object:
    idx = pd.date_range("2022-01-01", periods=50, freq="1h")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"time": idx, "u": 100 + 5 * rng.normal(size=50), "v": -3 + 0.1 * rng.normal(size=50)})
    return load_series(frame)


def test_encoder_standardizes_and_round_trips() -> None:
    ep = _episodes()
    enc = TimeSeriesDomain().make_encoder().fit(ep)
    assert enc.dim == 2 and enc.columns == ["u", "v"]
    window = ep.sequences[0][:20]
    z, frame = enc.encode(window, history=10)
    assert frame == {} and z.shape == (20, 2)
    full, _ = enc.encode(ep.sequences[0], history=0)
    np.testing.assert_allclose(full.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(full.std(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose(enc.decode(z, frame), window, rtol=1e-12)
    batch = np.stack([z, 2 * z])  # [S, T, F]
    np.testing.assert_allclose(enc.decode(batch, frame)[0], window, rtol=1e-12)
    with pytest.raises(ShapeError, match=r"expects a window \[T, 2\]"):
        enc.encode(window[:, :1], history=1)
    with pytest.raises(ConfigError, match="not fitted"):
        SeriesEncoder().encode(window, 1)


def test_encoder_state_survives_json() -> None:
    enc = SeriesEncoder().fit(_episodes())
    state = json.loads(json.dumps(enc.state_dict()))
    assert state["columns"] == ["u", "v"]
    again = TimeSeriesDomain().encoder_from_state(state)
    window = np.array([[100.0, -3.0], [105.0, -2.9]])
    np.testing.assert_array_equal(again.encode(window, 1)[0], enc.encode(window, 1)[0])
    with pytest.raises(ConfigError, match="not a SeriesEncoder state"):
        SeriesEncoder.from_state({"kind": "other"})


# ----------------------------------------------------------------------------------- generator


def test_generator_output_loads_back(tmp_path: Path) -> None:
    frame = chaotic_series("Rossler", 120, count=3, burn_in=50)
    assert list(frame.columns) == ["time", "series", "x", "y", "z"] and len(frame) == 360
    for name in ("ross.csv", "ross.parquet"):
        path = write_chaotic_dataset(tmp_path / name, system="rossler", length=120, count=3, burn_in=50)
        ep = load_series(path)  # the "series" column is found as the id column
        assert ep.ids == ["rossler-0", "rossler-1", "rossler-2"] and ep.lengths == [120] * 3
        assert ep.meta[0]["report"]["id_column"] == "series"
        assert ep.columns == ["x", "y", "z"]
        np.testing.assert_allclose(ep.sequences[2], frame[["x", "y", "z"]].to_numpy()[240:], rtol=1e-12)
    a, b = frame[frame.series == "rossler-0"], frame[frame.series == "rossler-1"]
    assert not np.allclose(a[["x", "y", "z"]].to_numpy(), b[["x", "y", "z"]].to_numpy())
    with pytest.raises(ConfigError, match="write a .csv"):
        write_chaotic_dataset(tmp_path / "x.json")


def test_lorenz_trajectory_satisfies_the_ode() -> None:
    dt = 0.002
    frame = chaotic_series("lorenz", 400, dt=dt, burn_in=100, seed=3)
    assert frame.attrs["dt"] == dt and frame.attrs["settings"] == "defaults"
    x = frame[["x", "y", "z"]].to_numpy()
    derivative = (x[2:] - x[:-2]) / (2 * dt)  # central difference, error O(dt^2)
    field = vector_field("lorenz", x[1:-1])
    assert np.abs(derivative - field).max() < 1e-3 * np.abs(field).max()


def test_unknown_system_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as err:
        chaotic_series("duffing", 10)
    for name in ("lorenz", "rossler", "chen", "halvorsen"):
        assert name in str(err.value)
    assert len(SYSTEMS) >= 4


@needs_shared
def test_settings_come_from_the_dysts_file() -> None:
    entry = json.loads(DYSTS.read_text())["Chen"]
    frame = chaotic_series("chen", 20, burn_in=5, params_file=DYSTS)
    assert frame.attrs["settings"] == str(DYSTS)
    assert frame.attrs["params"] == {k: float(v) for k, v in entry["parameters"].items()}
    assert frame.attrs["dt"] == pytest.approx(entry["period"] / 100)


# ------------------------------------------------------------------------------------ real data


@needs_shared
def test_real_etth1_loads_with_its_published_shape() -> None:
    assert hashlib.sha256(ETTH1.read_bytes()).hexdigest() == ETTH1_SHA256
    ep = TimeSeriesDomain().load(ETTH1)
    assert ep.lengths == [17420] and ep.dim == 7
    assert ep.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    times = ep.meta[0]["times"]
    assert str(times[0]) == "2016-07-01T00:00:00.000000000" and str(times[-1])[:10] == "2018-06-26"
    assert ep.meta[0]["report"]["cells_filled"] == dict.fromkeys(ep.columns, 0)


# --------------------------------------------------------------------------------------- metrics


def test_metrics_closed_forms() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(2, 3, 2))
    same = np.repeat(truth[None], 5, axis=0)
    assert mse_median(same, truth) == 0 and mae_median(same, truth) == 0 and crps(same, truth) == 0
    assert coverage_50(same, truth) == 1 and coverage_90(same, truth) == 1
    point = truth[None] + 0.5  # one sample: CRPS is the absolute error
    assert crps(point, truth) == pytest.approx(0.5) and mae_median(point, truth) == pytest.approx(0.5)
    assert mse_median(point, truth) == pytest.approx(0.25)
    # 101 samples 0..100: central 50% interval [25, 75], 90% interval [5, 95]
    samples = np.broadcast_to(np.arange(101.0)[:, None, None, None], (101, 5, 1, 1))
    t = np.array([10.0, 30.0, 50.0, 70.0, 99.0]).reshape(5, 1, 1)
    assert coverage_50(samples, t) == pytest.approx(3 / 5) and coverage_90(samples, t) == pytest.approx(4 / 5)
    assert mse_median(samples, t) == pytest.approx(np.mean((50 - t) ** 2))
    with pytest.raises(ShapeError, match=r"samples \[S, N, H, F\]"):
        crps(truth, truth)


# ----------------------------------------------------------------------------- domain and hooks


def test_domain_defaults_costs_and_metrics() -> None:
    domain = TimeSeriesDomain()
    d = domain.defaults()
    assert isinstance(d, ModelDefaults) and (d.history, d.horizon) == (96, 96)
    assert d.network == {"kind": "transformer", "dim": None, "width": 128, "depth": 4, "heads": 4}
    assert set(domain.metrics()) == {"mse_median", "mae_median", "crps", "coverage_50", "coverage_90"}
    assert domain.constraints() == {}
    cost = domain.costs()["smoothness"]
    line = torch.linspace(0, 1, 10).reshape(1, 10, 1).repeat(2, 1, 3)
    zigzag = torch.tensor([1.0, -1.0] * 5).reshape(1, 10, 1)
    assert torch.allclose(cost(line), torch.zeros(2), atol=1e-12)
    assert cost(zigzag).item() == pytest.approx(16.0)  # second difference of +-1 alternation is +-4
    x = zigzag.clone().requires_grad_(True)
    smoothness(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_plugin_hooks_register_cleanly(tmp_path: Path) -> None:
    plugins = Plugins(autoload=False, load_entry_points=False)
    assert plugins.register(plugin, "timeseries")
    assert isinstance(plugins.domain("timeseries"), TimeSeriesDomain) and plugins.failures == []
    cards = {c.name: c for c in plugin.trajdiff_datasets()}
    assert all(isinstance(c, DatasetCard) and c.domain == "timeseries" for c in cards.values())
    etth1 = cards["etth1"]
    assert etth1.sha256 == ETTH1_SHA256 and etth1.licence == "CC BY-ND 4.0" and etth1.make is None
    assert etth1.columns[0] == "date" and len(etth1.columns) == 8
    assert {"lorenz", "rossler", "chen", "halvorsen"} <= set(cards)
    path = cards["lorenz"].make(tmp_path / "lorenz.csv", length=30, count=2, burn_in=10)
    ep = TimeSeriesDomain().load(path)
    assert ep.lengths == [30, 30] and ep.columns == cards["lorenz"].columns[2:]
