"""Reading large files in bounded memory (issue 15) gives what reading them whole gave: the time-series typed path
(pyarrow, a batch at a time) equals the text path on valid and randomly corrupted files, and Parquet streams the
episodes of the same CSV; the vessel readers give the same tracks whatever their chunk size; the vectorized jump
filter and the median step equal their one-report-at-a-time and all-steps-at-once definitions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.timeseries import loader as series_loader
from trajdiff.plugins.timeseries.typed_reading import PANDAS_MISSING, read_typed
from trajdiff.plugins.vessel import reading as vessel_reading
from trajdiff.plugins.vessel import traj as vessel_traj
from trajdiff.plugins.vessel.cleaning import _jumps
from trajdiff.plugins.vessel.encoder import _median_step
from trajdiff.plugins.vessel.geo import KNOT_M_S, haversine_m
from trajdiff.plugins.vessel.loader import load_ais

hypothesis = pytest.importorskip("hypothesis", reason="needs trajdiff[dev]")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CELLS = ["", "NA", "nan", "None", "inf", "abc", " 1.5", "+nan", "1e999", "2021-03-01", "7", "-0", '"3"']


def _outcome(load: Any, *args: Any, **options: Any) -> Any:
    """Episodes as plain data (bytes of every array), or the error's type and message; warnings included."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            episodes = load(*args, **options)
        except (DataError, ConfigError) as error:
            return type(error).__name__, str(error), [str(w.message) for w in caught]
    plain = [{k: (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v for k, v in m.items()}
             for m in episodes.meta]
    return ([(s.dtype.str, s.shape, s.tobytes()) for s in episodes.sequences], episodes.columns, episodes.ids, plain,
            [str(w.message) for w in caught])


def _text_only(monkeypatch: pytest.MonkeyPatch, *args: Any, **options: Any) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(series_loader, "read_typed", lambda *a, **k: None)
        return _outcome(series_loader.load_series, *args, **options)


def _series_lines(rows: int = 30, ids: bool = False) -> list[str]:
    stamps = pd.date_range("2021-03-01", periods=rows, freq="h")
    head = "series,time,a,b" if ids else "time,a,b"
    body = [(f"s{i % 3}," if ids else "") + f"{s.isoformat(sep=' ')},{np.sin(i / 3):.4f},{np.cos(i / 5):.4f}"
            for i, s in enumerate(stamps)]
    return [head, *body]


def test_the_missing_value_words_are_pandas_own() -> None:
    parsers = pytest.importorskip("pandas._libs.parsers")
    assert set(PANDAS_MISSING) == set(parsers.STR_NA_VALUES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(1, 30), st.integers(0, 3), st.sampled_from(CELLS)), max_size=4),
       ids=st.booleans(), shuffle=st.booleans(), options=st.sampled_from([{}, {"freq": "1h"}, {"columns": ["b"]},
                                                                          {"bad_times": "skip"}, {"fill": "none"}]))
def test_the_typed_path_reads_any_series_file_as_the_text_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                edits: list[tuple[int, int, str]], ids: bool,
                                                                shuffle: bool, options: dict[str, Any]) -> None:
    lines = _series_lines(ids=ids)
    for row, column, cell in edits:  # a cell replaced (or a field added) in a data row
        fields = lines[row].split(",")
        fields[min(column, len(fields) - 1)] = cell
        lines[row] = ",".join(fields)
    if shuffle:
        lines = [lines[0], *lines[1:][::-3], *lines[1:]]  # unsorted and repeated stamps
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    assert _outcome(series_loader.load_series, path, **options) == _text_only(monkeypatch, path, **options)


def test_parquet_streams_the_episodes_of_the_same_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _series_lines(rows=3000, ids=True)
    lines[7] = lines[7].rsplit(",", 1)[0] + ","  # an empty cell: a gap filled and reported
    csv_path, parquet_path = tmp_path / "s.csv", tmp_path / "s.parquet"
    csv_path.write_text("\n".join(lines) + "\n")
    frame = pd.read_csv(csv_path, parse_dates=["time"])
    frame.to_parquet(parquet_path, row_group_size=500)  # several row groups, read one batch at a time
    typed = read_typed(parquet_path)
    assert typed is not None and typed.names == ["s0", "s1", "s2"] and typed.values.shape == (3000, 2)
    assert read_typed(csv_path) is not None
    from_csv = _outcome(series_loader.load_series, csv_path)
    from_parquet = _outcome(series_loader.load_series, parquet_path)
    assert from_parquet[:3] == from_csv[:3]  # values, columns, series
    assert [m["report"] for m in from_parquet[3]] == [m["report"] for m in from_csv[3]]
    assert from_parquet == _text_only(monkeypatch, parquet_path)


def test_stamps_outside_the_nanosecond_range_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text("date,a\n1500-01-01 00:00:00,1\n1500-01-01 01:00:00,2\n1500-01-01 02:00:00,3\n")
    with pytest.raises(DataError, match="outside 1677-2262"):
        series_loader.load_series(path)  # read as 2084 before
    frame = _ais_frame()
    frame.loc[10, "BaseDateTime"] = "1500-01-01T00:00:00"
    with pytest.warns(UserWarning, match="3 malformed row"):
        episodes = load_ais(frame)
    assert episodes.meta[0]["report"]["file"]["malformed_rows"] == 3  # with the stamp and the MMSI made bad
    assert "row 11: column 'BaseDateTime' has an unparsable timestamp" in str(episodes.meta[0]["report"]["file"])


def _ais_frame(seed: int = 0) -> pd.DataFrame:
    """Three vessels interleaved, a GPS jump, a repeated report, an unparsable stamp and a bad MMSI."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, mmsi in enumerate(["367000001", "367000002", "367000003"]):
        t = pd.Timestamp("2020-12-01") + pd.to_timedelta(np.cumsum(rng.integers(5, 90, 400)), unit="s")
        lat = 40.6 + 0.01 * k + np.cumsum(rng.normal(0, 2e-5, 400))
        lon = -74.0 + np.cumsum(rng.normal(0, 2e-5, 400))
        rows += [[s.strftime("%Y-%m-%dT%H:%M:%S"), mmsi, f"{a:.6f}", f"{o:.6f}", "1.5", "90.0", "511"]
                 for s, a, o in zip(t, lat, lon, strict=True)]
    rows.sort(key=lambda r: r[0])
    rows[50][2] = "41.9"  # a jump
    rows.insert(80, list(rows[80]))  # a repeated report
    rows[100][0], rows[120][1] = "yesterday", "36700000x"
    return pd.DataFrame(rows, columns=["BaseDateTime", "MMSI", "LAT", "LON", "SOG", "COG", "Heading"])


def test_vessel_logs_read_in_chunks_give_the_tracks_of_one_read(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _ais_frame()
    csv_path, parquet_path, traj_path = tmp_path / "ais.csv", tmp_path / "ais.parquet", tmp_path / "ais.traj"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path)
    with open(traj_path, "w") as out:  # one trajectory per vessel, in tracktable's text format
        for k, (mmsi, part) in enumerate(frame.groupby("MMSI", sort=False)):
            points = ",".join(f"{m},{t.replace('T', ' ')},{lon},{lat}" for t, m, lat, lon in
                              part[["BaseDateTime", "MMSI", "LAT", "LON"]].itertuples(index=False))
            out.write(f"*T*,{mmsi}-{k},terrestrial,{len(part)},0,*P*,terrestrial,2,1,1,0,{points}\n")
    whole = {path: _outcome(load_ais, path) for path in (csv_path, parquet_path, traj_path)}
    assert whole[parquet_path][:2] == whole[csv_path][:2] and len(whole[traj_path][0]) == 3
    monkeypatch.setattr(vessel_reading, "CHUNK", 37)
    monkeypatch.setattr(vessel_traj, "CHUNK", 37)
    for path, expected in whole.items():
        assert _outcome(load_ais, path) == expected


def test_the_jump_filter_equals_its_report_by_report_definition() -> None:
    max_speed = 60 * KNOT_M_S

    def reference(seconds: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        def speed(i: int, j: int) -> float:
            return float(haversine_m(lat[i], lon[i], lat[j], lon[j])) / max(abs(seconds[j] - seconds[i]), 1.0)

        jumps = np.zeros(len(seconds), dtype=bool)
        if len(seconds) < 2:
            return jumps
        if len(seconds) >= 3 and speed(0, 1) > max_speed and speed(1, 2) <= max_speed:
            jumps[0] = True
        last = int(np.argmin(jumps))
        for i in range(last + 1, len(seconds)):
            if speed(last, i) > max_speed:
                jumps[i] = True
            else:
                last = i
        return jumps

    rng = np.random.default_rng(4)
    for n in (0, 1, 2, 3, 5, 40, 400):
        for _ in range(20):
            seconds = np.cumsum(rng.integers(0, 30, n)).astype(np.float64)
            lat = 40.6 + np.cumsum(rng.normal(0, 3e-4, n))
            lon = -74.0 + np.cumsum(rng.normal(0, 3e-4, n))
            odd = rng.random(n) < 0.08
            lat[odd] += rng.choice([-0.05, 0.05], int(odd.sum()))  # jumps, some right after each other
            times = (seconds * 1e9).astype(np.int64).astype("datetime64[ns]")
            assert np.array_equal(_jumps(times, lat, lon, max_speed), reference(seconds, lat, lon))


def test_the_median_step_is_the_median_of_every_step() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        metas = [{"times": np.cumsum(rng.choice([1, 2, 60, 61, 10**9], rng.integers(0, 9))).astype("datetime64[s]")}
                 for _ in range(rng.integers(0, 5))]
        steps = [np.diff(m["times"]).astype("timedelta64[ns]").astype(np.int64) / 1e9 for m in metas
                 if len(m["times"]) > 1]
        assert _median_step(metas) == (float(np.median(np.concatenate(steps))) if steps else 60.0)
