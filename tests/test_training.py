"""Training: noise sampling, loss weighting, a model that learns, checkpoints, resume, DDP."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from trajdiff.core import plans, samplers
from trajdiff.core.model import DiffusionModel
from trajdiff.core.training import TrainConfig, TrainData, Trainer, loss_weight, sample_levels
from trajdiff.errors import CheckpointError, ConfigError, DataError, ShapeError

HISTORY, HORIZON = 8, 24


def sine_windows(count: int, seed: int) -> torch.Tensor:
    """Noisy-free sinusoids with random frequency, phase and amplitude: [count, HORIZON, 2] (sin, cos)."""
    g = torch.Generator().manual_seed(seed)
    freq = 0.15 + 0.25 * torch.rand(count, 1, generator=g)
    phase = 2 * math.pi * torch.rand(count, 1, generator=g)
    amp = 0.5 + torch.rand(count, 1, generator=g)
    t = torch.arange(HORIZON, dtype=torch.float32)[None, :]
    angle = freq * t + phase
    return torch.stack([amp * torch.sin(angle), amp * torch.cos(angle)], dim=-1)


def small_model(kind: str = "transformer") -> DiffusionModel:
    network = {"kind": "transformer", "dim": 2, "width": 48, "depth": 2, "heads": 4} if kind == "transformer" else {
        "kind": "unet", "dim": 2, "width": 16, "mults": [1, 2]}
    return DiffusionModel(network, schedule="cosine", parametrization="v")


def forecast(model: DiffusionModel, history: torch.Tensor, samples: int = 8, seed: int = 0) -> torch.Tensor:
    plan = plans.with_context(plans.full_sequence(HORIZON, 10), slice(0, HISTORY))
    context = torch.zeros(history.shape[0], HORIZON, 2)
    context[:, :HISTORY] = history
    context = context.repeat_interleave(samples, 0)
    g = torch.Generator().manual_seed(seed)
    x = samplers.initial_state(context.shape, plan, model.schedule, context=context, generator=g)
    out = samplers.sample(model.denoiser(), x, plan, model.schedule, solver="dpmpp2m", generator=g)
    return out.reshape(history.shape[0], samples, HORIZON, 2)


def test_noise_sampling_modes() -> None:
    g = torch.Generator().manual_seed(0)
    independent = sample_levels("independent", 64, 10, generator=g)
    assert independent.shape == (64, 10) and independent.min() > 0 and independent.max() <= 1
    assert independent.std(dim=1).mean() > 0.2  # tokens differ within a sequence
    shared = sample_levels("shared", 64, 10, generator=g)
    assert torch.all(shared == shared[:, :1])
    rolling = sample_levels("rolling", 64, 10, generator=g, window=6)
    assert torch.all(rolling[:, :4] == 0)  # context before the window is clean
    window = rolling[:, 4:]
    assert torch.all(window[:, 1:] >= window[:, :-1])  # a staircase inside the window
    steps = (window[:, 1:] - window[:, :-1])
    inner = (window[:, 1:] < 1) & (window[:, :-1] > 0)
    torch.testing.assert_close(steps[inner], torch.full_like(steps[inner], 1 / 6))
    with pytest.raises(ConfigError, match="unknown noise sampling 'uniform'"):
        sample_levels("uniform", 2, 3)
    with pytest.raises(ConfigError, match=r"rolling window must be in \[1, 10\]"):
        sample_levels("rolling", 2, 10, window=12)


def test_min_snr_weights_have_their_closed_form() -> None:
    model = small_model()
    k = torch.linspace(0.05, 0.95, 19)
    alpha, sigma = model.schedule.alpha_sigma(k)
    snr = (alpha / sigma).square()
    gamma = 5.0
    torch.testing.assert_close(loss_weight(model.schedule, k, "eps", "min_snr", gamma), snr.clamp_max(gamma) / snr)
    torch.testing.assert_close(loss_weight(model.schedule, k, "v", "min_snr", gamma),
                               snr.clamp_max(gamma) / (snr + 1))
    torch.testing.assert_close(loss_weight(model.schedule, k, "x0", "min_snr", gamma), snr.clamp_max(gamma))
    assert torch.all(loss_weight(model.schedule, k, "velocity", "uniform", gamma) == 1)
    with pytest.raises(ConfigError, match="unknown loss weighting"):
        loss_weight(model.schedule, k, "v", "p2", gamma)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DiffusionModel, Path]:
    """A small transformer trained for 400 steps (well under a minute on 2 cores)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    model = small_model()
    config = TrainConfig(steps=400, batch_size=64, lr=2e-3, warmup_steps=50, history=HISTORY, history_prob=0.75,
                         progress=False, seed=0)
    Trainer(model, TrainData(sine_windows(2048, seed=0)), config, out_dir=out).fit()
    return model, out


def test_trained_model_beats_the_last_value_baseline(trained) -> None:
    model, _ = trained
    test = sine_windows(64, seed=123)
    drawn = forecast(model, test[:, :HISTORY])
    median = drawn.median(dim=1).values[:, HISTORY:]
    truth = test[:, HISTORY:]
    model_mse = (median - truth).square().mean()
    last_value_mse = (test[:, HISTORY - 1:HISTORY] - truth).square().mean()
    assert torch.all(drawn[:, :, :HISTORY] == test[:, None, :HISTORY])  # history untouched
    assert model_mse < 0.3 * last_value_mse, (float(model_mse), float(last_value_mse))


def test_checkpoint_round_trip_reproduces_outputs_exactly(trained) -> None:
    model, out = trained
    loaded = DiffusionModel.load(out)
    history = sine_windows(4, seed=7)[:, :HISTORY]
    assert torch.equal(forecast(model, history, seed=3), forecast(loaded, history, seed=3))
    assert loaded.config["network"] == model.config["network"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["training"]["steps"] == 400 and saved["step"] == 400


def test_loading_never_unpickles(trained, monkeypatch) -> None:
    _, out = trained

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model = DiffusionModel.load(out)
    assert model.parametrization == "v"
    # Resuming training (optimizer state, RNG) reads the same files, still without pickle.
    Trainer(small_model(), TrainData(sine_windows(64, seed=1)),
            TrainConfig(steps=401, progress=False), out_dir=out, resume=True)


def test_truncated_or_corrupt_checkpoint_is_a_clear_error(trained, tmp_path) -> None:
    _, out = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    weights = copy / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        DiffusionModel.load(copy)
    with pytest.raises(CheckpointError, match="no_such_model"):
        DiffusionModel.load(tmp_path / "no_such_model")


def _run(steps: int, out: Path | None, interrupt_at: int | None = None) -> DiffusionModel:
    torch.manual_seed(0)  # same initial weights in every run
    model = small_model("unet")
    config = TrainConfig(steps=steps, batch_size=16, warmup_steps=5, checkpoint_every=5, progress=False, seed=3)
    trainer = Trainer(model, TrainData(sine_windows(256, seed=2)), config, out_dir=out)
    if interrupt_at is not None:
        original = trainer._train_step

        def step_or_interrupt() -> float:
            if trainer.step == interrupt_at:
                raise KeyboardInterrupt
            return original()

        trainer._train_step = step_or_interrupt  # type: ignore[method-assign]
    trainer.fit()
    return model


def test_resume_after_interruption_continues_from_the_saved_step(tmp_path) -> None:
    reference = _run(20, None)
    with pytest.raises(KeyboardInterrupt):
        _run(20, tmp_path / "run", interrupt_at=13)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["step"] == 13  # Ctrl-C saved the current step
    resumed_trainer = Trainer(small_model("unet"), TrainData(sine_windows(256, seed=2)),
                              TrainConfig(steps=20, batch_size=16, warmup_steps=5, checkpoint_every=5,
                                          progress=False, seed=3), out_dir=tmp_path / "run")
    assert resumed_trainer.step == 13
    resumed_trainer.fit()
    for a, b in zip(reference.network.parameters(), resumed_trainer.model.network.parameters(), strict=True):
        assert torch.equal(a, b)  # bit-identical to the uninterrupted run
    for a, b in zip(reference.ema.parameters(), resumed_trainer.model.ema.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_into_a_directory_with_another_network_is_refused(trained) -> None:
    _, out = trained
    with pytest.raises(CheckpointError, match="another network"):
        Trainer(small_model("unet"), TrainData(sine_windows(16, seed=1)), TrainConfig(progress=False), out_dir=out)


def test_bad_training_input_is_a_clear_error() -> None:
    data = sine_windows(8, seed=0)
    data[3, 5, 1] = float("nan")
    with pytest.raises(DataError, match="batch 3, token 5, feature 1"):
        TrainData(data)
    with pytest.raises(ShapeError, match=r"\[batch, tokens, features\]"):
        TrainData(torch.zeros(8, 24))
    with pytest.raises(ShapeError, match="cond must be"):
        TrainData(sine_windows(8, seed=0), cond=torch.zeros(5, 2))
    with pytest.raises(ConfigError, match=r"history must be in \[0, 23\]"):
        Trainer(small_model(), TrainData(sine_windows(8, seed=0)), TrainConfig(history=30, progress=False))
    with pytest.raises(ConfigError, match="unknown noise sampling"):
        Trainer(small_model(), TrainData(sine_windows(8, seed=0)), TrainConfig(noise="pyramid", progress=False))
    for device, message in (("tpu", "use 'cpu', 'cuda' or 'cuda:N'"), ("banana", "unknown training device")):
        with pytest.raises(ConfigError, match=message):
            Trainer(small_model(), TrainData(sine_windows(8, seed=0)), TrainConfig(device=device, progress=False))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA GPU here"):
            Trainer(small_model(), TrainData(sine_windows(8, seed=0)), TrainConfig(device="cuda", progress=False))


def test_training_runs_on_the_requested_device() -> None:
    model = small_model()
    trainer = Trainer(model, TrainData(sine_windows(8, seed=0)),
                      TrainConfig(steps=2, batch_size=4, warmup_steps=1, device="cpu", progress=False))
    assert trainer.device == torch.device("cpu") and trainer.fit().step == 2
    assert all(p.device.type == "cpu" for p in model.network.parameters())


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from trajdiff.core.model import DiffusionModel
    from trajdiff.core.training import TrainConfig, TrainData, Trainer
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    g = torch.Generator().manual_seed(0)
    data = torch.randn(256, 12, 2, generator=g)
    torch.manual_seed(1234 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = DiffusionModel({"kind": "unet", "dim": 2, "width": 16, "mults": [1, 2]})
    trainer = Trainer(model, TrainData(data), TrainConfig(steps=6, batch_size=8, warmup_steps=1, progress=False),
                      out_dir=sys.argv[1])
    result = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in model.network.parameters()])
    first_batch = trainer._batch()[0].sum().item()
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
        json.dump({"world": dist.get_world_size(), "params": flat.tolist()[:2000], "sum": flat.double().sum().item(),
                   "step": result.step, "batch_sum": first_batch}, f)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_process_gloo_run_keeps_parameters_in_sync(tmp_path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path / "model"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["params"] == ranks[1]["params"] and ranks[0]["sum"] == ranks[1]["sum"]
    assert ranks[0]["batch_sum"] != ranks[1]["batch_sum"]  # each rank draws its own batches
    assert ranks[0]["step"] == 6
    assert json.loads((tmp_path / "model" / "config.json").read_text())["step"] == 6  # rank 0 wrote it
