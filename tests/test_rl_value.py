"""Value guidance for planning: a level-aware value of noisy plans fitted on a real data set's returns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trajdiff import api
from trajdiff.core.schedules import CosineVP
from trajdiff.core.value import ValueGuide, ValueNet, train_value
from trajdiff.errors import ConfigError

pytest.importorskip("gymnasium", reason="needs trajdiff[rl]")
pytest.importorskip("minari", reason="needs trajdiff[rl]")

from trajdiff.plugins.rl.collect import PENDULUM_ID, make_pendulum  # noqa: E402
from trajdiff.plugins.rl.envs import make_env  # noqa: E402
from trajdiff.plugins.rl.planner import Planner, PlannerConfig  # noqa: E402
from trajdiff.plugins.rl.rollout import run_planner  # noqa: E402
from trajdiff.plugins.rl.value import fit_value, load_value, value_windows  # noqa: E402


def test_value_net_learns_a_return_from_noisy_windows() -> None:
    """Return = mean of feature 0 after the first token: fitted at every level, better when cleaner."""
    torch.manual_seed(0)
    x = torch.randn(2000, 6, 2)
    returns = x[:, 1:, 0].mean(dim=1)
    net = ValueNet(6, 2, width=64)
    fit = train_value(net, x, returns, CosineVP(), steps=600, batch_size=128, lr=3e-3)
    assert fit.steps == 600 and fit.validation_loss is not None and fit.validation_loss < 0.8
    with torch.no_grad():
        clean = net.returns(x[-200:], torch.zeros(200, 6))
    assert float(torch.corrcoef(torch.stack([clean, returns[-200:]]))[0, 1]) > 0.9
    with pytest.raises(ConfigError, match="scale must be >= 0"):
        ValueGuide(net, -1.0)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("minari-pendulum-value")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    try:
        make_pendulum(30, root=root, episodes_for_scores=2, progress=False)
        model = tmp_path_factory.mktemp("pendulum-value-model")
        torch.manual_seed(0)
        api.train("rl", PENDULUM_ID, model, steps=200, history=1, horizon=15, encoder={"skip": 1}, lr=1e-3,
                  progress=False, network={"kind": "transformer", "dim": 4, "width": 32, "depth": 1, "heads": 4})
        fit_value(model, api.load_model(model), PENDULUM_ID, steps=300)
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
    return root, model


def test_value_targets_are_discounted_returns_to_go(pendulum, monkeypatch) -> None:
    root, model = pendulum
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    import minari

    episode = next(minari.load_dataset(PENDULUM_ID).iterate_episodes())
    x, y = value_windows(api.load_model(model), PENDULUM_ID, gamma=0.9, max_episodes=1)
    assert x.shape == (200 - 16 + 1, 16, 4)
    expected = sum(0.9**t * r for t, r in enumerate(episode.rewards[3:]))
    np.testing.assert_allclose(y[3], expected, rtol=1e-5)


def test_value_guidance_raises_the_value_of_plans_and_keeps_the_present(pendulum, monkeypatch, tmp_path) -> None:
    root, model = pendulum
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    value = load_value(model)
    loaded = api.load_model(model)
    values = {}
    for scale in (0.0, 1.0):
        config = PlannerConfig(nfe=4, warm_nfe=2, replan_every=1, candidates=8, value_guidance=scale, seed=3)
        env = make_env("Pendulum-v1")
        obs, _ = env.reset(seed=11)
        planner = Planner(loaded, env.observation_space, env.action_space, config, value=value)
        rows = planner.plan(obs)
        np.testing.assert_allclose(rows[0, :3], obs, atol=1e-6)  # the present is inpainted exactly
        with torch.no_grad():
            tokens = torch.from_numpy(planner.plan_tokens[None]).float()
            values[scale] = float(value.returns(tokens, torch.zeros(1, tokens.shape[1])))
        env.close()
    assert values[1.0] > values[0.0]
    result = run_planner(loaded, "Pendulum-v1", episodes=1, max_steps=20, value=value,
                         config=PlannerConfig(nfe=4, warm_nfe=2, replan_every=1, candidates=2, value_guidance=0.5))
    assert result["steps"] == [20] and result["ms_per_plan_warm"] is not None
    with pytest.raises(ConfigError, match="no value function"):
        load_value(tmp_path)


def test_command_line_fits_a_value_and_plans_with_it(pendulum, monkeypatch, tmp_path) -> None:
    import shutil

    from typer.testing import CliRunner

    from trajdiff.cli import app

    root, shared = pendulum
    model = tmp_path / "model"
    shutil.copytree(shared, model)  # the module's value stays as fitted
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    runner = CliRunner()
    fitted = runner.invoke(app, ["fit-value", "--model", str(model), "--steps", "20"])
    assert fitted.exit_code == 0, fitted.output
    assert f"windows of {PENDULUM_ID}: 20 steps" in fitted.output
    planned = runner.invoke(app, ["plan", "--model", str(model), "--env", "Pendulum-v1", "--episodes", "1",
                                  "--nfe", "2", "--warm-nfe", "1", "--candidates", "2", "--guide", "value",
                                  "--scale", "0.5", "--out", str(tmp_path / "plan.json")])
    assert planned.exit_code == 0, planned.output
    import json

    assert json.loads((tmp_path / "plan.json").read_text())["planner"]["value_guidance"] == 0.5
    wrong = runner.invoke(app, ["plan", "--model", str(model), "--env", "Pendulum-v1", "--guide", "reward"])
    assert wrong.exit_code == 2 and "--guide must be 'none' or 'value'" in wrong.output
    (model / "value.json").unlink()
    no_value = runner.invoke(app, ["plan", "--model", str(model), "--env", "Pendulum-v1", "--guide", "value"])
    assert no_value.exit_code == 2 and "no value function" in no_value.output


def test_value_and_inverse_files_round_trip_and_fail_in_one_line(tmp_path) -> None:
    """A stored value network loads back equal; a missing pair says how to fit one; a corrupt record or
    mismatched weights are a CheckpointError naming the folder, not a traceback."""
    from trajdiff.errors import CheckpointError
    from trajdiff.plugins.rl.inverse import InverseDynamics, has_inverse, load_inverse, save_inverse
    from trajdiff.plugins.rl.value import save_value

    torch.manual_seed(0)
    net = ValueNet(4, 3, width=16, depth=1)
    save_value(tmp_path, net, {"config": net.config()})
    back = load_value(tmp_path)
    x, k = torch.randn(5, 4, 3), torch.rand(5)
    assert torch.equal(back(x, k), net.eval()(x, k))
    with pytest.raises(ConfigError, match="has no inverse dynamics .*trajdiff fit-inverse"):
        load_inverse(tmp_path)
    assert not has_inverse(tmp_path)
    (tmp_path / "value.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="value.json is not valid JSON"):
        load_value(tmp_path)
    other = ValueNet(4, 3, width=8, depth=1)
    (tmp_path / "value.json").write_text(json.dumps({"config": other.config()}))
    with pytest.raises(CheckpointError, match=f"cannot read the value function in {tmp_path}"):
        load_value(tmp_path)
    inverse = InverseDynamics(state_dim=3, action_dim=2, width=8, depth=1)
    save_inverse(tmp_path, inverse, {"config": inverse.config()})
    assert has_inverse(tmp_path) and isinstance(load_inverse(tmp_path), InverseDynamics)
