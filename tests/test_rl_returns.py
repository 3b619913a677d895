"""Return conditioning (Decision Diffuser): per-window return conditions, classifier-free guidance towards a target
return, inverse dynamics for actions, and the command line's checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trajdiff import api
from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.core.data import Episodes
from trajdiff.core.guidance import ClassifierFree
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.inverse import InverseDynamics, train_inverse
from trajdiff.plugins.rl.returns import returns_to_go, window_returns

TINY_MLP = {"kind": "window_mlp", "dim": None, "length": None, "width": 64, "depth": 2}


def _toy_episodes(count: int = 41, steps: int = 40) -> Episodes:
    """Episode e pushes with an action near c_e (from -1 to 1) and earns that action as reward: the return is a
    known, increasing function of the behaviour."""
    rng = np.random.default_rng(0)
    sequences, meta = [], []
    for c in np.linspace(-1.0, 1.0, count):
        actions = np.clip(c + 0.1 * rng.standard_normal(steps), -1.0, 1.0)
        states = rng.uniform(-1.0, 1.0) + np.concatenate([[0.0], np.cumsum(0.1 * actions)[:-1]])
        sequences.append(np.stack([states, actions], axis=1))
        meta.append({"rewards": actions.copy()})
    return Episodes(sequences, ["observation[0]", "action[0]"], meta=meta)


def test_window_conditions_are_normalized_discounted_returns_to_go() -> None:
    episodes = _toy_episodes(count=3, steps=10)
    windows = np.array([[0, 0], [1, 4], [2, 0], [2, 9]])
    values, info = window_returns(episodes, windows, gamma=0.9)
    raw = [returns_to_go(episodes.meta[e]["rewards"], 0.9)[s] for e, s in windows]
    expected = (np.asarray(raw) - min(raw)) / (max(raw) - min(raw))
    np.testing.assert_allclose(values[:, 0], expected, rtol=1e-5)
    assert values.min() == 0.0 and values.max() == pytest.approx(1.0)
    assert info["low"] == pytest.approx(min(raw)) and info["gamma"] == 0.9 and info["name"] == "return"
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0]), 0.5), [1 + 1 + 0.75, 2 + 1.5, 3.0])
    bare = Episodes(episodes.sequences, episodes.columns)
    with pytest.raises(DataError, match="has no rewards"):
        window_returns(bare, windows)


def test_a_return_conditioned_model_plans_higher_returns_for_a_higher_target(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "model"
    api.train("rl", _toy_episodes(), model, steps=400, history=1, horizon=3, encoder={"skip": 1}, lr=2e-3,
              recipe="window-mlp", network=TINY_MLP, condition="return", progress=False)
    loaded = api.load_model(model)
    assert loaded.defaults.condition == "return" and loaded.model.network.cond_dim == 1
    row = np.zeros(2)
    present = torch.from_numpy(loaded.encoder.encode(np.repeat(row[None], 4, axis=0), 1)[0]).float()
    observed = torch.tensor([True, False, False, False])
    planned = {}
    for target in (0.0, 1.0):
        drawn = sample_conditional(loaded.model.denoiser(ema=False), loaded.model.schedule,
                                   Known(present[None], observed), samples=32, nfe=8, solver="ddim",
                                   guides=[ClassifierFree(1.5)], cond=torch.tensor([[target]]),
                                   generator=torch.Generator().manual_seed(0))[:, 0].numpy()
        rows = loaded.encoder.decode(drawn, {"rows": 4, "first": row})
        planned[target] = float(rows[:, :3, 1].mean())  # the planned actions, which are the rewards here
    assert planned[1.0] > planned[0.0] + 1.0, planned
    with pytest.raises(ConfigError, match="conditioned per window"):
        api.distill(model, tmp_path / "student", steps=1, progress=False)
    with pytest.raises(ConfigError, match="no per-window condition 'reward'"):
        api.train("rl", _toy_episodes(3), tmp_path / "other", steps=1, history=1, horizon=3,
                  encoder={"skip": 1}, condition="reward", progress=False)


def test_inverse_dynamics_recover_held_out_actions_better_than_the_mean_action() -> None:
    rng = np.random.default_rng(1)
    states = rng.standard_normal((3000, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (3000, 2)).astype(np.float32)
    pushed = np.stack([np.tanh(actions[:, 0]), actions[:, 1] * (1 + 0.5 * states[:, 2]), actions.sum(1)], axis=1)
    next_states = states + 0.1 * pushed
    net, record = train_inverse(states, next_states, actions, np.arange(3000) // 100, steps=600, width=64, seed=0)
    assert record["held_out"] == 300 and record["steps"] == 600
    assert record["held_out_mse"] < 0.2 * record["mean_action_mse"], record
    assert isinstance(net, InverseDynamics) and net.act(states[0], next_states[0]).shape == (2,)


pytest.importorskip("gymnasium", reason="needs trajdiff[rl]")
pytest.importorskip("minari", reason="needs trajdiff[rl]")


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny return-conditioned Pendulum planner with inverse dynamics, and an unconditioned one."""
    from trajdiff.plugins.rl.collect import PENDULUM_ID, make_pendulum
    from trajdiff.plugins.rl.inverse import fit_inverse

    root = tmp_path_factory.mktemp("minari-pendulum-returns")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    try:
        make_pendulum(10, root=root, episodes_for_scores=1, progress=False)
        conditioned, plain = tmp_path_factory.mktemp("conditioned"), tmp_path_factory.mktemp("plain")
        for out, condition in ((conditioned, "return"), (plain, None)):
            api.train("rl", PENDULUM_ID, out, steps=30, history=1, horizon=3, encoder={"skip": 1}, recipe="window-mlp",
                      network=TINY_MLP, condition=condition, progress=False)
        fit_inverse(conditioned, PENDULUM_ID, steps=30)
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
    return root, conditioned, plain


def test_command_line_plans_for_a_target_return_and_refuses_bad_input(pendulum, monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from trajdiff.cli import app

    root, conditioned, plain = pendulum
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    runner = CliRunner()
    fast = ["--env", "Pendulum-v1", "--episodes", "1", "--nfe", "2", "--warm-nfe", "2", "--candidates", "1",
            "--replan-every", "1"]
    out = tmp_path / "plan.json"
    planned = runner.invoke(app, ["plan", "--model", str(conditioned), *fast, "--target-return", "0.9",
                                  "--cfg-scale", "1.5", "--out", str(out)])
    assert planned.exit_code == 0, planned.output
    result = json.loads(out.read_text())
    assert result["controller"] == "inverse" and result["planner"]["target_return"] == 0.9
    assert result["planner"]["cfg_scale"] == 1.5 and result["steps"] == [200]
    cases = [
        (["plan", "--model", str(plain), *fast, "--target-return", "0.9"], "needs a return-conditioned model"),
        (["plan", "--model", str(conditioned), *fast, "--target-return", "0.9", "--cfg-scale", "-1"],
         "cfg_scale must be >= 0"),
        (["plan", "--model", str(plain), *fast, "--controller", "inverse"], "has no inverse dynamics"),
        (["train", "--domain", "rl", "--data", "trajdiff/pendulum/noisy-expert-v0", "--out", str(tmp_path / "m"),
          "--steps", "1", "--condition", "reward"], "no per-window condition 'reward'"),
    ]
    for args, message in cases:
        failed = runner.invoke(app, args)
        assert failed.exit_code == 2 and message in failed.output, (args, failed.output)
        assert "Traceback" not in failed.output
    fitted = runner.invoke(app, ["fit-inverse", "--model", str(plain), "--steps", "5"])
    assert fitted.exit_code == 0 and "held-out error" in fitted.output, fitted.output
