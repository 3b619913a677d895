"""Property tests of the time-series and traffic loaders (issue 15): a valid file, randomly corrupted (fields dropped
or added, garbage values, rows shuffled or repeated, blank lines), is either read with every row accounted for
(kept, or counted as skipped or removed) or refused with the loader's DataError / ConfigError; nothing else escapes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="needs trajdiff[dev]")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trajdiff.errors import ConfigError, DataError  # noqa: E402
from trajdiff.plugins.timeseries.loader import load_series  # noqa: E402
from trajdiff.plugins.traffic.loader import load_tracks  # noqa: E402

GARBAGE = ["", " ", "abc", "nan", "NaN", "inf", "-inf", "1e999", "-", "null", "NA", "2020-13-45", "1,5", "'", '"',
           "#", "0x1F", "1e-400", "12:00", "\t", "𝟙", "None"]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])


def _series_lines(rows: int = 24) -> list[str]:
    stamps = pd.date_range("2021-03-01", periods=rows, freq="h")
    t = np.arange(rows)
    return [f"{s.isoformat(sep=' ')},{np.sin(i / 3):.4f},{np.cos(i / 5):.4f}" for s, i in zip(stamps, t, strict=True)]


def _track_lines(sep: str) -> list[str]:
    lines = []
    for frame in range(0, 120, 10):
        for agent, (x0, y0, vx) in enumerate([(0.0, 0.0, 0.4), (1.0, 3.0, -0.3), (5.0, 1.0, 0.1)], start=1):
            i = frame // 10
            lines.append(sep.join([str(frame), str(agent), f"{x0 + vx * i:.3f}", f"{y0 + 0.05 * i:.3f}"]))
    return lines


@st.composite
def corrupted(draw: st.DrawFn, lines: list[str], sep: str) -> list[str]:
    """``lines`` with a few random corruptions applied in turn."""
    lines = list(lines)
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["drop", "extra", "garbage", "shuffle", "repeat", "blank", "swap", "quote"]))
        i = draw(st.integers(0, len(lines) - 1))
        fields = lines[i].split(sep)
        if kind == "quote":  # a quote opened in one row and closed in a later one
            j = draw(st.integers(i, len(lines) - 1))
            lines[i], lines[j] = '"' + lines[i], lines[j] + '"' if j > i else lines[i] + '"'
            continue
        if kind == "drop" and len(fields) > 1:
            del fields[draw(st.integers(0, len(fields) - 1))]
        elif kind == "extra":
            fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(GARBAGE + ["1.5", "7"])))
        elif kind == "garbage":
            fields[draw(st.integers(0, len(fields) - 1))] = draw(st.sampled_from(GARBAGE) | st.text(max_size=4))
        elif kind == "shuffle":
            lines = draw(st.permutations(lines))
            continue
        elif kind == "repeat":
            lines.insert(i, lines[i])
            continue
        elif kind == "blank":
            lines.insert(i, "")
            continue
        elif kind == "swap" and len(fields) > 2:
            fields[1], fields[2] = fields[2], fields[1]
        lines[i] = sep.join(fields)
    return lines


def _quietly(load, *args, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(*args, **options)


@PROPERTY
@given(lines=corrupted(_series_lines(), ","), bad_times=st.sampled_from(["raise", "skip"]),
       freq=st.sampled_from([None, "1h"]), fill=st.sampled_from(["interpolate", "ffill", "none"]))
def test_a_corrupted_series_file_is_read_with_every_row_counted_or_refused(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], bad_times: str, freq: str | None, fill: str,
) -> None:
    path = tmp_path_factory.mktemp("series") / "data.csv"
    path.write_text("time,a,b\n" + "\n".join(lines) + "\n", encoding="utf-8")
    try:
        episodes = _quietly(load_series, path, bad_times=bad_times, freq=freq, fill=fill)
    except (DataError, ConfigError) as error:
        assert str(error) and "\n" not in str(error).strip()
        event("refused")
        return
    event("read")
    reports = [m["report"] for m in episodes.meta]
    # every line is a row read or an empty one (blank, or only empty / NA cells) skipped and counted
    assert sum(r["rows_read"] for r in reports) + reports[0]["blank_lines_skipped"] == len(lines)
    for r, sequence in zip(reports, episodes.sequences, strict=True):
        dropped = r["bad_times_skipped"] + r["duplicates_removed"]
        if freq is None:
            assert r["rows"] == len(sequence) == r["rows_read"] - dropped
        else:  # resampled: every original row is on the grid or counted off it
            assert r["rows"] == len(sequence) and r["rows_off_grid"] <= r["rows_read"] - dropped
        assert np.isfinite(sequence).all()


@PROPERTY
@given(data=st.sampled_from([("scene.txt", "\t"), ("scene.txt", " "), ("scene.csv", ",")]).flatmap(
    lambda spec: st.tuples(st.just(spec), corrupted(_track_lines(spec[1]), spec[1]))))
def test_a_corrupted_track_file_is_read_with_every_row_counted_or_refused(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[tuple[str, str], list[str]],
) -> None:
    (name, _), lines = data
    path: Path = tmp_path_factory.mktemp("tracks") / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        episodes = _quietly(load_tracks, path, neighbours=1)
    except (DataError, ConfigError) as error:
        assert str(error) and "\n" not in str(error).strip()
        event("refused")
        return
    event("read")
    report = episodes.meta[0]["report"]
    content = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]  # \r ends lines too
    assert report["rows"] + report["comment_lines"] + (report["header_line"] > 0) == len(content)
    dropped = sum(report[key] for key in ("malformed_rows", "duplicate_rows", "off_grid_rows", "single_row_tracks"))
    assert report["rows"] == report["rows_kept"] + dropped
    assert sum(episodes.lengths) == report["rows_kept"]
    assert all(np.isfinite(seq).all() for seq in episodes.sequences)
