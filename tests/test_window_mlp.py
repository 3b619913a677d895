"""The window MLP denoiser and the faster forecast path: shapes and configs, levels, conditions, a trained model
beating a baseline, the recipe that selects it, the coefficient form of predictions, the forecast table, batching
and the compiled solver."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.core.model import DiffusionModel
from trajdiff.core.networks import WindowMLP, build_network, complete_network
from trajdiff.core.parametrize import PARAMETRIZATIONS, target, to_prediction
from trajdiff.core.training import TrainConfig, TrainData, Trainer
from trajdiff.errors import ConfigError, ShapeError

torch.set_num_threads(1)

D, T, C = 3, 8, 4


def small(**overrides: object) -> WindowMLP:
    torch.manual_seed(0)
    return build_network({"kind": "window_mlp", "dim": D, "length": T, "width": 32, "depth": 2, "emb_dim": 16,
                          **overrides}).eval()


def perturbed(**overrides: object) -> WindowMLP:
    net = small(**overrides)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return net


def inputs(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, T, D, generator=gen), torch.rand(batch, T, generator=gen)


def test_shape_zero_init_and_config_round_trip() -> None:
    net = small(cond_dim=C)
    x, k = inputs()
    assert torch.equal(net(x, k), torch.zeros_like(x))
    config = json.loads(json.dumps(net.config))
    assert config == {"kind": "window_mlp", "dim": D, "length": T, "cond_dim": C, "width": 32, "depth": 2,
                      "emb_dim": 16, "dropout": 0.0}
    net = perturbed(cond_dim=C)
    rebuilt = build_network(net.config).eval()
    rebuilt.load_state_dict(net.state_dict())
    cond = torch.randn(4, C)
    assert torch.equal(rebuilt(x, k, cond), net(x, k, cond))


def test_complete_network_fills_dim_and_length_for_the_window_mlp_only() -> None:
    assert complete_network({"kind": "window_mlp", "dim": None, "length": None, "width": 8}, dim=5, tokens=7) == {
        "kind": "window_mlp", "dim": 5, "length": 7, "width": 8}
    assert complete_network({"kind": "window_mlp", "length": 3}, dim=5, tokens=7)["length"] == 3
    assert complete_network({"kind": "transformer", "dim": None}, dim=5, tokens=7) == {"kind": "transformer", "dim": 5}


def test_wrong_length_and_bad_configs_are_one_line_errors() -> None:
    x, k = inputs()
    with pytest.raises(ShapeError, match=r"x has 7 tokens but this window MLP was built for windows of 8; .*length=7"):
        small()(x[:, :7], k[:, :7])
    with pytest.raises(ConfigError, match="length must be a positive integer, got 0"):
        build_network({"kind": "window_mlp", "dim": 2, "length": 0})
    with pytest.raises(ConfigError, match=r"needs argument\(s\) length"):
        build_network({"kind": "window_mlp", "dim": 2})
    with pytest.raises(ShapeError, match=r"k \(per-token noise level\) must have shape"):
        small()(x, k[:, :5])


def test_every_token_and_the_window_level_change_the_output() -> None:
    net = perturbed()
    x, k = inputs()
    out = net(x, k)
    x2 = x.clone()
    x2[0, 0] += 1.0
    changed = net(x2, k)
    assert not torch.allclose(changed[0, -1], out[0, -1], atol=1e-5), "a token reaches every other token"
    assert torch.allclose(changed[1:], out[1:], atol=1e-6), "windows are independent"
    k2 = k.clone()
    k2[0, 3] = 0.0  # one token held clean
    assert not torch.allclose(net(x, k2)[0], out[0], atol=1e-5)


@pytest.mark.parametrize("with_cond", [False, True])
def test_shared_levels_embedded_once_give_the_per_row_result(with_cond: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sampler step (the same levels for every window) is embedded once; the output equals the per-row path."""
    from trajdiff.core.networks import window_mlp

    net = perturbed(cond_dim=C if with_cond else 0)
    x, _ = inputs()
    k = torch.cat([torch.zeros(3), torch.full((T - 3,), 0.6)]).expand(4, T).contiguous()
    cond = torch.randn(4, C) if with_cond else None
    shared = net(x, k, cond)
    monkeypatch.setattr(window_mlp, "distinct_levels", lambda k, **_: k)
    assert torch.allclose(shared, net(x, k, cond), atol=1e-5)


def test_condition_and_its_dropout() -> None:
    net = perturbed(cond_dim=C)
    x, k = inputs(3)
    cond = torch.randn(3, C)
    with_cond, uncond = net(x, k, cond), net(x, k)
    assert not torch.allclose(with_cond, uncond, atol=1e-5)
    mixed = net(x, k, cond, torch.tensor([False, True, False]))
    assert torch.allclose(mixed[1], uncond[1], atol=1e-6)
    assert torch.allclose(mixed[[0, 2]], with_cond[[0, 2]], atol=1e-6)


def waves(count: int, generator: torch.Generator) -> torch.Tensor:
    """Windows [count, 8, 1] of a sine wave of random phase and amplitude: the future follows from the history."""
    phase = torch.rand(count, 1, generator=generator) * 2 * math.pi
    amplitude = 0.5 + torch.rand(count, 1, generator=generator)
    steps = torch.arange(8.0)[None, :]
    return (amplitude * torch.sin(phase + steps * 0.6))[..., None]


def test_trained_window_mlp_forecasts_better_than_the_last_value() -> None:
    gen = torch.Generator().manual_seed(0)
    train = waves(2048, gen)
    network = {"kind": "window_mlp", "dim": 1, "length": 8, "width": 64, "depth": 2}
    model = DiffusionModel(network)
    config = TrainConfig(steps=150, batch_size=128, lr=3e-3, history=4, history_prob=1.0, noise="shared",
                         progress=False, warmup_steps=20, seed=0)
    Trainer(model, TrainData(train), config).fit()
    test = waves(64, gen)
    known = Known.history(torch.where(torch.arange(8)[None, :, None] < 4, test, 0.0), 4)
    with torch.inference_mode():
        drawn = sample_conditional(model.denoiser(), model.schedule, known, samples=8, nfe=10,
                                   generator=torch.Generator().manual_seed(1))
    error = (drawn.median(dim=0).values[:, 4:] - test[:, 4:]).square().mean()
    last = (test[:, 3:4] - test[:, 4:]).square().mean()
    assert error < last / 100, f"window MLP {error:.4f} against the last value's {last:.4f}"


def test_the_window_mlp_recipe_trains_a_model_of_the_window_length(tmp_path) -> None:  # noqa: ANN001
    from trajdiff import api

    rows = 200
    frame = pd.DataFrame({"time": pd.date_range("2020-01-01", periods=rows, freq="h"),
                          "a": np.sin(np.arange(rows) / 5.0), "b": np.cos(np.arange(rows) / 7.0)})
    api.train("timeseries", frame, tmp_path / "m", recipe="window-mlp", steps=3, history=32, horizon=32,
              network={"kind": "window_mlp", "dim": None, "length": None, "width": 16, "depth": 1}, progress=False)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    defaults = config["extra"]["defaults"]
    assert config["network"]["kind"] == "window_mlp" and defaults["noise"] == "shared"
    assert config["network"]["length"] == 64 // 16  # tokens of 16-row patches
    result = api.forecast(tmp_path / "m", frame, samples=2, nfe=2)
    assert len(result.table) == 2 * 32


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_predictions_from_coefficients_invert_the_target_and_keep_clean_tokens(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 5, 3, generator=gen), torch.randn(2, 5, 3, generator=gen)
    angle = torch.tensor([0.0, 0.3, 0.7, 1.2, math.pi / 2])[None, :, None].expand(2, 5, 1)
    alpha, sigma = torch.cos(angle), torch.sin(angle)
    sigma = torch.where(angle == 0, 0.0, sigma)
    x = alpha * x0 + sigma * eps
    prediction = to_prediction(target(x0, eps, alpha, sigma, kind), x, alpha, sigma, kind)
    noisy = (angle > 0) & (angle < math.pi / 2)
    assert torch.allclose(prediction.x0[noisy.expand_as(x)], x0[noisy.expand_as(x)], atol=1e-5)
    assert torch.allclose(prediction.eps[noisy.expand_as(x)], eps[noisy.expand_as(x)], atol=1e-5)
    assert torch.equal(prediction.x0[:, 0], x[:, 0]) and torch.equal(prediction.eps[:, 0], torch.zeros(2, 3))


def test_forecast_table_equals_one_frame_per_entity_and_sample() -> None:
    from trajdiff.api.output import forecast_table

    rng = np.random.default_rng(0)
    futures = rng.normal(size=(3, 4, 5, 2))
    entities = [f"e{j}" for j in range(4)]
    for times in ([np.arange(j, j + 5) * 10.0 for j in range(4)],
                  [np.datetime64("2020-01-01T00:00") + np.arange(j, j + 5) * np.timedelta64(1, "m") for j in range(4)]):
        frames = []
        for j, entity in enumerate(entities):
            for s in range(3):
                frame = pd.DataFrame(futures[s, j], columns=["a", "b"])
                frame.insert(0, "step", np.arange(1, 6))
                frame.insert(0, "time", times[j])
                frame.insert(0, "entity", entity)
                frame.insert(0, "sample", s)
                frames.append(frame)
        pd.testing.assert_frame_equal(forecast_table(entities, times, futures, ["a", "b"]),
                                      pd.concat(frames, ignore_index=True))


def test_one_large_batch_gives_the_samples_of_one_batch_per_context() -> None:
    """With a noise stream per context, batching is a matter of speed only: the samples are the same."""
    from trajdiff.core.streams import Streams

    net = perturbed()
    model = DiffusionModel(net)
    model.ema.load_state_dict(net.state_dict())
    x, _ = inputs(6)
    known = Known.history(x, 3)
    runs = []
    with torch.inference_mode():
        for limit in (4, 4096):  # one context (4 samples) per batch, or all in one
            runs.append(sample_conditional(model.denoiser(), model.schedule, known, samples=4, nfe=6,
                                           generator=Streams(range(6)), batch_limit=limit))
    assert torch.equal(runs[0], runs[1])


def test_compiled_solver_samples_as_the_solver() -> None:
    from trajdiff.core.compiled import CompiledSolver

    net = perturbed()
    model = DiffusionModel(net)
    model.ema.load_state_dict(net.state_dict())
    known = Known.history(inputs(3)[0], 3)
    solver = CompiledSolver("dpmpp2m", backend="eager")  # dynamo's tracing without code generation: fast
    assert solver.name == "dpmpp2m" and solver.evaluations([True, True], [True, False]) == 2
    with torch.inference_mode():
        plain, compiled = (sample_conditional(model.denoiser(), model.schedule, known, samples=2, nfe=4, solver=step,
                                              generator=torch.Generator().manual_seed(0))
                           for step in ("dpmpp2m", solver))
    assert torch.allclose(plain, compiled, atol=1e-6)
