"""Locomotion data sets in the D4RL recipe: a shipped behaviour actor, medium and medium-replay sets, references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="needs trajdiff[rl]")
pytest.importorskip("minari", reason="needs trajdiff[rl]")
pytest.importorskip("mujoco", reason="the MuJoCo environments need the mujoco package")

from trajdiff.errors import ConfigError  # noqa: E402
from trajdiff.plugins.rl.behaviour import LAYERS, GaussianActor, evaluate  # noqa: E402
from trajdiff.plugins.rl.envs import make_env  # noqa: E402
from trajdiff.plugins.rl.loader import load_minari, open_dataset  # noqa: E402
from trajdiff.plugins.rl.locomotion import REFERENCE, make_locomotion  # noqa: E402


def _actor(seed: int = 0, obs: int = 11, act: int = 3, width: int = 8) -> GaussianActor:
    rng = np.random.default_rng(seed)
    shapes = {"latent.0": (width, obs), "latent.1": (width, width), "mu": (act, width), "log_std": (act, width)}
    weights = {}
    for name in LAYERS:
        weights[f"{name}.weight"] = 0.3 * rng.standard_normal(shapes[name])
        weights[f"{name}.bias"] = np.zeros(shapes[name][0])
    return GaussianActor(weights, -np.ones(act), np.ones(act), {"steps": "0", "eval_return": "n/a"})


def test_actor_round_trips_through_safetensors_and_stays_in_bounds(tmp_path) -> None:
    actor = _actor()
    actor.save(tmp_path / "a.safetensors")
    again = GaussianActor.load(tmp_path / "a.safetensors")
    obs = np.random.default_rng(1).standard_normal((5, 11))
    np.testing.assert_allclose(again(obs), actor(obs), atol=1e-5)
    sampled = actor(obs, np.random.default_rng(2))
    assert np.all(np.abs(sampled) <= 1.0) and not np.allclose(sampled, actor(obs))
    assert again.meta["steps"] == "0" and (tmp_path / "a.safetensors").stat().st_size < 5000


def test_medium_and_replay_sets_hold_their_steps_and_references(tmp_path, monkeypatch) -> None:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    policy = tmp_path / "hopper.safetensors"
    _actor().save(policy)
    dataset_id = make_locomotion("hopper", "medium", 300, policy=policy, root=root, episodes_for_scores=2,
                                 progress=False)
    dataset = open_dataset(dataset_id)
    assert dataset.total_steps >= 300
    metadata = dataset.storage.metadata
    assert metadata["ref_max_score"] == pytest.approx(REFERENCE["Hopper-v5"]["expert"])
    assert metadata["ref_min_score"] < 100  # a random hopper falls at once
    episodes = load_minari(dataset_id, join=False)
    assert episodes.columns[:11] == [f"observation[{i}]" for i in range(11)] and len(episodes.columns) == 14
    with pytest.raises(ConfigError, match="already exists"):
        make_locomotion("hopper", "medium", 10, policy=policy, root=root, progress=False)
    # a replay buffer of two real episodes (the second cut by the end of training)
    env = make_env("Hopper-v5")
    obs_list, next_list, actions, rewards, dones = [], [], [], [], []
    for episode, length in ((0, None), (1, 5)):
        obs, _ = env.reset(seed=episode)
        for t in range(1000):
            action = env.action_space.sample()
            nxt, reward, terminated, truncated, _ = env.step(action)
            obs_list.append(obs), next_list.append(nxt), actions.append(action), rewards.append(reward)
            dones.append(terminated or truncated)
            obs = nxt
            if dones[-1] or (length is not None and t + 1 == length):
                break
    env.close()
    first = dones.index(True) + 1
    np.savez(tmp_path / "replay.npz", observations=np.array(obs_list), next_observations=np.array(next_list),
             actions=np.array(actions), rewards=np.array(rewards), dones=np.array(dones, dtype=float),
             timeouts=np.zeros(len(dones)))
    replay_id = make_locomotion("hopper", "medium-replay", replay=tmp_path / "replay.npz", root=root,
                                episodes_for_scores=2, progress=False)
    replay = open_dataset(replay_id)
    lengths = [len(e.actions) for e in replay.iterate_episodes()]
    assert lengths == [first, 5]
    terminated = [bool(e.terminations[-1]) for e in replay.iterate_episodes()]
    assert terminated == [True, False]
    with pytest.raises(ConfigError, match="replay buffer .* does not exist"):
        make_locomotion("hopper", "medium-replay", replay=tmp_path / "none.npz", root=root, progress=False)
    with pytest.raises(ConfigError, match="unknown body"):
        make_locomotion("ant", "medium", 10, root=root)


def test_a_trained_policy_is_found_when_none_is_shipped(tmp_path) -> None:
    from trajdiff.plugins.rl.behaviour import POLICY_DIR, shipped_policy

    if (POLICY_DIR / "walker2d-v5-medium.safetensors").is_file():
        pytest.skip("a Walker2d policy is shipped")
    with pytest.raises(ConfigError, match="python -m trajdiff.plugins.rl.behaviour Walker2d-v5"):
        shipped_policy("Walker2d-v5", trained=tmp_path)
    _actor(obs=17, act=6).save(tmp_path / "walker2d-v5-medium.safetensors")
    assert shipped_policy("Walker2d-v5", trained=tmp_path) == tmp_path / "walker2d-v5-medium.safetensors"


def test_shipped_policies_are_small_and_score_as_recorded() -> None:
    from trajdiff.plugins.rl.behaviour import POLICY_DIR

    shipped = sorted(Path(POLICY_DIR).glob("*-medium.safetensors"))
    assert {path.name for path in shipped} >= {"halfcheetah-v5-medium.safetensors", "hopper-v5-medium.safetensors"}
    for path in shipped:
        assert path.stat().st_size < 1_000_000, path
        actor = GaussianActor.load(path)
        env_id = actor.meta["env_id"]
        returns = evaluate(actor, env_id, episodes=2, seed=123)
        expert = REFERENCE[env_id]["expert"]
        # the medium recipe: well above a random policy, well below the expert
        assert 0.1 * expert < np.mean(returns) < 0.7 * expert, (path, returns)


def test_behaviour_training_writes_actor_replay_and_record(tmp_path) -> None:
    pytest.importorskip("stable_baselines3", reason="training behaviour policies needs stable-baselines3")
    from trajdiff.plugins.rl.behaviour import train_behaviour

    summary = train_behaviour("Hopper-v5", tmp_path, target_return=1e9, max_steps=200, learning_starts=100,
                              eval_every=100, eval_episodes=1, progress=False)
    assert summary["steps"] == 200 and [p["steps"] for p in summary["curve"]] == [100, 200]
    actor = GaussianActor.load(tmp_path / "hopper-v5-medium.safetensors")
    assert actor.meta["steps"] == "200" and actor(np.zeros(11)).shape == (3,)
    replay = np.load(tmp_path / "hopper-v5-replay.npz")
    assert replay["observations"].shape == (200, 11) and replay["actions"].shape == (200, 3)
    more = train_behaviour("Hopper-v5", tmp_path / "more", target_return=1e9, max_steps=250, eval_every=50,
                           eval_episodes=1, progress=False, resume=tmp_path / "hopper-v5-sac")
    assert more["steps"] == 250 and [p["steps"] for p in more["curve"]] == [250]  # continued, not restarted
    assert np.load(tmp_path / "more" / "hopper-v5-replay.npz")["actions"].shape == (250, 3)
