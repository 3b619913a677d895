"""The traffic domain: loading (every bad-input case), agent-frame encoder, costs, plugin hooks, CLI round trip."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.core.guidance import CostGradient
from trajdiff.core.model import DiffusionModel
from trajdiff.core.schedules import build_schedule
from trajdiff.errors import ConfigError, DataError, ShapeError
from trajdiff.plugins import traffic as plugin
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.traffic.costs import CollisionCost, SpeedCost, collision_penalty, world_positions
from trajdiff.plugins.traffic.domain import ETH_UCY_SHA256, TrafficDomain, folder_sha256
from trajdiff.plugins.traffic.encoder import TrackEncoder
from trajdiff.plugins.traffic.joint import encode_scene, sample_joint
from trajdiff.plugins.traffic.loader import load_tracks, neighbour_columns

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ETH_UCY = SHARED_DATA / "eth_ucy"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent")


def _write(tmp_path: Path, text: str, name: str = "scene.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(frames: range, agent: int, x0: float, y0: float, vx: float, vy: float) -> list[str]:
    return [f"{f}\t{agent}\t{x0 + vx * i:.4f}\t{y0 + vy * i:.4f}" for i, f in enumerate(frames)]


def _scene(n_frames: int = 24, step: int = 10) -> str:
    frames = range(0, n_frames * step, step)
    lines = _rows(frames, 1, 0.0, 0.0, 0.4, 0.0) + _rows(frames, 2, 0.0, 2.0, 0.4, -0.05)
    return "\n".join(sorted(lines, key=lambda s: int(s.split("\t")[0]))) + "\n"


def _load(path: Path, **options: object) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episodes = load_tracks(path, **options)
    return episodes, [str(w.message) for w in caught]


# ------------------------------------------------------------------------------------- loading


def test_load_tracks_one_episode_per_agent_with_neighbours(tmp_path: Path) -> None:
    episodes, messages = _load(_write(tmp_path, _scene()), neighbours=2)
    assert messages == []
    assert episodes.ids == ["scene:1", "scene:2"]
    assert episodes.columns == ["x", "y", *neighbour_columns(2)]
    meta = episodes.meta[0]
    assert meta["entity"] == "scene:1" and meta["scene"] == "scene" and meta["frame_step"] == 10.0
    assert meta["dt"] == pytest.approx(0.4)
    np.testing.assert_array_equal(meta["times"], np.arange(0, 240, 10))
    a, b = episodes.sequences
    # neighbour 1 of agent 1 is agent 2: relative position and velocity, present; neighbour 2 absent
    np.testing.assert_allclose(a[:, 2:4], b[:, :2] - a[:, :2], atol=1e-9)
    np.testing.assert_allclose(a[1:, 4:6], [[0.0, -0.05]] * 23, atol=1e-9)
    assert (a[:, 6] == 1).all() and (a[:, 7:12] == 0).all()


def test_load_folder_dataframe_and_csv_with_header(tmp_path: Path) -> None:
    _write(tmp_path, _scene(), "a.txt")
    _write(tmp_path, _scene(), "b.txt")
    assert len(load_tracks(tmp_path)) == 4
    frame = pd.DataFrame({"frame": [0, 10, 0, 10], "ped_id": [1, 1, 2, 2], "x": [0, 1, 5, 5], "y": [0, 0, 0, 1]})
    assert load_tracks(frame, neighbours=1).ids == ["data:1", "data:2"]
    csv = _write(tmp_path, "frame,agent_id,x,y\n0,7,0,0\n10,7,1,1\n", "c.csv")
    episodes = load_tracks(csv, neighbours=0)
    assert episodes.ids == ["c:7"] and episodes.columns == ["x", "y"]


def test_malformed_rows_are_counted_with_line_numbers(tmp_path: Path) -> None:
    text = _scene().splitlines()
    text.insert(3, "20\t1\tabc\t0.0")
    text.insert(6, "30\t2")
    episodes, messages = _load(_write(tmp_path, "\n".join(text) + "\n"))
    report = episodes.meta[0]["report"]
    assert report["malformed_rows"] == 2 and report["malformed_lines"] == [4, 7]
    assert any("2 malformed row(s) skipped (lines 4, 7)" in m for m in messages)


def test_missing_columns_are_errors_naming_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "0\t1\t0.5\n10\t1\t0.7\n")
    with pytest.raises(DataError, match=r"scene.txt: line 1 has 3 column\(s\).*missing columns: y"):
        load_tracks(path)
    header = _write(tmp_path, "frame,agent_id,x\n0,1,0\n", "h.csv")
    with pytest.raises(DataError, match=r"h.csv: the header on line 1 has no 'y' column"):
        load_tracks(header)
    with pytest.raises(DataError, match=r"DataFrame: the table has no 'agent' column"):
        load_tracks(pd.DataFrame({"frame": [0], "x": [0.0], "y": [0.0]}))


def test_duplicate_frame_agent_rows_keep_the_first_and_are_counted(tmp_path: Path) -> None:
    text = _scene() + "0\t1\t99.0\t99.0\n"
    episodes, messages = _load(_write(tmp_path, text))
    report = episodes.meta[0]["report"]
    assert report["duplicate_rows"] == 1 and report["duplicate_lines"] == [49]
    assert episodes.sequences[0][0, 0] == 0.0
    assert any("1 duplicate (frame, agent) row(s) removed" in m for m in messages)


def test_non_uniform_frame_steps_are_counted_off_grid_and_gaps_split(tmp_path: Path) -> None:
    lines = _scene().splitlines()
    lines = [ln for ln in lines if not ln.startswith("100\t1\t")]  # a gap in agent 1's track
    lines.append("105\t2\t3.0\t3.0")  # off the step-10 grid
    episodes, messages = _load(_write(tmp_path, "\n".join(lines) + "\n"))
    report = episodes.meta[0]["report"]
    assert report["frame_step"] == 10.0 and report["off_grid_rows"] == 1 and report["gaps_split"] == 1
    assert episodes.ids == ["scene:1", "scene:1#1", "scene:2"]
    assert episodes.lengths == [10, 13, 24]
    assert any("off the frame grid" in m and "gap(s) inside tracks" in m for m in messages)


def test_single_row_agent_is_counted(tmp_path: Path) -> None:
    episodes, messages = _load(_write(tmp_path, _scene() + "50\t9\t1.0\t1.0\n"))
    report = episodes.meta[0]["report"]
    assert report["single_row_tracks"] == 1 and report["single_row_agents"] == ["9"]
    assert len(episodes) == 2 and any("single row skipped (agents 9)" in m for m in messages)


def test_loader_errors_for_empty_unknown_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        load_tracks(_write(tmp_path, "\n", "empty.txt"))
    with pytest.raises(DataError, match="no agent has two or more rows"), pytest.warns(UserWarning, match="single"):
        load_tracks(_write(tmp_path, "0\t1\t0\t0\n10\t2\t0\t0\n", "lonely.txt"))
    with pytest.raises(DataError, match="does not exist"):
        load_tracks(tmp_path / "missing.txt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="holds no track files"):
        load_tracks(tmp_path / "empty_dir")
    with pytest.raises(ConfigError, match="unknown traffic loader option"):
        TrafficDomain().load(tmp_path / "x.txt", freq="1h")
    with pytest.raises(ConfigError, match="neighbours"):
        load_tracks(tmp_path / "x.txt", neighbours=-1)


# ------------------------------------------------------------------------------------- encoder


def _fitted(tmp_path: Path, neighbours: int = 2) -> tuple[TrackEncoder, object]:
    episodes = load_tracks(_write(tmp_path, _curved_scene(6, 30, seed=0)), neighbours=neighbours)
    return TrackEncoder(history=8, horizon=12).fit(episodes), episodes


def _curved_scene(agents: int, frames: int, seed: int, step: int = 10, turn: float = 0.15) -> str:
    """Agents on arcs of constant speed and turn rate (radians per step, normal with std ``turn``)."""
    rng = np.random.default_rng(seed)
    lines = []
    for a in range(agents):
        heading, rate, speed = rng.uniform(-math.pi, math.pi), rng.normal(0, turn), rng.uniform(0.3, 0.6)
        x, y = rng.uniform(-10, 10, 2)
        for i in range(frames):
            lines.append((i * step, f"{i * step}\t{a}\t{x:.5f}\t{y:.5f}"))
            heading += rate
            x, y = x + speed * math.cos(heading), y + speed * math.sin(heading)
    return "\n".join(line for _, line in sorted(lines, key=lambda t: t[0])) + "\n"


def test_encode_decode_round_trip(tmp_path: Path) -> None:
    encoder, episodes = _fitted(tmp_path)
    window = episodes.sequences[0][:20]
    tokens, frame = encoder.encode(window, 8)
    assert tokens.shape == (20, encoder.dim) and encoder.dim == 12
    back = encoder.decode(tokens, frame)
    np.testing.assert_allclose(back[:, :2], window[:, :2], atol=1e-5)
    np.testing.assert_allclose(back[:8, 2:], window[:8, 2:], atol=1e-5)
    assert np.isnan(back[8:, 2:]).all() and (tokens[8:, 2:] == 0).all()
    restored = TrafficDomain().encoder_from_state(encoder.state_dict())
    np.testing.assert_allclose(restored.decode(tokens[None], frame)[0], back)


def test_encoding_is_invariant_to_rotation_and_translation(tmp_path: Path) -> None:
    encoder, episodes = _fitted(tmp_path)
    window = episodes.sequences[1][:20].copy()
    angle = 1.1
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = window.copy()
    moved[:, :2] = window[:, :2] @ rot.T + [100.0, -50.0]
    k = (window.shape[1] - 2) // 5
    nb = moved[:, 2:].reshape(20, k, 5)
    nb[..., :2] = nb[..., :2] @ rot.T
    nb[..., 2:4] = nb[..., 2:4] @ rot.T
    a, _ = encoder.encode(window, 8)
    b, _ = encoder.encode(moved, 8)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_mirrored_tokens_are_the_encoding_of_the_mirrored_scene(tmp_path: Path) -> None:
    encoder, episodes = _fitted(tmp_path)
    window = episodes.sequences[1][:20].copy()
    window[:, :2] += np.c_[np.zeros(20), 0.02 * np.arange(20.0) ** 1.5]  # a turning agent: y matters
    mirrored = window.copy()
    k = (window.shape[1] - 2) // 5
    mirrored[:, 1] *= -1.0
    nb = mirrored[:, 2:].reshape(20, k, 5)
    nb[..., 1] *= -1.0  # dy
    nb[..., 3] *= -1.0  # dvy
    tokens, _ = encoder.encode(window, 8)
    np.testing.assert_allclose(encoder.mirrored(tokens), encoder.encode(mirrored, 8)[0], atol=1e-4)
    assert np.abs(tokens[:, 1]).max() > 0.1  # the flip is not vacuous


def test_training_adds_mirrored_windows_and_keeps_history_clean(tmp_path: Path) -> None:
    data = _write(tmp_path, _scene())
    defaults = TrafficDomain().defaults()
    assert defaults.history_prob == 1.0
    summary = api.train("traffic", data, tmp_path / "m", steps=1, progress=False,
                        network={"kind": "transformer", "dim": None, "width": 16, "depth": 1, "heads": 2})
    loaded = api.load_model(tmp_path / "m")
    episodes = TrafficDomain().load(data)
    x, _, _ = api.encode_windows(episodes, loaded.encoder, defaults.history, defaults.length, defaults.stride)
    assert summary.windows == 2 * len(x) > 0
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["training"]["history_prob"] == 1.0


def test_straight_constant_speed_future_encodes_to_zero_residual_along_x(tmp_path: Path) -> None:
    encoder, _ = _fitted(tmp_path, neighbours=0)
    t = np.arange(20)[:, None]
    window = np.hstack([3.0 + 0.3 * t, -1.0 + 0.4 * t])  # heading 53 degrees, 0.5 per step
    tokens, frame = encoder.encode(window, 8)
    assert frame["velocity"] == pytest.approx([0.5, 0.0])
    np.testing.assert_allclose(tokens[8:], 0.0, atol=1e-6)
    assert np.all(tokens[:7, 1] == pytest.approx(0.0, abs=1e-6)) and np.all(tokens[:7, 0] < 0)


# ------------------------------------------------------------------------------------- costs


def _frames_for(positions: list[tuple[float, float]], velocity: tuple[float, float]) -> list[dict]:
    return [{"origin": np.array(p), "angle": 0.0, "velocity": np.array(velocity), "history": 2, "cv": True,
             "scale": [1.0, 1.0]} for p in positions]


def test_collision_cost_gradient_pushes_agents_apart() -> None:
    cost = CollisionCost(radius=1.0).bind(_frames_for([(0.0, 0.0), (0.3, 0.0), (50.0, 0.0)], (0.0, 0.0)),
                                          [{"group": 0}] * 3, samples=1)
    x = torch.zeros(3, 5, 2, requires_grad=True)  # 2 history + 3 future tokens, own x/y only
    value = cost(x)
    assert value[2].item() == 0 and value[0].item() > 0 and value[0].item() == pytest.approx(value[1].item())
    (grad,) = torch.autograd.grad(value.sum(), x)
    moved = (x - 0.1 * grad).detach()
    before = world_positions(x.detach(), cost_frames := _frames_for([(0.0, 0.0), (0.3, 0.0), (50, 0)], (0, 0)))
    after = world_positions(moved, cost_frames)
    assert ((after[1] - after[0]).norm(dim=-1) > (before[1] - before[0]).norm(dim=-1)).all()
    assert torch.all(grad[:, :2] == 0)  # history tokens are not moved


def test_collision_couples_only_the_same_joint_sample_and_scene() -> None:
    positions = torch.zeros(2, 3, 4, 2)
    positions[1, 1] += 5.0  # in joint sample 1 the agents are far apart
    penalty = collision_penalty(positions, radius=1.0)
    assert penalty[:, 0].gt(0).all() and penalty[:, 1].eq(0).all()
    cost = CollisionCost().bind(_frames_for([(0.0, 0.0), (0.1, 0.0)], (0.0, 0.0)),
                                [{"group": "a"}, {"group": "b"}], samples=2)
    assert torch.all(cost(torch.zeros(4, 5, 2)) == 0)


def test_speed_cost_and_unbound_costs() -> None:
    frames = _frames_for([(0.0, 0.0)], (1.0, 0.0))
    slow = SpeedCost(limit=3.0).bind(frames, [{"dt": 0.4}], samples=1)  # 1.2 per step allowed, moves 1.0
    fast = SpeedCost(limit=2.0).bind(frames, [{"dt": 0.4}], samples=1)  # 0.8 per step allowed
    x = torch.zeros(1, 5, 2)
    assert slow(x).item() == 0 and fast(x).item() == pytest.approx(3 * 0.2**2, rel=1e-4)
    with pytest.raises(ConfigError, match="needs each window's frame"):
        CollisionCost()(x)
    with pytest.raises(ConfigError, match="radius"):
        CollisionCost(radius=0)


def test_collision_guidance_separates_jointly_sampled_agents() -> None:
    frames = _frames_for([(0.0, 0.0), (0.2, 0.0)], (0.0, 0.0))
    guide = CostGradient(CollisionCost(radius=1.0).bind(frames, None, samples=1), scale=0.5, inner_steps=5)
    from trajdiff.core.parametrize import Prediction

    def denoise(x: torch.Tensor, k: torch.Tensor, cond: object = None) -> Prediction:
        return Prediction(torch.zeros_like(x), x)

    wrapped = guide.wrap(denoise, build_schedule("cosine"))
    k = torch.full((2, 5), 0.5)
    out = wrapped(torch.zeros(2, 5, 2), k)
    gap = (world_positions(out.x0, frames)[1] - world_positions(out.x0, frames)[0]).norm(dim=-1)
    assert (gap > 0.2).all()


# ------------------------------------------------------------------------------------- plugin


def test_plugin_hooks_register_domain_and_cards() -> None:
    registry = Plugins()
    assert isinstance(registry.domain("traffic"), TrafficDomain)
    cards = {c.name: c for c in plugin.trajdiff_datasets()}
    assert set(cards) == {f"eth_ucy_{s}" for s in ("eth", "hotel", "univ", "zara1", "zara2")}
    assert all(c.domain == "traffic" and c.sha256 and c.columns == ["frame", "agent_id", "x", "y"]
               for c in cards.values())
    assert set(TrafficDomain().costs()) == {"collision", "speed"}
    assert TrafficDomain().defaults().history == 8 and TrafficDomain().defaults().horizon == 12


@needs_shared
def test_eth_ucy_checksums_and_loading_match_the_shared_data() -> None:
    for scene, digest in ETH_UCY_SHA256.items():
        assert folder_sha256(ETH_UCY / scene) == digest, scene
    episodes = load_tracks(ETH_UCY / "eth" / "test")
    assert episodes.meta[0]["frame_step"] == 10.0 and episodes.meta[0]["dt"] == pytest.approx(0.4)
    assert sum(episodes.lengths) + episodes.meta[0]["report"]["single_row_tracks"] == 5492


# ------------------------------------------------------------------------------------- CLI round trip


def test_cli_train_forecast_round_trip_and_errors(tmp_path: Path) -> None:
    data = _write(tmp_path, _curved_scene(8, 40, seed=1), "train.txt")
    model = tmp_path / "model"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--domain", "traffic", "--data", str(data), "--out", str(model),
                                 "--steps", "20", "--batch-size", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["train", "--domain", "traffic", "--data", str(data), "--out",
                                     str(tmp_path / "gpu"), "--steps", "1", "--device", "cuda"])
        assert result.exit_code == 2 and "no CUDA GPU here" in result.output
    out, plot = tmp_path / "f.csv", tmp_path / "f.png"
    result = runner.invoke(app, ["forecast", "--model", str(model), "--data", str(data), "--samples", "3",
                                 "--out", str(out), "--plot", str(plot), "--cost", "collision=0.1", "--nfe", "4"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["sample", "entity", "time", "step", "x", "y"]
    assert len(table) == 3 * 8 * 12 and plot.stat().st_size > 1000
    assert table["time"].min() == 400 and table["time"].max() == 510  # continues frame numbers, step 10
    bad = _write(tmp_path, "0\t1\t0.5\n", "bad.txt")
    result = runner.invoke(app, ["forecast", "--model", str(model), "--data", str(bad), "--out", str(out)])
    assert result.exit_code != 0 and "missing columns: y" in result.output and "Traceback" not in result.output
    # --draws: 3 of 12 drawn samples kept, one per cluster of final positions; each is one of the 12 draws
    every, kept = tmp_path / "every.csv", tmp_path / "kept.csv"
    for path, extra in ((every, ["--samples", "12"]), (kept, ["--samples", "3", "--draws", "12"])):
        result = runner.invoke(app, ["forecast", "--model", str(model), "--data", str(data), "--out", str(path),
                                     "--nfe", "4", *extra])
        assert result.exit_code == 0, result.output
    every_xy = pd.read_csv(every).sort_values(["entity", "sample", "step"])[["x", "y"]].to_numpy().reshape(8, 12, 12, 2)
    kept_xy = pd.read_csv(kept).sort_values(["entity", "sample", "step"])[["x", "y"]].to_numpy().reshape(8, 3, 12, 2)
    for entity in range(8):
        match = [int(np.abs(every_xy[entity] - k).max(axis=(1, 2)).argmin()) for k in kept_xy[entity]]
        assert np.allclose(every_xy[entity][match], kept_xy[entity], atol=1e-4) and len(set(match)) == 3
    result = runner.invoke(app, ["forecast", "--model", str(model), "--data", str(data), "--out", str(kept),
                                 "--samples", "3", "--draws", "2"])
    assert result.exit_code != 0 and "draws (2) must be at least samples (3)" in result.output
    scores = tmp_path / "scores.json"
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--samples", "3",
                                 "--draws", "6", "--nfe", "4", "--out", str(scores)])
    assert result.exit_code == 0 and "3 samples (of 6 drawn)" in result.output, result.output
    assert json.loads(scores.read_text())["draws"] == 6


# ------------------------------------------------------------------------------------- a trained model


def test_trained_model_beats_constant_velocity_on_turning_agents(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    train = _write(tmp_path, _curved_scene(40, 40, seed=2, turn=0.25), "train.txt")
    test = _write(tmp_path, _curved_scene(12, 20, seed=3, turn=0.25), "test.txt")
    api.train("traffic", train, tmp_path / "m", steps=150, batch_size=64, progress=False,
              network={"kind": "transformer", "width": 32, "depth": 2, "heads": 2}, load_options={"neighbours": 0})
    result = api.evaluate(tmp_path / "m", test, samples=10, nfe=5, load_options={"neighbours": 0})
    episodes = load_tracks(test, neighbours=0)
    truth = np.stack([s[8:20, :2] for s in episodes.sequences])
    last, prev = np.stack([s[7, :2] for s in episodes.sequences]), np.stack([s[6, :2] for s in episodes.sequences])
    cv = last[:, None] + np.arange(1, 13)[None, :, None] * (last - prev)[:, None]
    cv_ade = float(np.linalg.norm(cv - truth, axis=-1).mean())
    assert result["windows"] == 12
    assert result["metrics"]["min_ade"] < 0.5 * cv_ade, (result["metrics"], cv_ade)
    spread = api.evaluate(tmp_path / "m", test, samples=10, draws=40, nfe=5, load_options={"neighbours": 0})
    assert spread["draws"] == 40 and spread["samples"] == 10
    assert spread["metrics"]["min_ade"] < 0.5 * cv_ade, (spread["metrics"], cv_ade)


def test_joint_sampling_with_the_collision_cost_keeps_agents_apart(tmp_path: Path) -> None:
    domain = TrafficDomain()
    encoder, _ = _fitted(tmp_path, neighbours=0)
    model = DiffusionModel({"kind": "transformer", "dim": encoder.dim, "width": 16, "depth": 1, "heads": 1},
                           parametrization="x0")  # untrained: predicts x0 = 0, constant velocity
    loaded = api.LoadedModel(model, domain, encoder, replace(domain.defaults(), nfe=5))
    t = np.arange(20)[:, None].astype(float)
    walkers = np.stack([np.hstack([-6 + 0.5 * t, 0 * t]), np.hstack([6 - 0.5 * t, 0.05 + 0 * t])])  # head-on
    contexts, frames = encode_scene(loaded, walkers)
    free = sample_joint(loaded, contexts, frames, ["s", "s"], samples=4)
    guided = sample_joint(loaded, contexts, frames, ["s", "s"], samples=4, costs={"collision": 2.0})
    assert free.shape == (2, 4, 12, 2)

    def closest(xy: np.ndarray) -> np.ndarray:  # per joint sample, the agents' smallest distance
        return np.linalg.norm(xy[0] - xy[1], axis=-1).min(-1)

    assert closest(free).max() < 0.4 and closest(guided).min() > closest(free).max() + 0.1
    with pytest.raises(ConfigError, match="unknown traffic cost"):
        sample_joint(loaded, contexts, frames, ["s", "s"], costs={"gravity": 1.0})


def test_encoder_and_file_type_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="residual must be"):
        TrackEncoder(residual="linear")
    with pytest.raises(ConfigError, match="at least 2 observed rows"):
        TrackEncoder(history=1)
    with pytest.raises(ConfigError, match="not fitted"):
        TrackEncoder().encode(np.zeros((20, 2)), 8)
    encoder, episodes = _fitted(tmp_path, neighbours=2)
    with pytest.raises(ShapeError, match="fitted on 2 neighbour"):
        encoder.encode(np.zeros((20, 2)), 8)
    with pytest.raises(ConfigError, match="built for 8 observed rows"):
        encoder.encode(episodes.sequences[0][:20], 4)
    with pytest.raises(ShapeError, match="expected tokens with 12 features"):
        encoder.decode(np.zeros((20, 3)), {})
    with pytest.raises(ConfigError, match="not a traffic encoder"):
        TrackEncoder.from_state({"kind": "timeseries.standard"})
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        load_tracks(_write(tmp_path, "x", "tracks.xlsx"))
    with pytest.raises(DataError, match="cannot read as Parquet"):
        load_tracks(_write(tmp_path, "not parquet", "tracks.parquet"))
    with pytest.raises(ConfigError, match="speed limit"):
        SpeedCost(limit=0)
    loaded = api.LoadedModel(DiffusionModel({"kind": "transformer", "dim": 12, "width": 8, "depth": 1, "heads": 1}),
                             TrafficDomain(), encoder, TrafficDomain().defaults())
    with pytest.raises(ShapeError, match=r"windows must be \[N, 20, F\]"):
        encode_scene(loaded, np.zeros((2, 8, 12)))
