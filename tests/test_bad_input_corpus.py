"""The bad-input corpus (issue 15): every case is generated here (no files in the repository) and run through the
command line, and each asserts its exact outcome: one error line naming the file, row, column or option with the
fix (a non-zero exit, no traceback), or a counted repair (exit 0 and the count in the loader's report).

Classes: csv (the timeseries loader), ais (the vessel loader), eth_ucy (the traffic loader's text), bvh (motion
clips), model_folder (tampered model directories), options (nonsense on the command line) and plugins (colliding,
broken or raising plugins). `benchmarks/bad_input_counts.py` counts the cases by class, here and in the other test
modules that hold bad-input cases.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
import struct
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.core.checkpoint import attach_file
from trajdiff.plugins.manager import reset_plugins

TINY = {"kind": "transformer", "width": 16, "depth": 1, "heads": 2}
AIS_HEADER = "BaseDateTime,LON,LAT,MMSI,SOG,COG,Heading,VesselName"
CHAIN = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Upper
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Lower
    {
      OFFSET 1 0 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0.5 0 0
      }
    }
  }
}
MOTION
"""  # the motion rows start at line 25 (after "Frames:" and "Frame Time:")


# ---------------------------------------------------------------------------------------------- valid inputs


def series_lines(start: int = 300, rows: int = 120) -> list[str]:
    t = np.arange(start, start + rows)
    stamps = pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start)
    return ["time,a,b"] + [f"{s.isoformat(sep=' ')},{np.sin(i / 4):.5f},{np.cos(i / 6):.5f}"
                           for s, i in zip(stamps, t, strict=True)]


def ais_lines(vessels: int = 3, minutes: int = 40) -> list[str]:
    rows = [AIS_HEADER]
    for v in range(vessels):
        for m in range(minutes):
            stamp = (pd.Timestamp("2020-06-30") + pd.Timedelta(minutes=m)).isoformat()
            rows.append(f"{stamp},{-74.05 + 0.001 * m + 0.01 * v:.6f},{40.6 + 0.0005 * m * (v - 1):.6f},"
                        f"{366000001 + v},5.0,90.0,90.0,TEST")
    return rows


def scene_lines(agents: int = 3, frames: int = 30) -> list[str]:
    return [f"{10 * f}\t{a}\t{a + 0.4 * f:.3f}\t{0.1 * f * (a - 2):.3f}" for f in range(frames)
            for a in range(1, agents + 1)]


def bvh_text(frames: int = 120, chain: str = CHAIN) -> str:
    rows = [" ".join([f"{0.01 * i:.3f}", "0", "0", f"{5 * math.sin(i / 10):.3f}", "0", "0",
                      f"{20 * math.sin(i / 7):.3f}", "0", "0", f"{15 * math.cos(i / 9):.3f}", "0", "0"])
            for i in range(frames)]
    return chain + f"Frames: {frames}\nFrame Time: 0.0333333\n" + "\n".join(rows) + "\n"


@dataclass(frozen=True)
class World:
    """Tiny trained models of four domains, shared by the cases (each case copies what it changes)."""

    root: Path
    series: Path
    vessel: Path
    traffic: Path
    motion: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("corpus")
    small = {"steps": 3, "batch_size": 8, "progress": False, "network": TINY}
    (root / "train.csv").write_text("\n".join(series_lines(0, 300)) + "\n")
    api.train("timeseries", root / "train.csv", root / "series", history=16, horizon=8, encoder={"patch": 4}, **small)
    (root / "ais.csv").write_text("\n".join(ais_lines()) + "\n")
    api.train("vessel", root / "ais.csv", root / "vessel", history=10, horizon=10, **small)
    (root / "scene.txt").write_text("\n".join(scene_lines()) + "\n")
    api.train("traffic", root / "scene.txt", root / "traffic", **small)
    (root / "clip.bvh").write_text(bvh_text())
    api.train("motion", root / "clip.bvh", root / "motion", history=4, horizon=4, load_options={"unit": 1.0}, **small)
    return World(root, root / "series", root / "vessel", root / "traffic", root / "motion")


# ------------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One bad input: ``build`` writes it under a fresh folder and returns the command line; ``expect`` are the
    fragments of the one error line (exit ``code``), or of the counted repair when ``repair``."""

    kind: str
    name: str
    build: Callable[[World, Path], list[str]]
    expect: tuple[str, ...]
    code: int = 2
    repair: bool = False
    plugins: bool = False  # runs with the corpus' plugin packages installed


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


def _forecast(model: str, suffix: str, content: Callable[[], str | bytes], *extra: str
              ) -> Callable[[World, Path], list[str]]:
    def build(world: World, tmp: Path) -> list[str]:
        data = _write(tmp / f"data{suffix}", content())
        return ["forecast", "--model", str(getattr(world, model)), "--data", str(data), "--out", str(tmp / "f.csv"),
                "--samples", "1", "--nfe", "1", *extra]

    return build


def _lines(lines: list[str], at: int, new: list[str] | None = None, drop: int = 0) -> str:
    """``lines`` with ``drop`` lines at index ``at`` replaced by ``new``, joined as a file."""
    return "\n".join(lines[:at] + (new or []) + lines[at + drop:]) + "\n"


def _csv(content: Callable[[], str | bytes], *extra: str) -> Callable[[World, Path], list[str]]:
    return _forecast("series", ".csv", content, *extra)


S = series_lines()
CSV = [
    Case("csv", "empty", _csv(lambda: ""), ("data.csv: the file is empty",)),
    Case("csv", "history-too-short", _csv(lambda: _lines(S[:6], 6)),
         ("data.csv: no episode has the 16 rows of history the model needs; the longest has 5 rows",)),
    Case("csv", "header-only", _csv(lambda: S[0] + "\n"), ("data.csv: no numeric value columns",)),
    Case("csv", "letters-in-a-value", _csv(lambda: _lines(S, 5, [S[5].rsplit(",", 1)[0] + ",abc"], 1)),
         ("column 'b'", "'abc' at line 6", "Fix or blank those cells")),
    Case("csv", "infinite-value", _csv(lambda: _lines(S, 5, [S[5].rsplit(",", 1)[0] + ",inf"], 1)),
         ("column 'b'", "'inf' at line 6",)),
    Case("csv", "bad-timestamp", _csv(lambda: _lines(S, 5, ["notatime,1,2"], 1)),
         ("column 'time'", "'notatime' at line 6", "bad_times='skip'")),
    Case("csv", "extra-field", _csv(lambda: _lines(S, 5, [S[5] + ",7"], 1)),
         ("data.csv: cannot be read as CSV", "Expected 3 fields in line 6, saw 4")),
    Case("csv", "unclosed-quote", _csv(lambda: _lines(S, 5, ['"' + S[5]], 1)),
         ("data.csv: cannot be read as CSV", "EOF inside string")),
    Case("csv", "binary", _csv(lambda: b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 20),
         ("data.csv: cannot be read as CSV", "re-export it as UTF-8 CSV")),
    Case("csv", "utf-16", _csv(lambda: "\n".join(S).encode("utf-16")), ("cannot be read as CSV", "UTF-8")),
    Case("csv", "irregular-times", _csv(lambda: _lines(S, 40, drop=20)),
         ("irregular timestamps", "line 41", "Pass freq='1h'")),
    Case("csv", "renamed-column", _csv(lambda: _lines(["time,a,c"] + S[1:], 0)),
         ("expected [a, b] (any order), found [a, c]", "unexpected [c]")),
    Case("csv", "text-column", _csv(lambda: _lines([S[0]] + [line + "x" for line in S[1:]], 0)),
         ("found [a] (missing [b])",)),
    Case("csv", "too-short", _csv(lambda: _lines(S[:10], 0)), ("16 rows of history", "the longest has 9 rows")),
    Case("csv", "unsupported-type", _forecast("series", ".json", lambda: "{}"), ("unsupported file type '.json'",)),
    Case("csv", "missing-file", lambda w, tmp: ["forecast", "--model", str(w.series), "--data", str(tmp / "no.csv"),
                                                "--out", str(tmp / "f.csv")], ("no.csv: file not found",)),
    Case("csv", "duplicated-row", _csv(lambda: _lines(S, 5, [S[5], S[5]], 1)),
         ("1 row(s) with a duplicated timestamp removed",), code=0, repair=True),
    Case("csv", "unsorted-rows", _csv(lambda: _lines([S[0]] + S[1:][::-1], 0)),
         ("120 row(s) moved to sort by time",), code=0, repair=True),
    Case("csv", "empty-cell", _csv(lambda: _lines(S, 5, [S[5].rsplit(",", 1)[0] + ","], 1)),
         ("1 empty cell(s) filled by interpolate (b: 1)",), code=0, repair=True),
    Case("csv", "skipped-timestamp", _csv(lambda: _lines(S, 5, ["notatime,1,2"], 1), "--load-option",
                                          "bad_times=skip", "--load-option", "freq=1h"), ("unparsable",),
         code=0, repair=True),
]

A = ais_lines()


def _field(line: str, index: int, value: str) -> str:
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


STAMP = "2020-06-30T00:10:30"


def _ais(content: Callable[[], str | bytes], *extra: str) -> Callable[[World, Path], list[str]]:
    return _forecast("vessel", ".csv", content, *extra)


AIS = [
    Case("ais", "empty", _ais(lambda: ""), ("data.csv: the file is empty",)),
    Case("ais", "missing-column", _ais(lambda: _lines([A[0].replace("LAT,", "")] + [",".join(
        line.split(",")[:2] + line.split(",")[3:]) for line in A[1:]], 0)), ("missing column(s) ['LAT']",
                                                                              "rename the columns")),
    Case("ais", "single-report-vessels", _ais(lambda: _lines(A[:1] + [A[1], A[41], A[81]], 0)),
         ("data.csv: no track", "3 vessel(s) with a single report")),
    Case("ais", "malformed-rows-raised", _ais(lambda: _lines(A, 3, [f"{STAMP},-74.0,40.6,366000001,1,1"]),
                                              "--load-option", "bad_rows=raise"),
         ("data.csv: line 4: 6 fields", "bad_rows='skip'")),
    Case("ais", "unsupported-type", _forecast("vessel", ".xlsx", lambda: "x"), ("unsupported file type",)),
    Case("ais", "bad-option-value", _ais(lambda: _lines(A, 0), "--load-option", "interval=soon"),
         ("interval='soon' is not a duration",)),
    Case("ais", "malformed-rows", _ais(lambda: _lines(A, 3, [f"{STAMP},-74.0,40.6,366000001,1,1",
                                                             "yesterday,-74.0,40.6,366000001,1,1,1,X",
                                                             f"{STAMP},-74.0,north,366000001,1,1,1,X"])),
         ("3 malformed row(s)",), code=0, repair=True),
    Case("ais", "unavailable-values", _ais(lambda: _lines(A, 3, [A[3].replace(",5.0,90.0,90.0,", ",102.3,360.0,511,")],
                                                          1)), ("per-vessel counts",), code=0, repair=True),
    Case("ais", "impossible-position", _ais(lambda: _lines(A, 3, [f"{STAMP},-74.05,91.0,366000001,1,1,1,X"])),
         ("per-vessel counts",), code=0, repair=True),
    Case("ais", "duplicated-report", _ais(lambda: _lines(A, 3, [A[3], A[3]], 1)), ("per-vessel counts",),
         code=0, repair=True),
    Case("ais", "jump", _ais(lambda: _lines(A, 3, [_field(A[3], 1, "-70.0")], 1)),
         ("per-vessel counts",), code=0, repair=True),
    Case("ais", "traj-malformed-line", _forecast("vessel", ".traj", lambda: "not a trajectory\n"),
         ("data.traj",)),
]

E = scene_lines()


def _eth(content: Callable[[], str | bytes], *extra: str) -> Callable[[World, Path], list[str]]:
    return _forecast("traffic", ".txt", content, *extra)


ETH_UCY = [
    Case("eth_ucy", "empty", _eth(lambda: "\n"), ("data.txt", "empty")),
    Case("eth_ucy", "three-columns", _eth(lambda: _lines([line.rsplit("\t", 1)[0] for line in E], 0)),
         ("data.txt: line 1 has 3 column(s)", "missing columns: y")),
    Case("eth_ucy", "every-row-five-fields", _eth(lambda: _lines([line + "\t9.9" for line in E], 0)),
         ("every row has more than 4 fields (line 1: 5) and no header names them",)),
    Case("eth_ucy", "lonely-agents", _eth(lambda: "0\t1\t0\t0\n10\t2\t0\t0\n"), ("no agent has two or more rows",)),
    Case("eth_ucy", "unknown-option", _eth(lambda: _lines(E, 0), "--load-option", "freq=1h"),
         ("unknown traffic loader option",)),
    Case("eth_ucy", "fifth-field", _eth(lambda: _lines(E, 3, [E[3] + "\t0.7"], 1)),
         ("1 row(s) with more than 4 fields read without the extra ones (lines 4)",), code=0, repair=True),
    Case("eth_ucy", "malformed-rows", _eth(lambda: _lines(E, 3, ["20\t1\tabc\t0.0", "30\t2"])),
         ("2 malformed row(s) skipped (lines 4, 5)",), code=0, repair=True),
    Case("eth_ucy", "duplicate-row", _eth(lambda: _lines(E, 3, [E[0].replace("\t1.000\t", "\t9.000\t")])),
         ("1 duplicate (frame, agent) row(s) removed",), code=0, repair=True),
    Case("eth_ucy", "off-grid-frame", _eth(lambda: _lines(E, 3, ["15\t2\t3.0\t3.0"])), ("off the frame grid",),
         code=0, repair=True),
    Case("eth_ucy", "single-row-agent", _eth(lambda: _lines(E, 3, ["50\t9\t1.0\t1.0"])),
         ("single row skipped (agents 9)",), code=0, repair=True),
]


def _bvh(change: Callable[[str], str | bytes]) -> Callable[[World, Path], list[str]]:
    return _forecast("motion", ".bvh", lambda: change(bvh_text()), "--load-option", "unit=1.0")


def _folder_of_two(other: str) -> Callable[[World, Path], list[str]]:
    """A data set of two clips, trained on (one step): a model's data are read as one."""
    def build(world: World, tmp: Path) -> list[str]:
        (tmp / "clips").mkdir()
        _write(tmp / "clips" / "a.bvh", bvh_text())
        _write(tmp / "clips" / "b.bvh", bvh_text(chain=other))
        return ["train", "--domain", "motion", "--data", str(tmp / "clips"), "--out", str(tmp / "new"), "--steps", "1",
                "--history", "4", "--horizon", "4", "--load-option", "unit=1.0"]

    return build


ROW = bvh_text().splitlines()[25]  # motion row 2, line 26
BVH = [
    Case("bvh", "missing-brace", _bvh(lambda t: t.replace("      End Site", "      End Site\n      {", 1)),
         ("data.bvh, line",)),
    Case("bvh", "extra-close", _bvh(lambda t: t.replace("  }\n}\nMOTION", "  }\n}\n}\nMOTION")),
         ("data.bvh, line 21", "extra '}'")),
    Case("bvh", "short-row", _bvh(lambda t: t.replace(ROW, ROW[:-2])),
         ("data.bvh, line 26: 11 values but the hierarchy has 12 channels",)),
    Case("bvh", "long-row", _bvh(lambda t: t.replace(ROW, ROW + " 7")),
         ("data.bvh, line 26: 13 values but the hierarchy has 12 channels",)),
    Case("bvh", "non-numeric", _bvh(lambda t: t.replace(ROW, " ".join([*ROW.split()[:6], "abc", *ROW.split()[7:]]))),
         ("data.bvh, line 26, value 7: 'abc' is not a number",)),
    Case("bvh", "zero-frame-time", _bvh(lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: 0")),
         ("data.bvh, line 23: the frame time is 0",)),
    Case("bvh", "frame-count", _bvh(lambda t: t.replace("Frames: 120", "Frames: 130")),
         ("'Frames:' says 130 but the file has 120 motion rows",)),
    Case("bvh", "unknown-channel", _bvh(lambda t: t.replace("CHANNELS 3 Zrotation Xrotation", "CHANNELS 3 Zrotation "
                                                            "Wrotation")), ("data.bvh, line 9: unknown channel",)),
    Case("bvh", "bad-offset", _bvh(lambda t: t.replace("    OFFSET 1 0 0\n    CHANNELS", "    OFFSET 1 zero 0\n    "
                                                       "CHANNELS")), ("data.bvh, line 8: OFFSET of joint 'Upper'",)),
    Case("bvh", "no-motion", _bvh(lambda t: t.split("MOTION")[0]), ("data.bvh: no MOTION section",)),
    Case("bvh", "empty", _bvh(lambda t: ""), ("data.bvh",)),
    Case("bvh", "binary", _bvh(lambda t: b"\x00\xff" * 64), ("data.bvh",)),
    Case("bvh", "other-skeleton", _bvh(lambda t: t.replace("JOINT Lower", "JOINT Forearm")),
         ("another skeleton than the model's", "only the clips have: [Forearm]")),
    Case("bvh", "two-skeletons", _folder_of_two(CHAIN.replace("JOINT Lower", "JOINT Forearm")),
         ("b.bvh, line 1: its skeleton differs from", "a.bvh's (joint names differ")),
    Case("bvh", "other-proportions", _folder_of_two(CHAIN.replace("      OFFSET 1 0 0\n      CHANNELS 3 Zrotation Y",
                                                                  "      OFFSET 2 0 0\n      CHANNELS 3 Zrotation Y")),
         ("2 clip(s), 240 frame(s) at 30 fps", "1 clip(s) retargeted onto a.bvh's bone lengths"), code=0,
         repair=True),
]


# ------------------------------------------------------------------------------------- tampered model folders


def _tampered(change: Callable[[Path], None]) -> Callable[[World, Path], list[str]]:
    def build(world: World, tmp: Path) -> list[str]:
        model = Path(shutil.copytree(world.series, tmp / "model"))
        change(model)
        data = _write(tmp / "data.csv", "\n".join(S) + "\n")
        return ["forecast", "--model", str(model), "--data", str(data), "--out", str(tmp / "f.csv"), "--samples", "2",
                "--nfe", "1"]

    return build


def _config(path: list[str], value: object) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        config = json.loads((model / "config.json").read_text())
        place = config
        for key in path[:-1]:
            place = place[key]
        place[path[-1]] = value
        (model / "config.json").write_text(json.dumps(config))

    return change


def _record(model: Path, name: str) -> None:
    """Records ``name``'s current sha256 and size in config.json, as an attacker who edits both would."""
    config = json.loads((model / "config.json").read_text())
    data = (model / name).read_bytes()
    config["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (model / "config.json").write_text(json.dumps(config))


def _truncate(name: str) -> Callable[[Path], None]:
    return lambda model: _write(model / name, (model / name).read_bytes()[: (model / name).stat().st_size // 2])


def _flip(name: str) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        data = bytearray((model / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        _write(model / name, bytes(data))

    return change


class Payload:
    """Unpickling this runs code: what a loader that unpickles would do with a hostile model folder."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("raise SystemExit('unpickled')",))


def _pickle(record: bool) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        _write(model / "ema.safetensors", pickle.dumps({"weights": Payload()}))
        if record:
            _record(model, "ema.safetensors")

    return change


def _pickle_beside(model: Path) -> None:
    (model / "ema.safetensors").unlink()
    _write(model / "pytorch_model.bin", pickle.dumps(Payload()))


def _huge_header(model: Path) -> None:
    _write(model / "ema.safetensors", struct.pack("<Q", 2 ** 40) + b"{}")
    _record(model, "ema.safetensors")


def _calibration(text: str, record: bool = True) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        _write(model / "calibration.json", text)
        if record:
            attach_file(model, "calibration.json")

    return change


def _nan_literal(model: Path) -> None:
    text = (model / "config.json").read_text().replace('"sigma_data": ', '"sigma_data": NaN, "was": ')
    _write(model / "config.json", text)


CALIBRATION = '{{"median_weight": {w}, "spread_factor": {f}, "level": 0.9, "windows": 10, "data": "x"}}'
MODEL_FOLDER = [
    Case("model_folder", "truncated-weights", _tampered(_truncate("weights.safetensors")),
         ("weights.safetensors has", "the file is truncated or was modified")),
    Case("model_folder", "truncated-ema", _tampered(_truncate("ema.safetensors")), ("ema.safetensors has",)),
    Case("model_folder", "flipped-weights", _tampered(_flip("weights.safetensors")),
         ("weights.safetensors does not match the sha256 recorded in config.json",)),
    Case("model_folder", "flipped-optimizer", _tampered(_flip("optimizer.safetensors")),
         ("optimizer.safetensors does not match the sha256",)),
    Case("model_folder", "pickle-payload", _tampered(_pickle(False)), ("ema.safetensors has",)),
    Case("model_folder", "pickle-payload-recorded", _tampered(_pickle(True)),
         ("ema.safetensors is not a readable safetensors file",)),
    Case("model_folder", "pickle-beside", _tampered(_pickle_beside), ("ema.safetensors is listed in config.json but "
                                                                      "missing",)),
    Case("model_folder", "huge-header", _tampered(_huge_header), ("ema.safetensors is not a readable safetensors",)),
    Case("model_folder", "no-config", _tampered(lambda m: (m / "config.json").unlink()), ("config.json is missing",)),
    Case("model_folder", "garbage-config", _tampered(lambda m: _write(m / "config.json", "{not json")),
         ("config.json is not valid JSON",)),
    Case("model_folder", "config-a-list", _tampered(lambda m: _write(m / "config.json", "[1, 2]")),
         ("config.json holds a JSON list, not an object",)),
    Case("model_folder", "format-version-a-string", _tampered(_config(["format_version"], "1")),
         ("config.json has format_version '1'",)),
    Case("model_folder", "step-a-string", _tampered(_config(["step"], "ten")), ("config.json has step 'ten'",)),
    Case("model_folder", "files-a-list", _tampered(_config(["files"], [])), ("no valid 'files' table",)),
    Case("model_folder", "sha-a-number", _tampered(_config(["files", "ema.safetensors", "sha256"], 123)),
         ("no valid sha256/bytes record for ema.safetensors",)),
    Case("model_folder", "network-a-list", _tampered(_config(["network"], [1, 2])),
         ("config.json: network is [1, 2] (list), not an object",)),
    Case("model_folder", "width-a-string", _tampered(_config(["network", "width"], "16")),
         ("config.json: width must be a positive integer, got '16'; re-copy the model directory",)),
    Case("model_folder", "unknown-network", _tampered(_config(["network", "kind"], "lstm9")),
         ("config.json: unknown network kind 'lstm9'",)),
    Case("model_folder", "sigma-a-string", _tampered(_config(["sigma_data"], "x")),
         ("config.json: sigma_data is 'x', not a finite number > 0",)),
    Case("model_folder", "sigma-negative", _tampered(_config(["sigma_data"], -1.0)), ("sigma_data is -1.0",)),
    Case("model_folder", "sigma-nan", _tampered(_nan_literal), ("sigma_data is nan",)),
    Case("model_folder", "parametrization", _tampered(_config(["parametrization"], "banana")),
         ("config.json: unknown parametrization 'banana'",)),
    Case("model_folder", "training-a-string", _tampered(_config(["training"], "x")),
         ("config.json: training is 'x' (str), not an object",)),
    Case("model_folder", "history-a-string", _tampered(_config(["extra", "defaults", "history"], "16")),
         ("config.json: defaults.history is '16' (str), not a whole number >= 0",)),
    Case("model_folder", "defaults-network-a-list", _tampered(_config(["extra", "defaults", "network"], [])),
         ("defaults.network is [] (list), not an object",)),
    Case("model_folder", "encoder-a-list", _tampered(_config(["extra", "encoder"], [1])),
         ("config.json: extra.encoder is not a state the 'timeseries' encoder loads", "not a SeriesEncoder state")),
    Case("model_folder", "extra-a-list", _tampered(_config(["extra"], [])),
         ("config.json: extra is [] (list), not an object",)),
    Case("model_folder", "no-domain", _tampered(_config(["extra", "domain"], None)), ("was not trained for a domain",)),
    Case("model_folder", "calibration-nan", _tampered(_calibration(CALIBRATION.format(w="NaN", f=1.0))),
         ("calibration.json", "field 'median_weight' is nan (float), not a finite number in [0.0, 1.0]")),
    Case("model_folder", "calibration-a-string", _tampered(_calibration(CALIBRATION.format(w=1.0, f='"wide"'))),
         ("field 'spread_factor' is 'wide' (str)",)),
    Case("model_folder", "calibration-unrecorded", _tampered(_calibration(CALIBRATION.format(w=1.0, f=1.0), False)),
         ("calibration.json is not recorded in",)),
    Case("model_folder", "calibration-a-list", _tampered(_calibration("[1]")), ("it holds a JSON list",)),
    Case("model_folder", "a-file", lambda w, tmp: ["forecast", "--model", str(_write(tmp / "m", "x")), "--data",
                                                   str(w.root / "train.csv"), "--out", str(tmp / "f.csv")],
         ("is not a directory; pass the model directory itself",)),
]


# ------------------------------------------------------------------------------------------ nonsense options


def _command(*args: str, model: str = "series") -> Callable[[World, Path], list[str]]:
    """``args`` with MODEL, DATA and OUT filled in: the domain's model, its good data, a file in the case's folder."""
    def build(world: World, tmp: Path) -> list[str]:
        data = _write(tmp / "data.csv", "\n".join(S) + "\n")
        fill = {"MODEL": str(getattr(world, model)), "DATA": str(data), "OUT": str(tmp / "f.csv"),
                "JSON": str(tmp / "e.json"), "NEW": str(tmp / "new")}
        return [next((value + arg[len(key):] for key, value in fill.items() if arg.startswith(key)), arg)
                for arg in args]

    return build


FORECAST = ("forecast", "--model", "MODEL", "--data", "DATA", "--out", "OUT", "--samples", "2", "--nfe", "1")
EVALUATE = ("evaluate", "--model", "MODEL", "--data", "DATA", "--out", "JSON", "--samples", "2", "--nfe", "1")
TRAIN = ("train", "--domain", "timeseries", "--data", "DATA", "--out", "NEW", "--steps", "1", "--history", "16",
         "--horizon", "16", "--encoder-option", "patch=4")
OPTIONS = [
    Case("options", "samples-zero", _command(*FORECAST[:-4], "--samples", "0"),
         ("trajdiff forecast: Invalid value for '--samples'", "greater than or equal to 1")),
    Case("options", "nfe-letters", _command(*FORECAST, "--nfe", "abc"), ("Invalid value for '--nfe'",)),
    Case("options", "unknown-option", _command(*FORECAST, "--colour", "blue"), ("No such option: --colour",)),
    Case("options", "missing-option", _command("forecast", "--model", "MODEL"), ("Missing option '--data'",)),
    Case("options", "unknown-command", _command("forcast"), ("No such command 'forcast'",)),
    Case("options", "seed-negative", _command(*FORECAST, "--seed", "-1"), ("seed must be a whole number from 0",)),
    Case("options", "seed-huge", _command(*FORECAST, "--seed", str(2 ** 64)), ("seed must be a whole number",)),
    Case("options", "level-above-one", _command("calibrate", "--model", "MODEL", "--data", "DATA", "--level", "1.5"),
         ("level must be a number between 0 and 1", "got 1.5")),
    Case("options", "level-nan", _command("calibrate", "--model", "MODEL", "--data", "DATA", "--level", "nan"),
         ("level must be a number between 0 and 1", "got nan")),
    Case("options", "stride-zero", _command(*EVALUATE, "--stride", "0"), ("Invalid value for '--stride'",)),
    Case("options", "max-windows-zero", _command(*EVALUATE, "--max-windows", "0"),
         ("Invalid value for '--max-windows'",)),
    Case("options", "horizon-zero", _command(*FORECAST, "--horizon", "0"), ("Invalid value for '--horizon'",)),
    Case("options", "horizon-beyond-memory", _command(*FORECAST, "--horizon", "100000000000"),
         ("needs about", "more than half of this machine's", "forecast fewer rows (--horizon)")),
    Case("options", "unknown-plan", _command(*FORECAST, "--plan", "sideways"),
         ("unknown plan 'sideways'; choose one of full, autoregressive, pyramid, rolling",)),
    Case("options", "plan-option-letters", _command(*FORECAST, "--plan", "autoregressive", "--plan-option", "chunk=x"),
         ("plan option chunk must be a whole number, got 'x'",)),
    Case("options", "plan-option-fraction", _command(*FORECAST, "--plan", "rolling", "--plan-option", "window=1.5"),
         ("plan option window must be a whole number, got 1.5",)),
    Case("options", "plan-option-nan", _command(*FORECAST, "--plan-option", "start=nan"),
         ("plan option start must be a finite number",)),
    Case("options", "plan-option-negative", _command(*FORECAST, "--plan", "autoregressive", "--plan-option",
                                                     "chunk=-2"), ("plan option chunk must be >= 1, got -2",)),
    Case("options", "plan-option-unknown", _command(*FORECAST, "--plan-option", "colour=3"),
         ("plan 'full' does not take the options ['colour']",)),
    Case("options", "plan-option-no-value", _command(*FORECAST, "--plan-option", "chunk"),
         ("--plan-option 'chunk': write KEY=VALUE",)),
    Case("options", "load-option-unknown", _command(*FORECAST, "--load-option", "colour=blue"),
         ("unknown time-series loader option(s) ['colour']",)),
    Case("options", "load-option-bad-value", _command(*FORECAST, "--load-option", "freq=banana"),
         ("freq='banana' is not a pandas frequency",)),
    Case("options", "unknown-cost", _command(*FORECAST, "--cost", "nonsense"),
         ("domain 'timeseries' has no cost 'nonsense'; available: ['smoothness']",)),
    Case("options", "cost-scale-nan", _command(*FORECAST, "--cost", "smoothness=nan"),
         ("--cost 'smoothness=nan'", "not finite")),
    Case("options", "unknown-solver", _command(*FORECAST, "--solver", "rk99"), ("unknown solver 'rk99'",)),
    Case("options", "draws-below-samples", _command(*FORECAST, "--draws", "1"),
         ("draws (1) must be at least samples (2)",)),
    Case("options", "antithetic-odd", _command(*FORECAST[:-4], "--samples", "3", "--antithetic"),
         ("samples must be even, got 3",)),
    Case("options", "threads-negative", _command(*FORECAST, "--threads", "-1"), ("Invalid value for '--threads'",)),
    Case("options", "threads-absurd", _command(*FORECAST, "--threads", "100000"),
         ("--threads 100000: at most", "per CPU")),
    Case("options", "out-type", _command(*FORECAST[:-5], "OUT.xyz"), ("use a .csv, .csv.gz or .parquet file name",)),
    Case("options", "plot-type", _command(*FORECAST, "--plot", "OUT"), ("given as plot): a plot is an image",)),
    Case("options", "out-a-folder", _command(*FORECAST[:-5], "MODEL"), ("it is a folder; give a file name in it",)),
    Case("options", "unknown-domain", _command("train", "--domain", "nope", "--data", "DATA", "--out", "NEW"),
         ("no domain named 'nope'", "trajdiff plugins")),
    Case("options", "encoder-option-zero", _command(*TRAIN[:-1], "patch=0"),
         ("patch must be a positive integer (rows per token), got 0",)),
    Case("options", "encoder-option-unknown", _command(*TRAIN, "--encoder-option", "colour=blue"),
         ("does not accept the encoder options", "'colour'")),
    Case("options", "unknown-recipe", _command(*TRAIN, "--recipe", "nope"), ("has no training recipe 'nope'",)),
    Case("options", "unknown-device", _command(*TRAIN, "--device", "tpu"), ("unknown training device 'tpu'",)),
    Case("options", "minutes-infinite", _command(*TRAIN, "--minutes", "inf"),
         ("minutes must be a finite number > 0", "got inf")),
    Case("options", "batch-beyond-memory", _command(*TRAIN, "--batch-size", "100000000000"),
         ("out of memory", "lower --batch-size")),
    Case("options", "resume-nothing", _command(*TRAIN, "--resume"), ("--resume",)),
    Case("options", "dataset-unknown", _command("datasets", "make", "nope"), ("no data set named 'nope'",)),
    Case("options", "dataset-steps", _command("datasets", "make", "lorenz", "--out", "OUT", "--steps", "5"),
         ("lorenz does not take --steps",)),
]


# ------------------------------------------------------------------------------------------------- plugins

SUPPORT = """
import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.plugins.spec import Domain, Encoder, ModelDefaults


class Scale(Encoder):
    dim = 1

    def fit(self, episodes):
        return self

    def encode(self, window, history):
        return np.asarray(window, dtype=np.float32), {}

    def decode(self, x, frame):
        return np.asarray(x)

    def state_dict(self):
        return {}


class Toy(Domain):
    name = "toy"
    summary = "a toy"

    def __init__(self, encoder=None):
        self.encoder = encoder

    def load(self, source, **options):
        t = np.arange(40.0)[:, None]
        return Episodes([np.sin(t / 3), np.cos(t / 4)], ["v"])

    def make_encoder(self, **options):
        return Scale()

    def encoder_from_state(self, state):
        return Scale()

    def defaults(self):
        return ModelDefaults(history=4, horizon=4, steps=2, batch_size=8,
                             network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})

    def with_encoder(self, encoder):
        return type(self)(encoder)
"""
TOY = """
from trajdiff.plugins.spec import DatasetCard, hookimpl

from corpus_support import Toy


class {cls}(Toy):
    summary = "the toy of {package}"


@hookimpl
def trajdiff_domains():
    return [{cls}()]


@hookimpl
def trajdiff_costs(domain):
    return {{"shared": lambda x: x.sum(dim=(1, 2))}} if domain.name == "toy" else None


@hookimpl
def trajdiff_datasets():
    return [DatasetCard(name="toyset", domain="toy", summary="toys", make=lambda out: out)]
"""
PLUGINS = {  # module -> (distribution, entry points, source)
    "corpus_support": ("", "", SUPPORT),
    "toy_a": ("toy-a", "toy_a = toy_a", TOY.format(cls="ToyA", package="toy-a")),
    "toy_b": ("toy-b", "toy_b = toy_b", TOY.format(cls="ToyB", package="toy-b")),
    "shadow": ("shadow-plugin", "shadow = shadow", """
from trajdiff.plugins.spec import hookimpl

from corpus_support import Toy


class Shadow(Toy):
    name = "timeseries"


@hookimpl
def trajdiff_domains():
    return [Shadow()]
"""),
    "stringy": ("stringy-plugin", "stringy = stringy", """
from trajdiff.plugins.spec import hookimpl


@hookimpl
def trajdiff_domains():
    return "stringy"
"""),
    "dupe_one": ("dupe-one", "dupe = dupe_one", "x = 1\n"),
    "dupe_two": ("dupe-two", "dupe = dupe_two", "x = 2\n"),
    "broken": ("broken-plugin", "broken = no_such_module_anywhere", ""),
    "flaky": ("flaky-plugin", "flaky = flaky", """
from trajdiff.plugins.spec import hookimpl

from corpus_support import Toy


def parse(source):
    return float(str(source).rsplit("/", 1)[-1])


class Flaky(Toy):
    name = "flaky"

    def load(self, source, **options):
        return parse(source)


@hookimpl
def trajdiff_domains():
    return [Flaky()]
"""),
}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus' plugin packages as installed: modules plus dist-info folders with their entry points."""
    site = tmp_path_factory.mktemp("site")
    for module, (distribution, entry, source) in PLUGINS.items():
        if source:
            _write(site / f"{module}.py", textwrap.dedent(source))
        if distribution:
            info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
            info.mkdir()
            _write(info / "METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
            _write(info / "entry_points.txt", f"[trajdiff.plugins]\n{entry}\n")
    return site


def _toy_model(package: str = "toy-a") -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        api.train(f"{package}:toy", "any", tmp / "toy", steps=2, progress=False)
        return tmp / "toy"

    return build


def _with_toy(*args: str, package: str | None = None) -> Callable[[World, Path], list[str]]:
    def build(world: World, tmp: Path) -> list[str]:
        model = _toy_model()(tmp)
        if package:
            _config(["extra", "package"], package)(model)
        return [str(model) if arg == "TOY" else str(tmp / "f.csv") if arg == "OUT" else arg for arg in args]

    return build


PLUGIN_CASES = [
    Case("plugins", "domain-collision", _command("train", "--domain", "toy", "--data", "DATA", "--out", "NEW"),
         ("domain 'toy' is provided by plugin 'toy_a' (package toy-a 1.0) and plugin 'toy_b' (package toy-b 1.0)",
          "pick one as 'toy-a:toy' or 'toy-b:toy'"), plugins=True),
    Case("plugins", "builtin-collision", _command("train", "--domain", "timeseries", "--data", "DATA", "--out", "NEW"),
         ("domain 'timeseries' is provided by", "(package trajdiff", "(package shadow-plugin 1.0)"), plugins=True),
    Case("plugins", "unknown-package", _command("train", "--domain", "acme:toy", "--data", "DATA", "--out", "NEW"),
         ("no domain 'toy' from a package or plugin called 'acme'",), plugins=True),
    Case("plugins", "dataset-collision", _command("datasets", "make", "toyset", "--out", "OUT"),
         ("toyset", "toy-a", "toy-b"), plugins=True),
    Case("plugins", "cost-collision", _with_toy("forecast", "--model", "TOY", "--data", "any", "--out", "OUT",
                                                "--cost", "shared"), ("shared", "toy-a", "toy-b"), plugins=True),
    Case("plugins", "model-of-another-package", _with_toy("forecast", "--model", "TOY", "--data", "any", "--out",
                                                          "OUT", package="toy-c"),
         ("from package toy-c", "not installed"), plugins=True),
    Case("plugins", "hook-wrong-type", _command("train", "--domain", "stringy", "--data", "DATA", "--out", "NEW"),
         ("plugin 'stringy' (package stringy-plugin): trajdiff_domains must return a list of Domain instances, "
          "not str",), plugins=True),
    Case("plugins", "import-failure", _command("train", "--domain", "broken", "--data", "DATA", "--out", "NEW"),
         ("plugin 'broken' (package broken-plugin): failed to import no_such_module_anywhere",), plugins=True),
    Case("plugins", "entry-name-clash", _command("plugins"), ("another plugin named 'dupe'",), code=0, repair=True,
         plugins=True),
    Case("plugins", "plugin-raises", _command("train", "--domain", "flaky", "--data", "DATA", "--out", "NEW"),
         ("error: plugin 'flaky' (package flaky-plugin 1.0) failed in flaky.py:", "ValueError: could not convert "
          "string to float: 'data.csv'", "rerun with --debug"), code=3, plugins=True),
]

CASES = [*CSV, *AIS, *ETH_UCY, *BVH, *MODEL_FOLDER, *OPTIONS, *PLUGIN_CASES]


@pytest.mark.parametrize("case", CASES, ids=[f"{case.kind}:{case.name}" for case in CASES])
def test_bad_input(case: Case, world: World, plugin_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                   ) -> None:
    monkeypatch.delenv("TRAJDIFF_DEBUG", raising=False)
    if case.plugins:
        monkeypatch.syspath_prepend(str(plugin_site))
        reset_plugins()
    try:
        args = case.build(world, tmp_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = CliRunner().invoke(app, args)
    finally:
        if case.plugins:
            reset_plugins()
    output = result.output
    assert "Traceback" not in output, output
    assert result.exit_code == case.code, output
    if case.repair:
        said = output + "\n".join(str(w.message) for w in caught)
        for fragment in case.expect:
            assert fragment in said, (fragment, said)
        return
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and "internal error" not in lines[0], lines[0]
    for fragment in case.expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "f.csv").exists()  # nothing written
