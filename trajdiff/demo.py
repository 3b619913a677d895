"""The demo on an embedded default: probabilistic forecasting of the Lorenz system.

Everything is generated here: Lorenz trajectories integrated with torchdiffeq from random initial
states on the attractor. A small transformer is trained with per-token noise levels (Diffusion
Forcing), then forecasts held-out sequences from their history (history tokens held clean, the
future sampled with DPM-Solver++), and its error is printed next to simple baselines.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torchdiffeq
from torch import Tensor

from trajdiff.core import metrics, plans, samplers
from trajdiff.core.data import Normalizer
from trajdiff.core.model import DiffusionModel
from trajdiff.core.training import TrainConfig, TrainData, Trainer
from trajdiff.plotting import pyplot, save_figure


def lorenz_trajectories(
    count: int, length: int, dt: float = 0.03, *, seed: int = 0, sigma: float = 10.0, rho: float = 28.0,
    beta: float = 8.0 / 3.0,
) -> Tensor:
    """``count`` Lorenz-63 trajectories ``[count, length, 3]`` sampled every ``dt``, started on the attractor."""
    generator = torch.Generator().manual_seed(seed)

    def field(_: Tensor, state: Tensor) -> Tensor:
        x, y, z = state.unbind(-1)
        return torch.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], dim=-1)

    start = torch.randn(count, 3, generator=generator, dtype=torch.float64) * 5.0 + torch.tensor([0.0, 0.0, 25.0])
    burn_in = torch.tensor([0.0, 5.0], dtype=torch.float64)  # settle onto the attractor
    start = torchdiffeq.odeint(field, start, burn_in, method="dopri5", rtol=1e-7, atol=1e-7)[-1]
    times = torch.arange(length, dtype=torch.float64) * dt
    path = torchdiffeq.odeint(field, start, times, method="dopri5", rtol=1e-7, atol=1e-7)
    return path.permute(1, 0, 2).float()


@dataclass
class DemoResult:
    """Forecast errors on held-out sequences (normalized units) and where the plot went."""

    rows: dict[str, dict[str, float]]
    plot: Path | None
    train_seconds: float
    nfe: int


def _baselines(history: Tensor, future_len: int) -> dict[str, Tensor]:
    last = history[:, -1:]
    velocity = history[:, -1:] - history[:, -2:-1]
    steps = torch.arange(1, future_len + 1, dtype=history.dtype)[None, :, None]
    return {"last value": last.expand(-1, future_len, -1), "constant velocity": last + steps * velocity}


def run_demo(
    out_dir: str | Path = "demo-output",
    *,
    train_minutes: float = 2.0,
    steps: int = 3000,
    samples: int = 16,
    nfe: int = 20,
    seed: int = 0,
    progress: bool = True,
    quick: bool = False,
    log=print,
) -> DemoResult:
    """Generates Lorenz data, trains a model, forecasts held-out series, prints and plots the result."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    history_len, future_len = 16, 32
    horizon = history_len + future_len
    train_count, test_count = (256, 32) if quick else (1024, 128)
    log(f"Generating {train_count + test_count} Lorenz-63 trajectories of {horizon} steps with torchdiffeq ...")
    data = lorenz_trajectories(train_count + test_count, horizon, seed=seed)
    train, test = data[:train_count], data[train_count:]
    normalizer = Normalizer("standard").fit(train.reshape(-1, 3).numpy())
    train_n, test_n = normalizer.transform(train), normalizer.transform(test)

    network = {"kind": "transformer", "dim": 3, "width": 64 if not quick else 48, "depth": 3 if not quick else 2,
               "heads": 4}
    model = DiffusionModel(network, schedule="cosine", parametrization="v",
                           extra={"demo": "lorenz", "history": history_len, "horizon": horizon,
                                  "normalizer": normalizer.state_dict()})
    config = TrainConfig(steps=steps if not quick else 150, batch_size=64, lr=2e-3, warmup_steps=100,
                         noise="independent", history=history_len, history_prob=0.75,
                         max_minutes=train_minutes, seed=seed, progress=progress)
    log(f"Training a {sum(p.numel() for p in model.network.parameters()):,}-parameter transformer "
        f"for up to {config.steps} steps or {train_minutes:g} min ...")
    trainer = Trainer(model, TrainData(train_n), config, out_dir=out_dir / "model", resume=False)
    result = trainer.fit()
    log(f"  {result.step} steps in {result.seconds:.0f} s, final loss {sum(result.losses[-50:]) / 50:.4f}")

    # Forecast: history tokens held clean (level 0), the future sampled with DPM-Solver++.
    denoise = model.denoiser(ema=True)
    plan = plans.with_context(plans.full_sequence(horizon, nfe), slice(0, history_len))
    generator = torch.Generator().manual_seed(seed + 1)
    context = test_n.repeat_interleave(samples, dim=0)
    start = samplers.initial_state(context.shape, plan, model.schedule, context=context, generator=generator)
    log(f"Forecasting {test_count} held-out series x {samples} samples ({nfe} function evaluations) ...")
    with torch.no_grad():
        drawn = samplers.sample(denoise, start, plan, model.schedule, solver="dpmpp2m", generator=generator)
    forecast = drawn[:, history_len:].reshape(test_count, samples, future_len, 3).transpose(0, 1)
    truth = test_n[:, history_len:]

    rows: dict[str, dict[str, float]] = {}
    median = forecast.median(dim=0).values
    rows["trajdiff (median of samples)"] = {
        "mse": float((median - truth).square().mean()),
        "mae": float((median - truth).abs().mean()),
        "crps": float(metrics.crps_samples(forecast, truth).mean()),
        "coverage90": float(metrics.interval_coverage(forecast, truth, 0.9)),
    }
    for name, guess in _baselines(test_n[:, :history_len], future_len).items():
        rows[name] = {"mse": float((guess - truth).square().mean()), "mae": float((guess - truth).abs().mean()),
                      "crps": float((guess - truth).abs().mean()), "coverage90": math.nan}

    log("")
    log(f"Held-out forecast error over {future_len} steps (normalized units, lower is better):")
    log(f"  {'method':<30}{'MSE':>8}{'MAE':>8}{'CRPS':>8}{'90% cov':>9}")
    for name, row in rows.items():
        coverage = "" if math.isnan(row["coverage90"]) else f"{row['coverage90']:.2f}"
        log(f"  {name:<30}{row['mse']:>8.3f}{row['mae']:>8.3f}{row['crps']:>8.3f}{coverage:>9}")

    plot = _plot(test, normalizer.inverse(forecast), history_len, out_dir / "forecast.png")
    log(f"\nPlot: {plot}\nModel: {out_dir / 'model'}")
    return DemoResult(rows, plot, result.seconds, nfe)


def _plot(test: Tensor, forecast: Tensor, history_len: int, path: Path) -> Path:
    plt = pyplot()

    figure, axes = plt.subplots(3, 3, figsize=(12, 7), sharex=True)
    names = ["x", "y", "z"]
    horizon = test.shape[1]
    t = torch.arange(horizon)
    for col in range(3):
        for row in range(3):
            ax = axes[row, col]
            ax.plot(t[:history_len], test[col, :history_len, row], color="black", lw=1.5, label="history")
            ax.plot(t[history_len:], test[col, history_len:, row], color="black", ls="--", lw=1.2, label="truth")
            for s in range(forecast.shape[0]):
                ax.plot(t[history_len:], forecast[s, col, :, row], color="tab:blue", alpha=0.25, lw=0.8,
                        label="samples" if s == 0 else None)
            if col == 0:
                ax.set_ylabel(names[row])
            if row == 0:
                ax.set_title(f"held-out series {col}")
    axes[0, 0].legend(loc="upper left", fontsize=7)
    figure.suptitle("trajdiff demo: Lorenz-63 forecasts (history clean, future sampled)")
    figure.tight_layout()
    return save_figure(figure, path, dpi=110)


if __name__ == "__main__":
    start = time.monotonic()
    run_demo()
    print(f"done in {time.monotonic() - start:.0f} s")
