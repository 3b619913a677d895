"""The rl domain: PointMaze geometry and expert, Minari data sets written to disk, encoding, planning, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trajdiff import api
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.collect import make_pendulum, make_pointmaze, pendulum_expert
from trajdiff.plugins.rl.encoder import StateActionEncoder
from trajdiff.plugins.rl.envs import make_env
from trajdiff.plugins.rl.loader import load_minari
from trajdiff.plugins.rl.mazes import ENV_IDS, EVAL_MAPS, MazeGrid, WaypointController
from trajdiff.plugins.rl.planner import Planner, PlannerConfig
from trajdiff.plugins.rl.rollout import normalized_score, run_planner
from trajdiff.plugins.rl.support import VisitedGrid

# The rl plugin imports without its extra (tests/test_extras.py checks what it says then); these tests use it.
pytest.importorskip("gymnasium", reason="needs trajdiff[rl]")
pytest.importorskip("minari", reason="needs trajdiff[rl]")


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(scope="module")
def umaze_small(tmp_path_factory) -> tuple[Path, str]:
    """3,000 noisy-expert steps of PointMaze UMaze written as a real Minari data set."""
    import os

    root = tmp_path_factory.mktemp("minari-umaze")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    dataset_id = make_pointmaze("umaze", 3000, root=root, episodes_for_scores=5, progress=False)
    if previous is None:
        os.environ.pop("MINARI_DATASETS_PATH")
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous
    return root, dataset_id


# --------------------------------------------------------------------------------- maze and expert


@pytest.mark.parametrize("maze", sorted(ENV_IDS))
def test_grid_matches_gymnasium_robotics_cells(maze: str) -> None:
    env = make_env(ENV_IDS[maze])
    real = env.unwrapped.maze
    grid = MazeGrid.from_map(real.maze_map, real.maze_size_scaling)
    for cell in grid.free_cells():
        np.testing.assert_allclose(grid.cell_to_xy(cell), real.cell_rowcol_to_xy(np.array(cell)))
        inside = grid.cell_to_xy(cell) + 0.3
        assert grid.xy_to_cell(inside) == tuple(real.cell_xy_to_rowcol(inside))
    env.close()


def test_shortest_path_goes_around_the_umaze_wall() -> None:
    grid = MazeGrid.from_map(EVAL_MAPS["umaze"])
    path = grid.shortest_path((3, 1), (1, 1))
    assert path == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert all(not grid.walls[c] for c in path)


def test_expert_reaches_the_fixed_goal_in_the_evaluation_maze() -> None:
    env = make_env(ENV_IDS["medium"], maze_map=EVAL_MAPS["medium"], continuing_task=True, reset_target=False)
    expert = WaypointController(MazeGrid.from_map(EVAL_MAPS["medium"]))
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        reached = False
        for _ in range(env.spec.max_episode_steps):
            obs, reward, _, truncated, info = env.step(expert(obs))
            reached = reached or info["success"]
            if truncated:
                break
        assert reached
    env.close()


# ------------------------------------------------------------------------------------ data sets


def test_pointmaze_dataset_follows_the_d4rl_recipe(umaze_small, monkeypatch) -> None:
    root, dataset_id = umaze_small
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    import minari

    dataset = minari.load_dataset(dataset_id)
    assert dataset.total_steps == 3000 and dataset.spec.env_spec.id == "PointMaze_UMaze-v3"
    meta = dataset.storage.metadata
    assert meta["ref_max_score"] > meta["ref_min_score"]  # expert vs random on the fixed-goal maze
    assert '"g"' in meta["eval_env_spec"] and '"reset_target": false' in meta["eval_env_spec"]
    episodes = list(dataset.iterate_episodes())
    for episode in episodes[:-1]:  # every episode but the last ends where its goal was reached
        final = episode.observations["achieved_goal"][-1]
        goal = episode.observations["desired_goal"][-2]
        assert np.linalg.norm(final - goal) <= 0.45 and episode.truncations[-1]
    actions = np.concatenate([e.actions for e in episodes])
    assert np.abs(actions).max() <= 1.0 and (np.abs(actions) == 1.0).mean() > 0.05  # noisy, clipped
    streams = load_minari(dataset_id)
    assert len(streams) == 1 and streams.lengths == [3000]  # goal-resetting runs continue one another
    apart = load_minari(dataset_id, join=False)
    assert len(apart) == len(episodes) and sum(apart.lengths) == 3000
    assert streams.columns[-2:] == ["action[0]", "action[1]"] and "observation[3]" in streams.columns
    np.testing.assert_allclose(streams.sequences[0][:, -2:], actions)


def test_missing_dataset_says_how_to_make_it(minari_root) -> None:
    with pytest.raises(DataError, match=r"not on disk .*trajdiff datasets make pointmaze-large"):
        load_minari("trajdiff/pointmaze-large/noisy-expert-v0")
    with pytest.raises(DataError, match=r"minari download D4RL/pointmaze/umaze-v2"):
        load_minari("D4RL/pointmaze/umaze-v2")
    with pytest.raises(ConfigError, match="join must be"):
        load_minari("x", join="sometimes")


def test_existing_dataset_needs_overwrite(minari_root) -> None:
    make_pendulum(2, root=minari_root, episodes_for_scores=2, progress=False)
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):
        make_pendulum(2, root=minari_root, episodes_for_scores=2, progress=False)
    assert make_pendulum(3, root=minari_root, overwrite=True, episodes_for_scores=2, progress=False)
    assert len(load_minari("trajdiff/pendulum/noisy-expert-v0")) == 3


def test_unknown_environment_id_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown environment id 'PointMaze_Umaze-v3'.*PointMaze_UMaze-v3"):
        make_env("PointMaze_Umaze-v3")


def test_pendulum_expert_balances_better_than_random() -> None:
    env = make_env("Pendulum-v1")
    totals = {}
    for name, policy in {"expert": pendulum_expert, "random": lambda obs: env.action_space.sample()}.items():
        env.action_space.seed(0)
        total = 0.0
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            for _ in range(200):
                obs, reward, _, _, _ = env.step(policy(obs))
                total += reward
        totals[name] = total / 3
    assert totals["expert"] > -400 > totals["random"]


# -------------------------------------------------------------------------------------- encoding


def test_encoder_keeps_every_skip_th_row_and_interpolates_back(umaze_small, monkeypatch) -> None:
    root, dataset_id = umaze_small
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    episodes = load_minari(dataset_id)
    encoder = StateActionEncoder(skip=4).fit(episodes)
    assert encoder.dim == 6 and encoder.source["dataset_id"] == dataset_id
    window = episodes.sequences[0][100:132]
    tokens, frame = encoder.encode(window, 4)
    assert tokens.shape == (8, 6)
    back = encoder.decode(tokens, frame)
    kept = encoder.kept
    states = [episodes.columns.index(f"observation[{i}]") for i in range(4)]
    actions = [episodes.columns.index("action[0]"), episodes.columns.index("action[1]")]
    np.testing.assert_allclose(back[::4][:, states], window[::4][:, states], atol=1e-4)
    np.testing.assert_allclose(back[2, states], (window[0, states] + window[4, states]) / 2, atol=1e-4)
    # actions lag one step inside tokens (a_{t-1} rides with s_t): a_3, a_7, ... come back exactly
    np.testing.assert_allclose(back[3:-1:4][:, actions], window[3:-1:4][:, actions], atol=1e-4)
    dense = StateActionEncoder(skip=1).fit(episodes)
    tokens1, frame1 = dense.encode(window, 1)
    np.testing.assert_allclose(tokens1[1:, -2:], dense.normalizer.transform(window[:, kept])[:-1, -2:], atol=1e-5)
    np.testing.assert_allclose(tokens1[0, -2:], 0.0, atol=1e-6)  # the present's previous action: the mean
    np.testing.assert_allclose(dense.decode(tokens1, frame1)[:-1][:, kept], window[:-1][:, kept], atol=1e-4)
    goal = [episodes.columns.index("desired_goal[0]"), episodes.columns.index("desired_goal[1]")]
    np.testing.assert_allclose(back[:, goal], np.repeat(window[:1, goal], 32, axis=0))
    again = StateActionEncoder.from_state(json.loads(json.dumps(encoder.state_dict())))
    np.testing.assert_allclose(again.encode(window, 4)[0], tokens)
    # the data's largest token-to-token change per kept column, kept through save/load
    by_hand = np.abs(np.diff(episodes.sequences[0][::4][:, kept], axis=0)).max(axis=0)
    np.testing.assert_allclose(encoder.step_limits, by_hand)
    np.testing.assert_allclose(again.step_limits, by_hand)
    speed = np.linalg.norm(episodes.sequences[0][:, states[2:]], axis=1).max()
    assert 0.5 * speed * 0.04 < by_hand[0] <= 1.01 * speed * 0.04  # 4 steps of dt = 0.01 at most at full speed
    with pytest.raises(ConfigError, match="skip must be a positive integer"):
        StateActionEncoder(skip=0)


def test_normalized_score_is_the_d4rl_formula() -> None:
    source = {"ref_min_score": 10.0, "ref_max_score": 210.0}
    assert normalized_score(210.0, source) == 100.0 and normalized_score(10.0, source) == 0.0
    assert normalized_score(110.0, source) == 50.0 and normalized_score(5.0, {}) is None


# -------------------------------------------------------------------------------------- planning


@pytest.fixture(scope="module")
def pendulum_model(tmp_path_factory) -> tuple[Path, Path]:
    """A small planner trained on 60 noisy-expert pendulum episodes (every step a token)."""
    import os

    root = tmp_path_factory.mktemp("minari-pendulum")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        make_pendulum(60, root=root, episodes_for_scores=3, progress=False)
        model = tmp_path_factory.mktemp("pendulum-model")
        torch.manual_seed(0)
        api.train("rl", "trajdiff/pendulum/noisy-expert-v0", model, steps=500, history=1, horizon=15,
                  encoder={"skip": 1}, lr=1e-3, progress=False,
                  network={"kind": "transformer", "dim": 4, "width": 64, "depth": 2, "heads": 4})
    finally:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    return root, model


def test_planner_executing_planned_actions_beats_random_on_pendulum(pendulum_model) -> None:
    _, model = pendulum_model
    config = PlannerConfig(nfe=8, warm_nfe=3, replan_every=1, candidates=1)
    result = run_planner(api.load_model(model), "Pendulum-v1", episodes=3, seed=100, config=config)
    assert result["evaluation_env"] and result["controller"] == "actions" and result["success_rate"] is None
    reference = result["reference"]
    assert reference["min"] < -900 and reference["max"] > -300
    # the data set's random policy scores 0 and its expert 100: the diffusion planner is well above random
    assert result["score_mean"] > 30, result["returns"]
    assert result["ms_per_plan_warm"] < result["ms_per_plan_cold"]


def test_planning_errors(pendulum_model, tmp_path) -> None:
    _, model = pendulum_model
    with pytest.raises(DataError, match=r"observation/action spaces give columns .* trained on"):
        run_planner(api.load_model(model), "PointMaze_UMaze-v3", episodes=1)
    with pytest.raises(ConfigError, match="unknown environment id"):
        run_planner(api.load_model(model), "NoSuchEnv-v0", episodes=1)
    with pytest.raises(ConfigError, match="controller must be"):
        PlannerConfig(controller="magic")
    with pytest.raises(ConfigError, match="needs positional observations"):
        run_planner(api.load_model(model), "Pendulum-v1", episodes=1, config=PlannerConfig(controller="states"),
                    max_steps=2)
    with pytest.raises(ConfigError, match="use a .gif or .png"):
        run_planner(api.load_model(model), "Pendulum-v1", episodes=1, render=tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="unknown plan 'zigzag'"):
        PlannerConfig(plan="zigzag")
    with pytest.raises(ConfigError, match=r"replan_every \(16\) must be below the plan's 16 rows: replan every 15"):
        run_planner(api.load_model(model), "Pendulum-v1", episodes=1, config=PlannerConfig(replan_every=16))


def test_planner_takes_named_plans(pendulum_model) -> None:
    """A pyramid plan (near tokens first) plans and acts; its decisions cost at most nfe network evaluations."""
    _, model = pendulum_model
    config = PlannerConfig(nfe=12, warm_nfe=6, replan_every=4, candidates=2, plan="pyramid",
                           plan_options={"delay": 1, "chunk": 4})  # 4 chunks: rows = steps + 3
    result = run_planner(api.load_model(model), "Pendulum-v1", episodes=1, seed=100, config=config, max_steps=12)
    assert len(result["returns"]) == 1 and np.isfinite(result["returns"][0])


def test_model_of_another_domain_is_refused(tmp_path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=64, freq="h"), "a": np.sin(np.arange(64.0))})
    api.train("timeseries", frame, tmp_path / "ts", steps=2, history=16, horizon=16, progress=False,
              encoder={"patch": 1}, network={"kind": "unet", "dim": 1, "width": 8, "mults": [1], "emb_dim": 8})
    with pytest.raises(ConfigError, match=r"trained for domain 'timeseries', not 'rl'.*--domain rl"):
        run_planner(api.load_model(tmp_path / "ts"), "Pendulum-v1", episodes=1)


@pytest.fixture(scope="module")
def maze_model(umaze_small, tmp_path_factory) -> Path:
    """A barely trained maze planner (30 steps): enough to exercise the planning machinery."""
    import os

    root, dataset_id = umaze_small
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        model = tmp_path_factory.mktemp("maze-model")
        api.train("rl", dataset_id, model, steps=30, progress=False,
                  network={"kind": "unet", "dim": 6, "width": 16, "mults": [1, 2], "emb_dim": 16})
    finally:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    return model


def _maze_planner(model: Path, **config) -> tuple[Planner, dict]:
    env = make_env("PointMaze_UMaze-v3", maze_map=EVAL_MAPS["umaze"], continuing_task=True, reset_target=False)
    obs, _ = env.reset(seed=3)
    planner = Planner(api.load_model(model), env.observation_space, env.action_space, PlannerConfig(**config))
    planner._row(obs)  # finds the positional columns
    env.close()
    return planner, obs


def test_candidates_aim_at_the_goal_by_evenly_spaced_tokens(maze_model) -> None:
    planner, _ = _maze_planner(maze_model, candidates=4)
    assert planner.tokens == 32 and planner._goal_tokens(warm=False) == [7, 15, 23, 31]
    planner.goal_token, planner.since_plan = 20, 8  # the last plan meant to arrive at token 20, 2 tokens ago
    assert planner._goal_tokens(warm=True) == [7, 18, 23, 31]  # its arrival is kept, replacing the nearest
    planner.goal_token = 2  # a plan that arrives now: nothing to keep
    assert planner._goal_tokens(warm=True) == [7, 15, 23, 31]
    same, _ = _maze_planner(maze_model, candidates=3, spread_goals=False)
    assert same._goal_tokens(warm=False) == [31, 31, 31]


def test_planner_warns_when_a_model_lacks_the_data_statistics(maze_model) -> None:
    loaded = api.load_model(maze_model)
    loaded.encoder.step_limits = None  # as in models trained before the encoder recorded them
    env = make_env("PointMaze_UMaze-v3", maze_map=EVAL_MAPS["umaze"], continuing_task=True, reset_target=False)
    with pytest.warns(UserWarning, match="no step_limits .* not checked for plausibility"):
        planner = Planner(loaded, env.observation_space, env.action_space, PlannerConfig())
    env.close()
    assert planner._overspeed(np.zeros((planner.rows, len(planner.encoder.columns)))) == 0.0
    loaded.encoder.support = None  # models trained before the encoder recorded where the data went
    loaded.encoder.step_limits = [1.0] * loaded.encoder.dim
    with pytest.warns(UserWarning, match="no support .* support_check and support_guidance have no effect"):
        Planner(loaded, env.observation_space, env.action_space, PlannerConfig())


def test_planner_keeps_the_first_plausible_plan_to_reach_the_goal(maze_model) -> None:
    planner, obs = _maze_planner(maze_model, candidates=3, support_check=False)  # speed alone here
    row = planner._row(obs)
    pos, goal = row[planner.position_cols], row[planner.goal_cols]
    limit = np.asarray(planner.encoder.step_limits)[[planner.encoder.kept.index(i) for i in planner.position_cols]]
    t = np.arange(planner.rows)[:, None]

    def plan(positions: np.ndarray) -> np.ndarray:
        rows = np.repeat(row[None], planner.rows, axis=0)
        rows[:, planner.position_cols] = positions
        return rows

    direction = (goal - pos) / np.linalg.norm(goal - pos)
    steady = plan(pos + np.minimum(t / 4 * 0.5 * limit.min(), np.linalg.norm(goal - pos)) * direction)
    teleport = plan(np.where(t >= 4, goal, pos))  # at the goal one token in: faster than any run in the data
    away = plan(pos - t / 4 * 0.5 * limit.min() * direction)
    assert planner._overspeed(steady) <= 0.51 and planner._overspeed(teleport) > 2
    assert planner._arrival(teleport) < planner._arrival(steady)
    assert planner._choose(np.stack([teleport, away, steady])) == 2
    assert planner._choose(np.stack([away, teleport])) == 0  # never reaching beats reaching implausibly
    slower_jump = plan(np.where(t >= 8, goal, pos + (t >= 4) * (goal - pos) / 2))
    assert planner._choose(np.stack([teleport, slower_jump])) == 1  # all implausible: the least
    with pytest.raises(ConfigError, match="speed_margin must be > 0"):
        PlannerConfig(speed_margin=0)
    with pytest.raises(ConfigError, match="goal_guidance must be >= 0"):
        PlannerConfig(goal_guidance=-1)


def test_visited_grid_holds_the_data_and_its_neighbourhood_only() -> None:
    rng = np.random.default_rng(0)
    below, above = rng.uniform([0, 0], [4, 1], (5000, 2)), rng.uniform([0, 2], [4, 3], (5000, 2))
    grid = VisitedGrid.fit(np.concatenate([below, above]))  # a wall 1 unit thick between y = 1 and 2
    assert grid.cell == pytest.approx(4 / 64, rel=0.01)
    assert grid.contains(np.concatenate([below, above])).all()
    assert not grid.contains(np.array([[2.0, 1.5], [1.0, 1.3], [3.0, 1.7]])).any()  # inside the wall
    assert grid.contains(np.array([2.0, 1.0 + 0.5 * grid.cell]))  # one cell of tolerance
    assert not grid.contains(np.array([[-5.0, 0.5], [2.0, 9.0], [np.nan, 0.5]])).any()  # off the grid
    again = VisitedGrid.from_state(json.loads(json.dumps(grid.state_dict())))
    probe = rng.uniform([-1, -1], [5, 4], (2000, 2))
    np.testing.assert_array_equal(again.contains(probe), grid.contains(probe))
    assert 0.4 < grid.coverage < 0.8
    # distance to the support: 0 inside, about half the wall's thickness in its middle, less near its
    # faces, growing off the grid; its gradient leads out of the wall by the nearer face
    probe = torch.tensor([[2.0, 0.5], [2.0, 1.5], [2.0, 1.2], [2.0, 1.8], [-3.0, 0.5]], requires_grad=True)
    distance = grid.distance(probe)
    distance.sum().backward()
    distance = distance.detach()
    assert distance[0] == 0.0
    assert 0.5 - 2.5 * grid.cell < distance[1] < 0.5 and distance[2] < distance[1] and distance[3] < distance[1]
    assert float(distance[4]) == pytest.approx(3.0, abs=2 * grid.cell)
    assert probe.grad[2, 1] > 0 and probe.grad[3, 1] < 0 and probe.grad[4, 0] < 0
    with pytest.raises(DataError, match="needs points"):
        VisitedGrid.fit(np.zeros((10, 4)))


def _detour(episodes, rows: int) -> np.ndarray:
    """A stretch of a data episode from the UMaze's upper arm to its lower arm (around the wall at
    y = 0, x < 0.5), resampled to ``rows`` positions."""
    columns = [episodes.columns.index("achieved_goal[0]"), episodes.columns.index("achieved_goal[1]")]
    for seq in episodes.sequences:
        xy = seq[:, columns]
        starts = np.nonzero((xy[:, 0] < 0.0) & (xy[:, 1] > 0.6))[0]
        for start in starts[:1]:
            ends = np.nonzero((xy[start:, 0] < 0.0) & (xy[start:, 1] < -0.6))[0]
            if len(ends):
                path = xy[start : start + ends[0] + 1]
                steps = np.linspace(0, len(path) - 1, rows)
                return np.stack([np.interp(steps, np.arange(len(path)), path[:, j]) for j in range(2)], axis=1)
    raise AssertionError("no episode of the test data set goes from the upper arm to the lower arm")


def test_planner_rejects_plans_that_leave_the_data_through_a_wall(umaze_small, maze_model, monkeypatch) -> None:
    root, dataset_id = umaze_small
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    episodes = load_minari(dataset_id)
    planner, obs = _maze_planner(maze_model, candidates=2, speed_margin=100.0, support_check=True)  # support alone
    support = planner.encoder.support
    positions = np.concatenate([seq[:, [episodes.columns.index("achieved_goal[0]"),
                                        episodes.columns.index("achieved_goal[1]")]] for seq in episodes.sequences])
    assert support is not None and support.contains(positions).all()
    assert not support.contains(np.array([[-1.0, 0.0], [0.0, 0.0]])).any()  # the UMaze wall's two cells
    around = _detour(episodes, planner.rows)
    through = np.linspace(around[0], around[-1], planner.rows)  # the straight line, across the wall
    row = planner._row(obs)
    row[planner.goal_cols] = around[-1]

    def plan(positions: np.ndarray) -> np.ndarray:
        rows = np.repeat(row[None], planner.rows, axis=0)
        rows[:, planner.position_cols] = positions
        return rows

    assert planner._off_support(plan(around)) == 0.0 and planner._plausible(plan(around))
    assert planner._off_support(plan(through)) > 0.1 and not planner._plausible(plan(through))
    assert planner._arrival(plan(through)) < planner._arrival(plan(around))
    assert planner._choose(np.stack([plan(through), plan(around)])) == 1
    # support guidance: descending its cost moves the straight line out of the wall
    columns = [planner.encoder.kept.index(i) for i in planner.position_cols]
    cost = planner._support_cost(columns)
    x0 = torch.from_numpy(planner.encoder.encode(plan(through), planner.skip)[0])[None].requires_grad_(True)
    start = float(cost(x0.detach()))
    assert start > 0 and float(cost(torch.from_numpy(planner.encoder.encode(plan(around), planner.skip)[0])[None])) \
        < 0.01 * start
    for _ in range(200):
        (grad,) = torch.autograd.grad(cost(x0).sum(), x0)
        x0 = (x0 - 0.02 * grad).detach().requires_grad_(True)
    assert float(cost(x0.detach())) < 0.05 * start
    moved = planner.encoder.decode(x0.detach().numpy()[0], {"rows": planner.rows, "first": row})
    assert planner._off_support(moved) < 0.2 * planner._off_support(plan(through))
    unchecked, _ = _maze_planner(maze_model, candidates=2, speed_margin=100.0, support_check=False)
    assert unchecked._off_support(plan(through)) == 0.0
    assert unchecked._choose(np.stack([plan(through), plan(around)])) == 0  # the shortcut, unchecked


def test_maze_planner_runs_closed_loop_with_warm_starts(umaze_small, maze_model, tmp_path, monkeypatch) -> None:
    root, dataset_id = umaze_small
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    model = maze_model
    # an untrained model's plans are implausible (and would all be replanned from noise): no speed check here
    result = run_planner(api.load_model(model), "PointMaze_UMaze-v3", episodes=1, max_steps=40,
                         render=tmp_path / "path.png",
                         config=PlannerConfig(nfe=4, warm_nfe=2, replan_every=8, candidates=2, speed_margin=1e6))
    assert result["controller"] == "states" and result["steps"] == [40]
    assert result["ms_per_plan_cold"] is not None and result["ms_per_plan_warm"] is not None
    assert (tmp_path / "path.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="multiple of the model's 4 steps per token"):
        run_planner(api.load_model(model), "PointMaze_UMaze-v3", episodes=1, config=PlannerConfig(replan_every=6))


def test_window_mlp_recipe_plans_from_the_present_to_the_goal(umaze_small, tmp_path, monkeypatch) -> None:
    """The rl domain's ``window-mlp`` recipe (one MLP over the whole plan): its plans hold the present state
    clean in the first token and the goal exactly at each candidate's goal token (inpainting), with warm starts."""
    root, dataset_id = umaze_small
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    model = tmp_path / "maze-mlp"
    api.train("rl", dataset_id, model, steps=40, progress=False, recipe="window-mlp",
              network={"kind": "window_mlp", "dim": None, "length": None, "width": 32, "depth": 1})
    loaded = api.load_model(model)
    assert loaded.model.network.config["kind"] == "window_mlp" and loaded.defaults.parametrization == "x0"
    assert loaded.model.extra["recipe"]["name"] == "window-mlp"
    planner, obs = _maze_planner(model, candidates=3, nfe=4, warm_nfe=2, speed_margin=1e6, support_guidance=0.0)
    row = planner._row(obs)
    for warm in (False, True):
        rows = planner.plan(obs)
        assert np.allclose(rows[0, planner.obs_cols], row[planner.obs_cols], atol=1e-4)
        goal_row = rows[planner.goal_token * planner.skip]
        assert np.allclose(goal_row[planner.position_cols], row[planner.goal_cols], atol=1e-4), warm
    assert len(planner.stats.plans) == 1 and len(planner.stats.warm_plans) == 1


# ------------------------------------------------------------------------------------- command line


def test_command_line_makes_data_trains_and_plans(tmp_path) -> None:
    import os
    import subprocess
    import sys

    trajdiff = str(Path(sys.executable).with_name("trajdiff"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MINARI_DATASETS_PATH=str(tmp_path / "minari"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([trajdiff, *args], capture_output=True, text=True, env=env, timeout=600)

    made = run("datasets", "make", "gym-pendulum", "--steps", "2000")
    assert made.returncode == 0, made.stderr
    assert "trajdiff/pendulum/noisy-expert-v0" in made.stdout
    again = run("datasets", "make", "gym-pendulum", "--steps", "2000")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    model = tmp_path / "model"
    trained = run("train", "--domain", "rl", "--data", "trajdiff/pendulum/noisy-expert-v0", "--out", str(model),
                  "--steps", "20")
    assert trained.returncode == 0, trained.stderr
    planned = run("plan", "--model", str(model), "--env", "Pendulum-v1", "--episodes", "1", "--nfe", "4",
                  "--warm-nfe", "2", "--out", str(tmp_path / "plan.json"))
    assert planned.returncode == 0, planned.stderr
    assert "normalized score" in planned.stdout and "ms per decision (actions controller)" in planned.stdout
    result = json.loads((tmp_path / "plan.json").read_text())
    assert result["episodes"] == 1 and len(result["returns"]) == 1 and result["steps"] == [200]
    no_sampling = run("sample", "--model", str(model), "--out", str(tmp_path / "x.csv"))
    assert no_sampling.returncode == 2 and "domain 'rl' does not support `trajdiff sample`" in no_sampling.stderr
    unknown = run("plan", "--model", str(model), "--env", "Pendulum-v9", "--episodes", "1")
    assert unknown.returncode == 2 and "unknown environment id 'Pendulum-v9'" in unknown.stderr
    missing = run("train", "--domain", "rl", "--data", "trajdiff/pointmaze-umaze/noisy-expert-v0", "--out",
                  str(tmp_path / "m2"), "--steps", "1")
    assert missing.returncode == 2 and "trajdiff datasets make pointmaze-umaze" in missing.stderr
    needs_out = run("datasets", "make", "lorenz")
    assert needs_out.returncode == 2 and "pass --out FILE" in needs_out.stderr


def test_plan_command_defaults_are_the_planner_defaults() -> None:
    import dataclasses
    import inspect

    from trajdiff import cli

    plan = next(c.callback for c in cli.app.registered_commands if c.callback and c.callback.__name__ == "plan")
    assert plan.__module__ == "trajdiff.plugins.rl.commands"  # added by the rl plugin, not the CLI
    options = {name: p.default.default for name, p in inspect.signature(plan).parameters.items()}
    defaults = PlannerConfig()
    shared = [f.name for f in dataclasses.fields(PlannerConfig) if f.name in options]
    assert {"candidates", "nfe", "warm_nfe", "goal_guidance", "speed_margin", "lookahead", "support_check",
            "support_guidance"} <= set(shared)
    for name in shared:
        if name != "seed":  # the CLI's --seed is the first reset seed and also seeds the planner
            assert options[name] == getattr(defaults, name), name


def test_rendered_plans_start_on_the_drawn_path(umaze_small, maze_model, tmp_path, monkeypatch) -> None:
    """The picture shows one episode: every plan drawn was made in it and starts where its agent was then."""
    from trajdiff.plugins.rl import render

    root, _ = umaze_small
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    drawn: dict = {}
    original = render.render_episode

    def keep(path, record, *args, **kwargs):
        drawn["record"], drawn["positions"] = record, args[0]
        return original(path, record, *args, **kwargs)

    monkeypatch.setattr("trajdiff.plugins.rl.rollout.render_episode", keep)
    config = PlannerConfig(nfe=2, warm_nfe=1, replan_every=8, candidates=1, speed_margin=1e6)
    result = run_planner(api.load_model(maze_model), "PointMaze_UMaze-v3", episodes=2, seed=5, max_steps=40,
                         render=tmp_path / "episode.png", config=config)
    record, positions = drawn["record"], drawn["positions"]
    assert len(record.rows) == result["steps"][0] + 1  # the start and every step of the first episode
    assert [step for step, _ in record.plans] == [0, 8, 16, 24, 32]
    assert result["render_plan_steps"] == [0, 8, 24, 32]  # four of them, first and last included
    for step, plan in record.plans:
        np.testing.assert_allclose(plan[0, positions], record.rows[step][positions], atol=1e-6)
    env = make_env("PointMaze_UMaze-v3", maze_map=EVAL_MAPS["umaze"], continuing_task=True, reset_target=False)
    first, _ = env.reset(seed=5)
    env.close()
    np.testing.assert_allclose(record.rows[0][positions], first["achieved_goal"], atol=1e-9)  # seed 5, not 6
    assert (tmp_path / "episode.png").stat().st_size > 1000
