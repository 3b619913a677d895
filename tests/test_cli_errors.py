"""How a failing command ends: a third-party plugin's exception is one line naming the plugin, its file and the
message (exit 3); trajdiff's own unexpected exception is an internal error pointing to --debug (exit 3); --debug
or TRAJDIFF_DEBUG=1 adds the traceback; Ctrl-C is one line (exit 130). Real processes, a real installed plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trajdiff.cli import app
from trajdiff.cli_errors import FAULT, INTERRUPTED, USER_ERROR

TRAJDIFF = str(Path(sys.executable).with_name("trajdiff"))

PLUGIN = {
    "boom_plugin/__init__.py": """
        from trajdiff.plugins.spec import hookimpl

        from boom_plugin.domain import Boom


        @hookimpl
        def trajdiff_domains():
            return [Boom()]
    """,
    "boom_plugin/domain.py": """
        import numpy as np

        from trajdiff.plugins.spec import Domain, Encoder, ModelDefaults

        from boom_plugin.reader import read


        class Scale(Encoder):
            dim = 1

            def fit(self, episodes):
                return self

            def encode(self, window, history):
                return window, {}

            def decode(self, x, frame):
                return np.asarray(x)

            def state_dict(self):
                return {}


        class Boom(Domain):
            name = "boom"
            summary = "reads speeds"

            def load(self, source, **options):
                return read(source)

            def make_encoder(self, **options):
                return Scale()

            def encoder_from_state(self, state):
                return Scale()

            def defaults(self):
                return ModelDefaults(history=4, horizon=4, steps=2, batch_size=8,
                                     network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})
    """,
    "boom_plugin/reader.py": """
        import pandas as pd


        def read(source):
            table = pd.read_csv(source)
            return table["speed_knots"]  # the column this plugin expects, absent from the file
    """,
    "boom_plugin-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: boom-plugin\nVersion: 1.0\n",
    "boom_plugin-1.0.dist-info/entry_points.txt": "[trajdiff.plugins]\nboom = boom_plugin\n",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding boom-plugin as installed (package + dist-info with its entry point), and a data file."""
    root = tmp_path_factory.mktemp("site")
    for name, text in PLUGIN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    pd.DataFrame({"time": np.arange(40), "speed": np.linspace(0, 1, 40)}).to_csv(root / "data.csv", index=False)
    return root


def _run(args: list[str], site: Path, *, python: list[str] | None = None, **env: str
         ) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TRAJDIFF_DEBUG"}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=str(site), **env)
    return subprocess.run([*(python or [TRAJDIFF]), *args], capture_output=True, text=True, env=environment,
                          timeout=300, cwd=site)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _train_boom(site: Path) -> list[str]:
    return ["train", "--domain", "boom", "--data", str(site / "data.csv"), "--out", str(site / "model")]


def test_a_plugins_exception_is_one_line_naming_plugin_file_and_message(site: Path) -> None:
    result = _run(_train_boom(site), site)
    assert result.returncode == FAULT, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: plugin 'boom' (package boom-plugin 1.0) failed in boom_plugin/reader.py:")
    assert "KeyError: 'speed_knots'" in line  # the exception was raised inside pandas, called by the plugin
    assert "rerun with --debug or TRAJDIFF_DEBUG=1" in line
    assert not (site / "model").exists()


def test_debug_shows_the_traceback(site: Path) -> None:
    result = _run(["--debug", *_train_boom(site)], site)
    assert result.returncode == FAULT
    assert "Traceback (most recent call last)" in result.stderr
    assert 'boom_plugin/reader.py", line' in result.stderr
    last = _lines(result.stderr)[-1]
    assert last.startswith("error: plugin 'boom'") and "rerun with" not in last


RUNNER = """
    import sys

    import trajdiff.api.training as training
    from trajdiff.cli import main

    training.check_seed = lambda seed: "not a number"  # a bug: trajdiff's own code hands torch a string
    sys.argv[0] = "trajdiff"
    main()
"""


def test_an_unexpected_exception_in_trajdiff_is_an_internal_error(site: Path, tmp_path: Path) -> None:
    pd.DataFrame({"time": np.arange(60), "a": np.sin(np.arange(60) / 4)}).to_csv(tmp_path / "s.csv", index=False)
    (tmp_path / "runner.py").write_text(textwrap.dedent(RUNNER))
    args = ["train", "--domain", "timeseries", "--data", str(tmp_path / "s.csv"), "--out", str(tmp_path / "m")]
    result = _run(args, site, python=[sys.executable, str(tmp_path / "runner.py")])
    assert result.returncode == FAULT, result.stderr
    assert "Traceback" not in result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("internal error in trajdiff/api/training.py:"), lines[0]
    assert "ValueError" in lines[0] and "not a number" in lines[0]
    assert lines[0].endswith("this is a bug in trajdiff: please report it with the output of the same command "
                             "run with --debug")


def test_python_dash_m_goes_through_the_same_handling(site: Path) -> None:
    result = _run(_train_boom(site), site, python=[sys.executable, "-m", "trajdiff.cli"])
    assert result.returncode == FAULT and _lines(result.stderr)[0].startswith("error: plugin 'boom'")


def test_user_errors_interrupts_and_faults_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from trajdiff import api

    monkeypatch.delenv("TRAJDIFF_DEBUG", raising=False)
    data = tmp_path / "s.csv"
    pd.DataFrame({"time": np.arange(60), "a": np.sin(np.arange(60) / 4)}).to_csv(data, index=False)
    args = ["train", "--domain", "timeseries", "--data", str(data), "--out", str(tmp_path / "m")]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == INTERRUPTED and _lines(result.output) == ["interrupted"]

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(api, "train", broken)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == FAULT and "Traceback" not in result.output
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("internal error in trajdiff/cli.py:"), lines
    assert "ZeroDivisionError: division by zero" in lines[0]
    monkeypatch.setenv("TRAJDIFF_DEBUG", "1")  # the traceback, then the same line
    result = CliRunner().invoke(app, args)
    assert result.exit_code == FAULT and "Traceback (most recent call last)" in result.output
    assert _lines(result.output)[-1].startswith("internal error in trajdiff/cli.py:")
    assert _lines(result.output)[-1].endswith("please report it with the traceback above")
    monkeypatch.delenv("TRAJDIFF_DEBUG")

    monkeypatch.undo()
    result = CliRunner().invoke(app, ["train", "--domain", "no-such-domain", "--data", str(data), "--out",
                                      str(tmp_path / "m2")])
    assert result.exit_code == USER_ERROR and _lines(result.output)[0].startswith("error: ")
