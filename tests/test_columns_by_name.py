"""Columns by name (issue 15): data read for a model are mapped to the columns it was trained on by name. A
reordering forecasts the same numbers under the model's names; a missing, renamed or unexpected column is a one-line
error listing both sets; a motion model refuses clips of another skeleton. Fixed-format text counts its extra fields,
and every loader says what it read (rows, entities, time span, the box positions span)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.api.columns import align_columns
from trajdiff.cli import app
from trajdiff.core.data import Episodes
from trajdiff.errors import DataError
from trajdiff.plugins.motion.bvh import Skeleton, read_bvh
from trajdiff.plugins.motion.loader import skeleton_mismatch
from trajdiff.plugins.timeseries.loader import load_series
from trajdiff.plugins.traffic.encoder import TrackEncoder
from trajdiff.plugins.traffic.loader import load_tracks
from trajdiff.plugins.vessel.loader import load_ais

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOCAP = SHARED_DATA / "cmu_mocap"
HISTORY, HORIZON = 16, 8


def _frame(start: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    t = np.arange(start, start + rows)
    values = np.stack([np.sin(2 * np.pi * t / 24), 0.5 * np.cos(2 * np.pi * t / 12), 0.01 * t], axis=1)
    frame = pd.DataFrame(values + 0.1 * rng.standard_normal(values.shape), columns=["x", "y", "z"])
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start))
    return frame


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A tiny timeseries model trained on ``time,x,y,z`` and held-out rows."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("columns")
    _frame(0, 300).to_csv(root / "train.csv", index=False)
    api.train("timeseries", root / "train.csv", root / "model", steps=20, history=HISTORY, horizon=HORIZON,
              batch_size=16, progress=False, encoder={"patch": 4},
              network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})
    return root / "model", _frame(300, 96)


def _write(frame: pd.DataFrame, folder: Path, name: str = "held.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    return folder / name


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


# ------------------------------------------------------------------------------------------- reordering


def test_a_reordered_file_forecasts_and_scores_the_same_numbers_under_the_models_names(series, tmp_path: Path) -> None:
    model, held = series
    original = _write(held, tmp_path / "a")
    reordered = _write(held[["time", "z", "x", "y"]], tmp_path / "b")  # same stem: the same entity names
    options = {"samples": 3, "nfe": 3, "seed": 5}
    first, second = api.forecast(model, original, **options), api.forecast(model, reordered, **options)
    assert list(second.table.columns) == ["sample", "entity", "time", "step", "x", "y", "z"]
    pd.testing.assert_frame_equal(first.table, second.table)
    scores = [api.evaluate(model, path, max_windows=4, **options) for path in (original, reordered)]
    assert scores[0]["metrics"] == scores[1]["metrics"] and scores[0]["baselines"] == scores[1]["baselines"]
    # through the command line: the model's names in the file, the reordering and what was read said once
    code, output = _cli("forecast", "--model", model, "--data", reordered, "--out", tmp_path / "f.csv",
                        "--samples", 3, "--nfe", 3, "--seed", 5)
    assert code == 0, output
    written = pd.read_csv(tmp_path / "f.csv")
    assert list(written.columns[-3:]) == ["x", "y", "z"]
    np.testing.assert_allclose(written[["x", "y", "z"]].to_numpy(), first.table[["x", "y", "z"]].to_numpy())
    assert "columns [z, x, y] reordered to the model's order [x, y, z]" in output
    assert "held.csv: read 96 row(s): 1 series of 96 row(s), columns z, x, y, 2020-01-13 12:00:00 to " \
           "2020-01-17 11:00:00" in output


def test_a_reordered_file_with_gaps_imputes_the_same_cells(series, tmp_path: Path) -> None:
    model, held = series
    holes = held.copy()
    holes.loc[30:35, "x"] = np.nan
    holes.loc[60:62, "z"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader announces the filled cells
        first = api.impute(model, _write(holes, tmp_path / "a"), samples=2, nfe=2)
        second = api.impute(model, _write(holes[["time", "y", "z", "x"]], tmp_path / "b"), samples=2, nfe=2)
    assert first.filled == second.filled == 9
    pd.testing.assert_frame_equal(first.table, second.table)  # the gap mask moved with its columns


# ------------------------------------------------------------------------------------------- refusals


CASES = {
    "renamed": (lambda f: f.rename(columns={"x": "p", "y": "q", "z": "r"}), "found [p, q, r] (missing [x, y, z]; "
                                                                            "unexpected [p, q, r])"),
    "missing": (lambda f: f[["time", "x", "y"]], "found [x, y] (missing [z])"),
    "extra": (lambda f: f.assign(w=1.0), "found [x, y, z, w] (unexpected [w])"),
}
COMMANDS = {
    "forecast": ["--out", "{tmp}/f.csv"],
    "evaluate": ["--out", "{tmp}/e.json"],
    "calibrate": [],
    "impute": ["--out", "{tmp}/i.csv"],
    "anomalies": ["--out", "{tmp}/s.csv"],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_other_columns_are_a_one_line_error_listing_both_sets(series, tmp_path: Path, command: str, case: str) -> None:
    model, held = series
    change, listed = CASES[case]
    data = _write(change(held), tmp_path)
    extra = [part.format(tmp=tmp_path) for part in COMMANDS[command]]
    code, output = _cli(command, "--model", model, "--data", data, *extra)
    assert code == 2 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {data}: the columns do not match the model's"), output
    assert "expected [x, y, z] (any order)" in lines[0] and listed in lines[0], lines[0]
    assert "rename or drop columns" in lines[0]  # and what to do
    assert not list(tmp_path.glob("[feis].*"))  # nothing written


def test_a_traffic_model_refuses_data_read_with_other_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "scene.txt"
    path.write_text("".join(f"{f}\t{a}\t{a + 0.4 * i:.3f}\t{0.1 * i:.3f}\n" for i, f in enumerate(range(0, 100, 10))
                            for a in (1, 2)))
    episodes = load_tracks(path, neighbours=1)
    assert align_columns(episodes, TrackEncoder(neighbours=1)) is episodes
    with pytest.raises(DataError, match=r"expected \[x, y, n1_dx, n1_dy, n1_dvx, n1_dvy, n1_on, n2_dx, n2_dy, n2_dvx, "
                                        r"\.\.\. 12 in all\] .*missing \[n2_dx, n2_dy, n2_dvx, n2_dvy, n2_on\]"):
        align_columns(episodes, TrackEncoder(neighbours=2), path)


def test_reorder_moves_per_column_meta_and_refuses_other_names() -> None:
    values = np.arange(12.0).reshape(4, 3)
    missing = np.zeros((4, 3), dtype=bool)
    missing[1, 0] = True
    meta = {"missing": missing, "future": values[:2], "times": [0, 1, 2, 3]}
    episodes = Episodes([values], ["a", "b", "c"], meta=[meta])
    moved = episodes.reorder(["c", "a", "b"])
    np.testing.assert_array_equal(moved.sequences[0], values[:, [2, 0, 1]])
    assert moved.meta[0]["missing"][1, 1] and moved.meta[0]["missing"].sum() == 1
    np.testing.assert_array_equal(moved.meta[0]["future"], values[:2, [2, 0, 1]])
    assert moved.meta[0]["times"] == [0, 1, 2, 3] and episodes.columns == ["a", "b", "c"]
    with pytest.raises(DataError, match="the names differ"):
        episodes.reorder(["a", "b", "d"])


# ------------------------------------------------------------------------------------------- motion


def _skeleton(names: list[str], parents: list[int]) -> Skeleton:
    return Skeleton(names, parents, np.ones((len(names), 3)), [("Xrotation",)] * len(names))


def test_skeleton_mismatch_names_the_joints_each_side_lacks_or_the_tree_that_differs() -> None:
    model = _skeleton(["Hips", "Spine", "Head", "LeftFoot"], [-1, 0, 1, 0])
    assert skeleton_mismatch(model, _skeleton(["Hips", "LeftFoot", "Spine", "Head"], [-1, 0, 0, 2])) is None  # order
    renamed = skeleton_mismatch(model, _skeleton(["Hips", "Spine", "Head", "LeftAnkle"], [-1, 0, 1, 0]))
    assert renamed == ("the model's skeleton has 4 joints, the clips' 4; joints only the model has: [LeftFoot], only "
                       "the clips have: [LeftAnkle]")
    moved = skeleton_mismatch(model, _skeleton(["Hips", "Spine", "Head", "LeftFoot"], [-1, 0, 0, 0]))
    assert "joint 'Head' hangs from Spine in the model and from Hips in the clips" in moved


@pytest.mark.skipif(not (MOCAP / "max_scaled").is_dir(), reason=f"shared data folder {MOCAP} is absent")
def test_a_motion_model_refuses_clips_of_another_skeleton(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    mine, other = MOCAP / "mb2" / "07" / "07_03.bvh", MOCAP / "max_scaled" / "131_01.bvh"  # both 31 joints
    api.train("motion", mine, tmp_path / "model", recipe="stream", steps=2, progress=False)
    with pytest.raises(DataError) as error:
        api.forecast(tmp_path / "model", other, samples=1, nfe=2)
    message = str(error.value)
    assert message.startswith(f"{other}: the clips are of another skeleton than the model's")
    assert "joints only the model has: [LeftUpLeg, LeftLeg" in message and "only the clips have: [LeftHip" in message
    assert "No retarget between different joint sets exists" in message
    code, output = _cli("sample", "--model", tmp_path / "model", "--data", other, "--seconds", 2,
                        "--out", tmp_path / "s.bvh")
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert "another skeleton than the model's" in output and not (tmp_path / "s.bvh").exists()


# ------------------------------------------------------------------------------- fixed-format text, summaries


def _scene(tmp_path: Path, lines: list[str], name: str = "scene.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _track_rows() -> list[str]:
    return [f"{f}\t{a}\t{(a - 1) * 2 + 0.5 * i:.2f}\t{1.0 - 0.25 * a:.2f}" for i, f in enumerate(range(0, 80, 10))
            for a in (1, 2)]


def test_eth_ucy_rows_with_a_fifth_field_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = _track_rows()
    rows[3] += "\t0.7"  # line 4
    rows[8] += "\t1\t2"  # line 9
    with pytest.warns(UserWarning, match=r"2 row\(s\) with more than 4 fields read without the extra ones "
                                         r"\(lines 4, 9\)"), caplog.at_level(logging.INFO, "trajdiff"):
        episodes = load_tracks(_scene(tmp_path, rows), neighbours=1)
    report = episodes.meta[0]["report"]
    assert report["extra_field_rows"] == 2 and report["extra_field_lines"] == [4, 9] and episodes.lengths == [8, 8]
    assert report["rows"] == report["rows_kept"] == 16
    assert "scene.txt: read 16 row(s): 2 agent(s) in 2 track(s) of 16 row(s), frames 0 to 70 (step 10), " \
           "x 0 to 5.5, y 0.5 to 0.75" in caplog.text
    # a file whose every row has extra fields has another layout: refused unless a header names the columns
    wide = [row + "\t9.9" for row in _track_rows()]
    with pytest.raises(DataError, match=r"every row has more than 4 fields \(line 1: 5\) and no header names them"):
        load_tracks(_scene(tmp_path, wide, "wide.txt"))
    with pytest.warns(UserWarning, match=r"column\(s\) ignored: \['z'\]"):
        named = load_tracks(_scene(tmp_path, ["frame agent_id x y z", *wide], "named.txt"), neighbours=0)
    assert named.meta[0]["report"]["header_line"] == 1
    np.testing.assert_allclose(named.sequences[0], load_tracks(_scene(tmp_path, _track_rows()), neighbours=0)
                               .sequences[0])


def test_the_timeseries_loader_says_what_it_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(_frame(0, 48), tmp_path)
    with caplog.at_level(logging.INFO, "trajdiff"):
        load_series(path)
    assert f"{path}: read 48 row(s): 1 series of 48 row(s), columns x, y, z, 2020-01-01 00:00:00 to " \
           "2020-01-02 23:00:00" in caplog.text


AIS_HEADER = "BaseDateTime,LON,LAT,MMSI,SOG,COG,Heading,VesselName\n"


def test_the_vessel_loader_says_what_it_read_and_counts_extra_fields(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    rows = [f"2020-06-30T00:0{m}:00,{-74.05 + 0.001 * m:.4f},40.6,366000001,5,90,90,TEST" for m in range(5)]
    rows.insert(2, "2020-06-30T00:01:30,-74.0485,40.6,366000001,5,90,90,TEST,EXTRA")  # line 4: 9 fields
    path = tmp_path / "ais.csv"
    path.write_text(AIS_HEADER + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="1 malformed row"), caplog.at_level(logging.INFO, "trajdiff"):
        episodes = load_ais(path)
    total = episodes.meta[0]["report"]["file"]
    assert total["malformed_rows"] == 1 and "line 4: 9 fields, the header has 8" in total["malformed_examples"][0]
    # latitude and longitude swapped in a file would show here: the box is printed
    assert f"{path}: read 6 row(s) of 1 vessel(s): 1 track(s) of 5 row(s) at 60 s intervals, 2020-06-30T00:00:00 " \
           "to 2020-06-30T00:04:00, lat 40.6000 to 40.6000, lon -74.0500 to -74.0460" in caplog.text
    traj = tmp_path / "log.traj"
    points = ",".join(f"366000001,2020-12-08 00:0{m}:00,{-74.0 + 0.001 * m},40.6" for m in range(3))
    traj.write_text(f"*T*,u1,terrestrial,3,0,*P*,terrestrial,2,1,1,0,{points}\n"
                    f"*T*,u2,terrestrial,3,0,*P*,terrestrial,2,1,1,0,{points},7\n")  # a field too many
    with pytest.warns(UserWarning, match="1 malformed"):
        examples = load_ais(traj).meta[0]["report"]["file"]["malformed_examples"]
    assert examples == ["line 2: the header announces 3 points of 4 fields but the line holds 13 fields"]


BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  End Site
  {
    OFFSET 0 1 0
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
0 0 0 0 0 0
1 2 3 90 0 0 7
"""


def test_a_bvh_row_with_an_extra_value_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "clip.bvh"
    path.write_text(BVH)
    with pytest.raises(DataError, match=r"clip\.bvh, line 15: 7 values but the hierarchy has 6 channels"):
        read_bvh(path)
