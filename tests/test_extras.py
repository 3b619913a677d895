"""Extras: `pip install trajdiff` forecasts series, vessels and pedestrians; rl and motion say what to install.

These tests block the extras' modules (``sys.modules[name] = None`` makes an import fail as if the package were
absent), so they prove the minimal install's behaviour in any environment; `.ci/run` also runs the suite in a
real environment without extras.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from trajdiff.errors import ConfigError
from trajdiff.plugins.manager import Plugins

ROOT = Path(__file__).resolve().parents[1]
RL_MODULES = ("gymnasium", "gymnasium_robotics", "minari")
EXTRA_MODULES = (*RL_MODULES, "imageio")
RL_MESSAGE = "the rl domain needs gymnasium and minari: pip install 'trajdiff[rl]'"


@pytest.fixture
def without_extras(monkeypatch) -> None:
    for name in EXTRA_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    from trajdiff.plugins.rl import envs

    monkeypatch.setattr(envs, "_registered", False, raising=False)  # where registration is cached


def test_the_base_install_leaves_rl_and_motion_dependencies_to_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("gymnasium", "minari", "imageio"):
        assert heavy not in base
    extras = project["optional-dependencies"]
    assert {"gymnasium", "gymnasium-robotics", "minari[hdf5]", "imageio"} <= {
        spec.split(">")[0].split("=")[0] for spec in extras["rl"]}
    assert any(spec.startswith("imageio") for spec in extras["motion"])
    assert extras["all"] == ["trajdiff[rl,motion]"]
    assert "trajdiff[all,bench]" in extras["dev"] and any(spec.startswith("pytest") for spec in extras["dev"])


def test_without_the_rl_extra_the_plugin_lists_and_every_use_says_what_to_install(without_extras, tmp_path) -> None:
    from trajdiff.plugins.rl.envs import make_env
    from trajdiff.plugins.rl.rollout import run_planner

    registry = Plugins(autoload=False)
    assert {"rl", "motion", "timeseries", "vessel", "traffic"} <= set(registry.domains())
    assert registry.failures == []
    calls = [
        lambda: registry.domain("rl").load("trajdiff/pendulum/noisy-expert-v0"),
        lambda: registry.dataset("gym-pendulum").make(tmp_path),
        lambda: registry.dataset("pointmaze-umaze").make(tmp_path, steps=10),
        lambda: make_env("Pendulum-v1"),
        lambda: run_planner(SimpleNamespace(), "Pendulum-v1", episodes=1),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as error:
            call()
        assert str(error.value) == RL_MESSAGE


def test_without_the_rl_extra_the_plan_command_fails_with_one_line(without_extras, tmp_path) -> None:
    from typer.testing import CliRunner

    from trajdiff.cli import app

    result = CliRunner().invoke(app, ["plan", "--model", str(tmp_path), "--env", "Pendulum-v1"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {RL_MESSAGE}"


def test_without_the_motion_extra_gifs_say_what_to_install(without_extras, tmp_path) -> None:
    from trajdiff.plugins.motion.render import render_gif

    with pytest.raises(ConfigError, match=r"needs imageio to write GIFs: pip install 'trajdiff\[motion\]'"):
        render_gif(tmp_path / "x.gif", [], [], 30.0)


def test_a_process_without_any_extra_imports_lists_and_helps() -> None:
    """A fresh interpreter in which the extras cannot be imported: the CLI builds, lists every built-in domain
    with no failed plugin, and shows the rl and motion commands."""
    script = (
        "import sys\n"
        f"for name in {EXTRA_MODULES!r}: sys.modules[name] = None\n"
        "from trajdiff.cli import app\n"
        "app(['plugins'])\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD="1")
    listing = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert listing.returncode == 0, listing.stderr
    for domain in ("timeseries", "vessel", "traffic", "rl", "motion"):
        assert f"[{domain} from trajdiff]" in listing.stdout
    assert "Plugins that failed" not in listing.stdout
    helped = subprocess.run([sys.executable, "-c", script.replace("['plugins']", "['--help']")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert helped.returncode == 0 and "plan" in helped.stdout and "sample" in helped.stdout
