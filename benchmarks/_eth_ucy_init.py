"""A learned set of K futures for `eth_ucy.py --initializer`: an MLP from an agent's encoded history (own track and
neighbours, the traffic encoder's agent frame) to K futures at once, trained on the best of the K (winner takes
all), as LED's initializer is trained to cover the outcomes with its K samples.

Why: minADE/minFDE over 20 reward a set that covers the outcomes; a diffusion model's 20 independent samples
follow the distribution instead, so likely outcomes get several near-copies and rare ones none. This measures
how far a set trained for the metric gets on its own, beside the diffusion model's samples (LED goes on to
denoise its initializer's samples with its diffusion model; that step is not measured here).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trajdiff import api
from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.plugins.traffic.costs import world_positions


class SetMLP(nn.Module):
    """History ``[B, H, D]`` -> K futures ``[B, K, F, 2]`` (the encoder's own-position columns)."""

    def __init__(self, history: int, dim: int, horizon: int, k: int, width: int = 256, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(history * dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, k * horizon * 2)
        self.k, self.horizon = k, horizon

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(history.flatten(1)))
        return out.view(len(history), self.k, self.horizon, 2)


def train_set(x: np.ndarray, history: int, *, k: int = 20, steps: int = 6000, width: int = 256, depth: int = 3,
              fde_weight: float = 0.0, batch_size: int = 256, lr: float = 1e-3, max_minutes: float = 10.0,
              seed: int = 0) -> tuple[SetMLP, dict[str, Any]]:
    """Trains a `SetMLP` on encoded training windows ``x [N, T, D]`` with the best-of-K loss: the mean
    displacement plus ``fde_weight`` times the final one, of the best of the K futures."""
    torch.manual_seed(seed)
    data = torch.from_numpy(np.asarray(x, dtype=np.float32))
    model = SetMLP(history, data.shape[2], data.shape[1] - history, k, width=width, depth=depth)
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    cpu, wall, losses = time.process_time(), time.monotonic(), []
    done = 0
    for done in range(1, steps + 1):  # noqa: B007 (the count of steps taken is reported)
        batch = data[torch.randint(len(data), (batch_size,), generator=generator)]
        pred = model(batch[:, :history])
        dist = (pred - batch[:, None, history:, :2]).norm(dim=-1)  # [B, K, F]
        loss = (dist.mean(-1) + fde_weight * dist[..., -1]).min(1).values.mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
        losses.append(float(loss.detach()))
        if time.monotonic() - wall > 60 * max_minutes:
            break
    model.eval()
    return model, {"set_steps": done, "set_cpu_minutes": round((time.process_time() - cpu) / 60, 2),
                   "set_final_loss": float(np.mean(losses[-100:]))}


def training_windows(loaded: api.LoadedModel, folder: Path, mirror: bool, speed_ref: float) -> np.ndarray:
    """The scene's training windows encoded with the model's encoder (rescaled and mirrored as the model's were)."""
    from _eth_ucy_scale import file_factors, rescale

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = loaded.domain.load(folder, neighbours=loaded.encoder.neighbours)
    if speed_ref > 0:
        episodes = rescale(episodes, file_factors(episodes, speed_ref))
    d = loaded.defaults
    x, _, _ = api.encode_windows(episodes, loaded.encoder, d.history, d.history + d.horizon, 1)
    return loaded.domain.augment_windows(x, loaded.encoder) if mirror else x


@torch.no_grad()
def set_futures(model: SetMLP, contexts: np.ndarray, frames: list[dict[str, Any]], history: int,
                chunk: int = 1024) -> np.ndarray:
    """The K futures of each context ``[N, T, D]`` as world positions ``[N, K, F, 2]`` (the model's units)."""
    out = []
    for lo in range(0, len(contexts), chunk):
        ctx = torch.from_numpy(contexts[lo:lo + chunk])
        pred = model(ctx[:, :history])  # [n, K, F, 2]
        n, k = pred.shape[:2]
        tokens = ctx[:, None].repeat(1, k, 1, 1)
        tokens[:, :, history:, :2] = pred
        repeated = [f for f in frames[lo:lo + chunk] for _ in range(k)]
        xy = world_positions(tokens.reshape(n * k, *ctx.shape[1:]), repeated)
        out.append(xy.reshape(n, k, -1, 2).numpy())
    return np.concatenate(out)


@torch.no_grad()
def refined_futures(loaded: api.LoadedModel, model: SetMLP, contexts: np.ndarray, frames: list[dict[str, Any]], *,
                    start: float, nfe: int, seed: int, chunk: int = 512) -> np.ndarray:
    """The K futures of `set_futures`, each re-noised to level ``start`` and denoised by the diffusion model in
    ``nfe`` network evaluations (a warm start, `Known.warm`): ``[N, K, F, 2]`` world positions."""
    d = loaded.defaults
    out = []
    for lo in range(0, len(contexts), chunk):
        ctx = torch.from_numpy(contexts[lo:lo + chunk])
        pred = model(ctx[:, :d.history])
        n, k = pred.shape[:2]
        tokens = ctx[:, None].repeat(1, k, 1, 1)
        tokens[:, :, d.history:, :2] = pred
        flat = tokens.reshape(n * k, *ctx.shape[1:])
        known = Known(flat, Known.history(flat, d.history).tokens, warm=flat)
        x = sample_conditional(loaded.model.denoiser(ema=True), loaded.model.schedule, known, samples=1, nfe=nfe,
                               solver=d.solver, plan_options={"start": start},
                               generator=torch.Generator().manual_seed(seed + lo))
        repeated = [f for f in frames[lo:lo + chunk] for _ in range(k)]
        out.append(world_positions(x[0], repeated).reshape(n, k, -1, 2).numpy())
    return np.concatenate(out)
