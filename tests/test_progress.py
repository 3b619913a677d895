"""Progress everywhere (issue 15): long commands show a bar in a terminal and, when their output goes to a file
or a pipe, a plain line every few seconds with the count done, the loss and the time left."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajdiff.core.progress import Progress, progress_interval

TRAJDIFF = [sys.executable, "-m", "trajdiff.cli"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_a_line_every_interval() -> None:
    stream = io.StringIO()
    progress = Progress(10, "training", "step", stream=stream, interval=0.05)
    progress.update(1, loss="0.5000")
    assert stream.getvalue() == ""  # nothing before the first interval has passed
    time.sleep(0.06)
    progress.update(2, loss="0.2500")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert re.fullmatch(r"training: step 3/10 \(30%\), loss 0\.2500, [0-9.]+ step/s, 0:00 elapsed, about 0:0\d left",
                        lines[0]), lines[0]
    assert lines[1].startswith("training: step 3/10")  # the last line at close, as lines were written


def test_quiet_runs_and_terminals_get_no_lines() -> None:
    stream = io.StringIO()
    with Progress(10, "forecasting", "window", stream=stream, interval=60) as progress:
        progress.update(10)
    assert stream.getvalue() == ""  # finished within the interval: silent
    disabled = io.StringIO()
    with Progress(10, "training", stream=disabled, interval=0.0001, enabled=False) as progress:
        time.sleep(0.001)
        progress.update(5)
    assert disabled.getvalue() == ""
    terminal = _Terminal()
    with Progress(10, "training", stream=terminal, interval=0.0001) as progress:
        time.sleep(0.001)
        progress.update(5, loss="0.1")
    assert "\r" in terminal.getvalue() and "loss 0.1," not in terminal.getvalue()  # a tqdm bar, not lines


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJDIFF_PROGRESS_SECONDS", "2.5")
    assert progress_interval() == 2.5
    for bad in ("x", "-1", "0", "nan"):
        monkeypatch.setenv("TRAJDIFF_PROGRESS_SECONDS", bad)
        assert progress_interval() == 10.0


@pytest.mark.slow
def test_train_and_evaluate_print_progress_lines_into_a_pipe(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(400)
    pd.DataFrame({"time": pd.date_range("2020-01-01", periods=400, freq="h"),
                  "a": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(400),
                  "b": np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(400)}).to_csv(tmp_path / "d.csv",
                                                                                           index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAJDIFF_PROGRESS_SECONDS": "0.05"}
    train = subprocess.run([*TRAJDIFF, "train", "--domain", "timeseries", "--data", str(tmp_path / "d.csv"), "--out",
                            str(tmp_path / "m"), "--steps", "40", "--history", "16", "--horizon", "16",
                            "--batch-size", "8", "--encoder-option", "patch=8", "--threads", "1"],
                           capture_output=True, text=True, env=env, timeout=600)  # stdout and stderr are pipes
    assert train.returncode == 0, train.stderr
    lines = [line for line in train.stderr.splitlines() if line.startswith("training: ")]
    assert lines and "\r" not in train.stderr, train.stderr
    assert re.fullmatch(r"training: step \d+/40 \(\d+%\), loss \d+\.\d{4}, [0-9.]+ (step/s|s/step), "
                        r"\d+:\d\d elapsed(, about \d+:\d\d left)?", lines[0]), lines[0]
    assert lines[-1].startswith("training: step 40/40 (100%)")
    assert "trained timeseries model for 40 steps" in train.stdout
    evaluate = subprocess.run([*TRAJDIFF, "evaluate", "--model", str(tmp_path / "m"), "--data",
                               str(tmp_path / "d.csv"), "--samples", "64", "--nfe", "2", "--stride", "1",
                               "--threads", "1"],  # 369 windows, 64 (one batch of 4096 sequences) at a time
                              capture_output=True, text=True, env=env, timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr
    assert re.search(r"^evaluating: window \d+/369 \(\d+%\), .* elapsed", evaluate.stderr, re.M), evaluate.stderr
