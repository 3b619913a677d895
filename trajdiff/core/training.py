"""Training: per-token noise levels, the weighted denoising loss, and the Trainer.

Noise sampling decides which plans a model can later walk:

- ``independent``: every token draws its own level (Diffusion Forcing, Chen et al., 2024); one model
  then serves full-sequence, autoregressive, pyramid and rolling plans;
- ``shared``: one level per sequence (classic diffusion, Diffuser);
- ``rolling``: the window's staircase ``clip((j + o) / W, 0, 1)`` with a random offset o in (0, W],
  covering a rolling window's warm-up and steady state (Rolling Diffusion, TEDi).

Any mode can additionally hold a random-length or fixed clean prefix (history) at level 0, as
forecasting does at sampling time. Tokens at level 0 and padded tokens carry no loss.

The Trainer runs one process, or several under ``torchrun`` with DistributedDataParallel (gloo on
CPU, NCCL on GPU), and writes atomic checkpoints it can resume from exactly.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from trajdiff.core.checkpoint import load_checkpoint, save_checkpoint
from trajdiff.core.model import DiffusionModel
from trajdiff.core.optimizer_state import restore_optimizer
from trajdiff.core.parametrize import network_input, target, x0_error_scale
from trajdiff.core.plans import staircase
from trajdiff.core.progress import Progress
from trajdiff.core.samplers import check_sequences
from trajdiff.core.schedules import Schedule
from trajdiff.core.window_source import WindowSource
from trajdiff.errors import CheckpointError, ConfigError, ShapeError

NOISE_MODES = ("independent", "shared", "rolling")
WEIGHTINGS = ("min_snr", "uniform")


def sample_levels(
    mode: str,
    batch: int,
    horizon: int,
    *,
    generator: torch.Generator | None = None,
    window: int | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Per-token training levels ``[B, T]`` in (0, 1] for the given noise-sampling mode."""
    if mode == "independent":
        u = torch.rand(batch, horizon, generator=generator)
    elif mode == "shared":
        u = torch.rand(batch, 1, generator=generator).expand(batch, horizon).clone()
    elif mode == "rolling":
        window = horizon if window is None else window
        if not 1 <= window <= horizon:
            raise ConfigError(f"rolling window must be in [1, {horizon}], got {window}")
        offsets = torch.rand(batch, generator=generator) * window
        u = torch.ones(batch, horizon)
        for b in range(batch):
            u[b, horizon - window:] = staircase(window, float(offsets[b]))
        u[:, : horizon - window] = 0.0  # tokens before the window are clean context
    else:
        raise ConfigError(f"unknown noise sampling {mode!r}; choose one of {list(NOISE_MODES)}")
    # Levels in (0, 1]: exactly-0 levels only for context.
    return u.clamp_min(1e-4).to(device) if mode != "rolling" else u.to(device)


def loss_weight(schedule: Schedule, k: Tensor, parametrization: str, weighting: str, gamma: float) -> Tensor:
    """Per-token weight of the squared target error.

    ``min_snr`` (Hang et al., 2023) weighs the x0 error by min(SNR, gamma) whatever the target,
    i.e. min(SNR, gamma) / m with m the target's x0-error scale (eps: SNR, v: SNR + 1, x0: 1);
    ``uniform`` is plain MSE on the target (the usual choice for flow matching's velocity).
    """
    if weighting == "uniform":
        return torch.ones_like(k)
    if weighting != "min_snr":
        raise ConfigError(f"unknown loss weighting {weighting!r}; choose one of {list(WEIGHTINGS)}")
    alpha, sigma = schedule.alpha_sigma(k)
    snr = alpha.square() / sigma.square().clamp_min(1e-20)
    return snr.clamp_max(gamma) / x0_error_scale(alpha, sigma, parametrization).clamp_min(1e-20)


def diffusion_loss(
    model: DiffusionModel,
    x0: Tensor,
    k: Tensor,
    *,
    network: nn.Module | None = None,
    cond: Tensor | None = None,
    cond_drop: Tensor | None = None,
    valid: Tensor | None = None,
    weighting: str = "min_snr",
    gamma: float = 5.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Weighted denoising loss over tokens with k > 0 (and ``valid``), averaged per token.

    ``network`` overrides ``model.network`` (a DDP wrapper of it during distributed training).
    """
    network = model.network if network is None else network
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    alpha, sigma = (v[..., None] for v in model.schedule.alpha_sigma(k))
    x_k = alpha * x0 + sigma * eps
    x_in = network_input(x_k, alpha, sigma, model.sigma_data, model.schedule.variance_preserving)
    output = network(x_in, k, cond, cond_drop)
    error = (output - target(x0, eps, alpha, sigma, model.parametrization)).square().mean(-1)
    weight = loss_weight(model.schedule, k, model.parametrization, weighting, gamma)
    active = k > 0
    if valid is not None:
        active = active & valid
    active = active.to(error.dtype)
    return (error * weight * active).sum() / active.sum().clamp_min(1.0)


@dataclass
class TrainConfig:
    """How to train; every field is stored in the checkpoint."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    lr_min_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    noise: str = "independent"
    window: int | None = None
    history: int = 0
    history_prob: float = 0.5
    weighting: str = "min_snr"
    min_snr_gamma: float = 5.0
    cond_dropout: float = 0.0
    checkpoint_every: int = 0
    max_minutes: float | None = None
    seed: int = 0
    progress: bool = True
    device: str | None = None
    """Where one process trains ("cpu", "cuda", "cuda:1"); None: the CPU, or one GPU per rank under torchrun."""

    def validate(self, horizon: int) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.noise not in NOISE_MODES:
            raise ConfigError(f"unknown noise sampling {self.noise!r}; choose one of {list(NOISE_MODES)}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown loss weighting {self.weighting!r}; choose one of {list(WEIGHTINGS)}")
        if not 0 <= self.history < horizon:
            raise ConfigError(f"history must be in [0, {horizon - 1}] for sequences of {horizon} tokens")
        if not 0.0 <= self.cond_dropout < 1.0 or not 0.0 <= self.history_prob <= 1.0:
            raise ConfigError("cond_dropout must be in [0, 1) and history_prob in [0, 1]")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, (int, float)) and not isinstance(
                self.max_minutes, bool) and math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise ConfigError(f"minutes must be a finite number > 0 (training stops after that long), got "
                              f"{self.max_minutes!r}; leave it out to train for all the steps")


def _device(requested: str | None, rank: int, world: int) -> torch.device:
    """The training device: the requested one (checked), else one GPU per rank under torchrun, else the CPU."""
    if requested is None:
        if torch.cuda.is_available() and world > 1:
            return torch.device(f"cuda:{rank % torch.cuda.device_count()}")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"unknown training device {requested!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training device {requested!r} asked for, but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}); train on 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"training device {requested!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    return device


@dataclass
class TrainData:
    """Training windows ``x [N, T, D]`` (normalized), optional conditions ``[N, C]`` and validity ``[N, T]``."""

    x: Tensor
    cond: Tensor | None = None
    valid: Tensor | None = None

    def __post_init__(self) -> None:
        check_sequences(self.x, "training data")
        n = self.x.shape[0]
        if self.cond is not None and (self.cond.dim() != 2 or self.cond.shape[0] != n):
            raise ShapeError(f"cond must be [N, C] with N = {n}, got {tuple(self.cond.shape)}")
        if self.valid is not None and tuple(self.valid.shape) != tuple(self.x.shape[:2]):
            raise ShapeError(f"valid must be a [N, T] mask = {tuple(self.x.shape[:2])}, got {tuple(self.valid.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def tokens(self) -> int:
        return int(self.x.shape[1])

    def take(self, index: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The windows at ``index``: (x, cond or None, valid or None), as `WindowSource.take` gives them."""
        cond = self.cond[index] if self.cond is not None else None
        valid = self.valid[index] if self.valid is not None else None
        return self.x[index], cond, valid

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records about the windows (`WindowSource.describe`)."""
        return {"windows": len(self)}


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


class Trainer:
    """Trains a DiffusionModel on TrainData (windows in memory) or a WindowSource (windows encoded per batch,
    the same batches for the same seed); resumes from ``out_dir`` when it holds a checkpoint."""

    def __init__(
        self,
        model: DiffusionModel,
        data: TrainData | WindowSource,
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        resume: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.config = config or TrainConfig()
        self.config.validate(data.tokens)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata or {})
        self.rank, self.world = _distributed()
        self.device = _device(self.config.device, self.rank, self.world)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.network.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.generator = torch.Generator().manual_seed(self.config.seed * 1000 + self.rank)
        self.step = 0
        self.losses: list[float] = []
        if resume and self.out_dir is not None and (self.out_dir / "config.json").exists():
            self._resume()
        if self.world > 1:
            self.network: nn.Module = nn.parallel.DistributedDataParallel(self.model.network)
        else:
            self.network = self.model.network

    def _learning_rate(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return cfg.lr * (cfg.lr_min_ratio + (1.0 - cfg.lr_min_ratio) * cosine)

    def _batch(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
        cfg = self.config
        n, horizon = len(self.data), self.data.tokens
        index = torch.randint(n, (cfg.batch_size,), generator=self.generator)
        x0, cond, valid = self.data.take(index)
        x0 = x0.to(self.device)
        k = sample_levels(cfg.noise, cfg.batch_size, horizon, generator=self.generator, window=cfg.window)
        if cfg.history:
            held = torch.rand(cfg.batch_size, generator=self.generator) < cfg.history_prob
            k[held, : cfg.history] = 0.0
        cond = cond.to(self.device) if cond is not None else None
        drop = None
        if cond is not None and cfg.cond_dropout > 0:
            drop = (torch.rand(cfg.batch_size, generator=self.generator) < cfg.cond_dropout).to(self.device)
        valid = valid.to(self.device) if valid is not None else None
        return x0, k.to(self.device), cond, drop, valid

    def fit(self) -> TrainResult:
        """Trains until ``config.steps`` (or ``max_minutes``); checkpoints periodically and at the end.

        With ``config.progress`` it reports progress (a bar in a terminal, else a line every 10 s with steps,
        loss and time left; see `Progress`). Ctrl-C saves a checkpoint at the current step before
        re-raising, so the run can resume.
        """
        cfg = self.config
        start = time.monotonic()
        bar = Progress(cfg.steps, "training", "step", initial=self.step, enabled=cfg.progress and self.rank == 0)
        stopped_early = False
        self.model.network.train()
        try:
            while self.step < cfg.steps:
                if cfg.max_minutes is not None and time.monotonic() - start > 60.0 * cfg.max_minutes:
                    stopped_early = True
                    break
                loss = self._train_step()
                self.losses.append(loss)
                recent = self.losses[-50:]
                bar.update(1, loss=f"{sum(recent) / len(recent):.4f}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        finally:
            bar.close()
        self.model.network.eval()
        self.save_checkpoint()
        return TrainResult(self.step, self.losses, time.monotonic() - start, stopped_early)

    def _train_step(self) -> float:
        cfg = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate(self.step)
        x0, k, cond, drop, valid = self._batch()
        loss = diffusion_loss(
            self.model, x0, k, network=self.network, cond=cond, cond_drop=drop, valid=valid,
            weighting=cfg.weighting, gamma=cfg.min_snr_gamma, generator=self.generator,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.network.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        decay = min(cfg.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        self.model.update_ema(decay)
        value = loss.detach()
        if self.world > 1:
            dist.all_reduce(value)
            value = value / self.world
        return float(value)

    def save_checkpoint(self) -> Path | None:
        """Writes the model directory atomically (rank 0 only; other ranks wait)."""
        if self.out_dir is None:
            return None
        path = None
        if self.rank == 0:
            config = self.model.config
            config["training"] = asdict(self.config)
            config["metadata"] = {**self.metadata, **self.data.describe()}
            path = save_checkpoint(
                self.out_dir,
                config=config,
                tensors={
                    "weights": self.model.network.state_dict(),
                    "ema": self.model.ema.state_dict(),
                    "trainer": {"rng": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                                "losses": torch.tensor(self.losses)},
                },
                optimizer=self.optimizer,
                metrics={"step": self.step, "loss": self.losses[-1] if self.losses else None},
                step=self.step,
            )
        if self.world > 1:
            dist.barrier()
        return path

    def _resume(self) -> None:
        assert self.out_dir is not None
        checkpoint = load_checkpoint(self.out_dir)
        saved = DiffusionModel.from_config(checkpoint.config).config
        if saved["network"] != self.model.config["network"]:
            raise CheckpointError(
                f"{self.out_dir} holds a model with another network ({saved['network']}); "
                "choose a new output directory or pass resume=False to overwrite it"
            )
        self.model.network.load_state_dict(checkpoint.tensors["weights"])
        self.model.ema.load_state_dict(checkpoint.tensors["ema"])
        if checkpoint.optimizer_state is not None:
            restore_optimizer(self.optimizer, checkpoint.optimizer_state)
        trainer_state = checkpoint.tensors.get("trainer", {})
        if "rng" in trainer_state and self.world == 1:
            self.generator.set_state(trainer_state["rng"])
        if "torch_rng" in trainer_state and self.world == 1:  # dropout draws from the process-wide generator
            torch.set_rng_state(trainer_state["torch_rng"])
        if "losses" in trainer_state:
            self.losses = [float(v) for v in trainer_state["losses"]]
        self.step = checkpoint.step
