"""The command line end to end, with the example third-party plugin installed as a real distribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAJDIFF = str(Path(sys.executable).with_name("trajdiff"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`pip install`s examples/plugin_template into a private folder (a real dist-info with entry points)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "examples" / "plugin_template")], check=True,
                   capture_output=True)
    return target


def run(args: list[str], site: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", **env)
    if site is not None:
        environment["PYTHONPATH"] = str(site)
    return subprocess.run([TRAJDIFF, *args], capture_output=True, text=True, env=environment, timeout=600)


def test_help_is_there_for_every_command() -> None:
    result = run(["--help"])
    assert result.returncode == 0
    for command in ("plugins", "datasets", "train", "forecast", "evaluate", "calibrate", "demo",
                    "plan", "sample"):  # the last two come from the rl and motion plugins
        assert command in result.stdout
    assert "--domain" in run(["train", "--help"]).stdout


def test_plugins_lists_builtin_and_third_party_contributions(site) -> None:
    result = run(["plugins"], site)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "timeseries" in out and "[timeseries from trajdiff]" in out
    assert "pendulum" in out and "[pendulum from trajdiff-pendulum]" in out
    assert "total_variation" in out and "(domain timeseries)" in out
    assert "pendulum-damped" in out
    disabled = run(["plugins"], site, TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "trajdiff-pendulum" not in disabled.stdout and "pendulum-damped" not in disabled.stdout
    assert "timeseries" in disabled.stdout
    assert "third-party plugins not loaded" in disabled.stdout


def test_train_forecast_evaluate_with_a_third_party_domain(site, tmp_path) -> None:
    data = tmp_path / "pendulum.csv"
    made = run(["datasets", "make", "pendulum-damped", "--out", str(data)], site)
    assert made.returncode == 0, made.stderr
    model = tmp_path / "model"
    trained = run(["train", "--domain", "pendulum", "--data", str(data), "--out", str(model), "--steps", "60"], site)
    assert trained.returncode == 0, trained.stderr
    assert "trained pendulum model for 60 steps" in trained.stdout
    config = json.loads((model / "config.json").read_text())
    assert config["extra"]["domain"] == "pendulum" and config["extra"]["package"] == "trajdiff-pendulum"

    out, plot = tmp_path / "forecast.csv", tmp_path / "forecast.png"
    forecast = run(["forecast", "--model", str(model), "--data", str(data), "--samples", "3", "--out", str(out),
                    "--plot", str(plot)], site)
    assert forecast.returncode == 0, forecast.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["sample", "entity", "time", "step", "theta", "omega"]
    assert len(table) == 3 * 40 * 20  # samples x runs x horizon
    assert table["time"].min() > 9.9  # continues after the last logged time (199 * 0.05)
    assert plot.stat().st_size > 10_000

    metrics = tmp_path / "metrics.json"
    evaluated = run(["evaluate", "--model", str(model), "--data", str(data), "--samples", "4", "--out", str(metrics),
                     "--max-windows", "40"], site)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "angle_mae" in evaluated.stdout
    result = json.loads(metrics.read_text())
    assert result["windows"] == 40 and result["metrics"]["angle_mae"] >= 0

    parquet = tmp_path / "forecast.parquet"
    assert run(["forecast", "--model", str(model), "--data", str(data), "--samples", "2", "--out", str(parquet)],
               site).returncode == 0
    assert len(pd.read_parquet(parquet)) == 2 * 40 * 20

    wrong_cost = run(["forecast", "--model", str(model), "--data", str(data), "--out", str(out),
                      "--cost", "total_variation=1"], site)
    assert wrong_cost.returncode == 2 and "has no cost 'total_variation'" in wrong_cost.stderr


def test_user_errors_are_messages_not_tracebacks(site, tmp_path) -> None:
    missing = run(["train", "--domain", "nope", "--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "m")])
    assert missing.returncode == 2 and "no domain named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_model = run(["forecast", "--model", str(tmp_path / "absent"), "--data", str(tmp_path / "x.csv"),
                    "--out", str(tmp_path / "f.csv")])
    assert no_model.returncode == 2 and "absent" in no_model.stderr and "Traceback" not in no_model.stderr
    disabled = run(["train", "--domain", "pendulum", "--data", "x.csv", "--out", str(tmp_path / "m")], site,
                   TRAJDIFF_DISABLE_PLUGIN_AUTOLOAD="1")
    assert disabled.returncode == 2 and "no domain named 'pendulum'" in disabled.stderr
    real = run(["datasets", "make", "etth1", "--out", str(tmp_path / "e.csv")])
    assert real.returncode == 2 and "real data set" in real.stderr


def test_demo_runs_end_to_end_and_beats_its_baselines(tmp_path) -> None:
    """The README's demo in its quick form: Lorenz series generated, a timeseries model trained and evaluated
    through the api, its scores printed beside the naive baselines on the same windows, and better than them."""
    result = run(["demo", "--quick", "--out", str(tmp_path), "--threads", "1"])
    assert result.returncode == 0, result.stderr
    assert "Training 200 steps: " in result.stdout  # and how long that will take
    scores = json.loads((tmp_path / "evaluation.json").read_text())  # what api.evaluate returned to the demo
    model = scores["metrics"]["mse_median"]
    naive = {name: scores["baselines"][name]["mse_median"] for name in ("last_value", "seasonal_naive")}
    assert all(model < value for value in naive.values()), (model, naive)
    assert all(scores["ratios"][name]["mse_median"] < 1.0 for name in naive)
    printed = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("  ")}
    assert printed["model"][1] == f"{model:.4f}"  # the table shows the returned numbers
    for name, value in naive.items():
        assert printed[name][1] == f"{value:.4f}"
    assert "linear_base" in printed
    assert (tmp_path / "forecast.png").stat().st_size > 20_000
    assert (tmp_path / "model" / "config.json").exists()


def test_timeseries_through_the_cli_with_loader_options(tmp_path) -> None:
    from trajdiff.plugins.timeseries.chaotic import write_chaotic_dataset

    data = write_chaotic_dataset(tmp_path / "lorenz.csv", system="lorenz", length=200, count=2)
    model = tmp_path / "model"
    trained = run(["train", "--domain", "timeseries", "--data", str(data), "--out", str(model), "--steps", "20",
                   "--history", "32", "--horizon", "32", "--load-option", "split_columns=true"])
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "forecast.csv"
    forecast = run(["forecast", "--model", str(model), "--data", str(data), "--samples", "2", "--out", str(out),
                    "--load-option", "split_columns=true"])
    assert forecast.returncode == 0, forecast.stderr
    table = pd.read_csv(out)
    assert sorted(set(table["entity"])) == sorted(f"lorenz-{s}:{c}" for s in "01" for c in "xyz")
    assert list(table.columns) == ["sample", "entity", "time", "step", "value"] and len(table) == 2 * 6 * 32
    bad = run(["train", "--domain", "timeseries", "--data", str(data), "--out", str(model), "--load-option", "oops"])
    assert bad.returncode == 2 and "write KEY=VALUE" in bad.stderr
    unknown = run(["train", "--domain", "timeseries", "--data", str(data), "--out", str(tmp_path / "m2"),
                   "--load-option", "colour=blue"])
    assert unknown.returncode == 2 and "unknown time-series loader option(s) ['colour']" in unknown.stderr
    patched = tmp_path / "patched"
    trained = run(["train", "--domain", "timeseries", "--data", str(data), "--out", str(patched), "--steps", "5",
                   "--history", "32", "--horizon", "32", "--encoder-option", "patch=8"])
    assert trained.returncode == 0, trained.stderr
    config = json.loads((patched / "config.json").read_text())
    assert config["extra"]["encoder"]["patch"] == 8 and config["extra"]["defaults"]["encoder"]["patch"] == 8
    bad = run(["train", "--domain", "timeseries", "--data", str(data), "--out", str(patched), "--encoder-option",
               "patch"])
    assert bad.returncode == 2 and "--encoder-option 'patch': write KEY=VALUE" in bad.stderr
    unknown = run(["train", "--domain", "timeseries", "--data", str(data), "--out", str(tmp_path / "m3"),
                   "--encoder-option", "colour=blue"])
    assert unknown.returncode == 2 and "domain 'timeseries' does not accept the encoder options" in unknown.stderr
    assert "colour" in unknown.stderr


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_command_line_waits_passively_for_openmp_work_unless_told(given, expected) -> None:
    """Spinning OpenMP threads slow every command by tens of times while another process keeps a core busy: the
    command line sets a passive wait before torch loads its runtime, and keeps a policy the user chose."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    # records the policy at the moment torch is first imported (when its OpenMP runtime reads it)
    code = ("import os, sys\n"
            "seen = []\n"
            "class Watch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' and not seen:\n"
            "            seen.append(os.environ.get('OMP_WAIT_POLICY', 'unset'))\n"
            "sys.meta_path.insert(0, Watch())\n"
            "import trajdiff.cli, torch\n"
            "print(seen[0])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [expected]
