"""Training is reproducible and resumable from the command line, with real processes: the same data,
options, seed and thread count give bit-identical weights; a run killed with SIGKILL and resumed equals
the uninterrupted run bit for bit; resuming what is not there, or with other data, and writing over a
model without --overwrite are one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

TRAJDIFF = [sys.executable, "-m", "trajdiff.cli"]
STEPS = 300  # checkpoints every 100 steps (a tenth of the steps, at least 100)


def _data(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(600)
    frame = pd.DataFrame({"time": pd.date_range("2020-01-01", periods=600, freq="h"),
                          "a": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(600),
                          "b": np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(600)})
    frame.to_csv(path, index=False)
    return path


def _train(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*TRAJDIFF, "train", "--domain", "timeseries", "--data", str(data), "--out", str(out),
               "--steps", str(STEPS), "--history", "32", "--horizon", "16", "--batch-size", "32",
               "--encoder-option", "patch=8", "--seed", "1", "--threads", "1", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _weights(model: Path) -> str:
    return hashlib.sha256((model / "weights.safetensors").read_bytes()
                          + (model / "ema.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("repro")
    data = _data(root / "data.csv", 0)
    code, output = _finish(_train(data, root / "first"))
    assert code == 0, output
    return data, root / "first"


def test_same_seed_gives_bit_identical_weights(uninterrupted, tmp_path: Path) -> None:
    data, first = uninterrupted
    code, output = _finish(_train(data, tmp_path / "second"))
    assert code == 0, output
    assert _weights(tmp_path / "second") == _weights(first)


def test_a_run_killed_and_resumed_equals_the_uninterrupted_one(uninterrupted, tmp_path: Path) -> None:
    data, first = uninterrupted
    out = tmp_path / "killed"
    process = _train(data, out)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # wait for the first checkpoint, then kill without warning
        metrics = out / "metrics.json"
        if metrics.is_file() and json.loads(metrics.read_text()).get("step", 0) >= 100:
            break
        if process.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {process.communicate()[0]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = json.loads((out / "metrics.json").read_text())["step"]
    assert 100 <= stopped_at < STEPS, stopped_at
    code, output = _finish(_train(data, out, "--resume"))
    assert code == 0, output
    assert _weights(out) == _weights(first)


def test_resume_and_overwrite_mistakes_are_one_line_errors(uninterrupted, tmp_path: Path) -> None:
    data, first = uninterrupted
    cases = [
        (_train(data, tmp_path / "empty", "--resume"), "nothing to resume in"),
        (_train(_data(tmp_path / "other.csv", 5), first, "--resume"), "was trained on other data"),
        (_train(data, first), "already holds a model: pass --resume"),
        (_train(data, first, "--resume", "--overwrite"), "choose one of --resume"),
    ]
    for process, message in cases:
        code, output = _finish(process)
        assert code == 2 and message in output and "Traceback" not in output, output
        assert len(output.strip().splitlines()) == 1, output
    code, output = _finish(_train(data, first, "--overwrite", "--steps", "100"))
    assert code == 0 and "100 steps" in output, output
