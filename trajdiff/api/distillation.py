"""Distilling a trained model into a few-step student (`distill`), written as a normal model folder.

The student folder holds what a trained one holds (config.json, weights and EMA safetensors, the domain,
encoder and defaults of its teacher), so every command loads it as it loads the teacher. Its config.json
adds ``distilled``: the teacher's folder and the sha256 of the teacher's EMA weights, the method, the
network evaluations it was made for and its steps; its defaults sample with the ``consistency`` solver at
that many evaluations, so forecast, evaluate and the rest use them unless told otherwise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajdiff.api.checks import check_count, check_required, check_seed
from trajdiff.api.columns import align_columns
from trajdiff.api.loading import LoadedModel, context_tokens, load_model, window_source
from trajdiff.api.training import episode_labels
from trajdiff.core.checkpoint import save_checkpoint
from trajdiff.core.data import Episodes
from trajdiff.core.distillation import METHODS, DistillConfig, Distiller, WindowDraw
from trajdiff.errors import CheckpointError, ConfigError
from trajdiff.plugins.manager import Plugins

DEFAULT_STEPS = 2500
STUDENT_SOLVER = "consistency"


@dataclass
class DistillSummary:
    """What a distillation run did."""

    model_dir: Path
    teacher: Path
    method: str
    nfe: int
    steps: int
    seconds: float
    final_loss: float
    windows: str
    """Where the training windows came from: the teacher's own samples, or a data file."""
    stopped_early: bool = False


def distill(
    model_dir: str | Path,
    out: str | Path,
    *,
    nfe: int = 2,
    steps: int | None = None,
    minutes: float | None = None,
    data: Any = None,
    load_options: dict[str, Any] | None = None,
    method: str = "trajectory",
    batch_size: int | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    plugins: Plugins | None = None,
) -> DistillSummary:
    """Distils the model in ``model_dir`` (the teacher) into a student that samples in ``nfe`` network
    evaluations, written to ``out`` as a normal model folder (see the module docstring).

    ``steps`` (default 2,500, as the ETTh1 student in BENCHMARKS.md) student updates, stopped early after
    ``minutes``. Windows come from ``data`` (Episodes, or what the domain reads, with ``load_options``) when
    given, else from the teacher's own samples, so a
    model folder is all distillation needs. ``method``: ``trajectory`` (default) or ``consistency``
    (`trajdiff.core.distillation`). A folder that holds a model is replaced only with ``overwrite``."""
    nfe = check_required(nfe, "nfe")
    steps = check_count(steps, "steps") or DEFAULT_STEPS
    batch_size = check_count(batch_size, "batch_size")
    seed = check_seed(seed)
    if method not in METHODS:
        raise ConfigError(f"unknown distillation method {method!r}; choose one of {', '.join(METHODS)}")
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"minutes must be > 0, got {minutes!r}")
    teacher_dir, out = Path(model_dir), Path(out)
    loaded = load_model(teacher_dir, plugins=plugins)
    record = _teacher_record(teacher_dir)
    _check_out(teacher_dir, out, overwrite)
    d = loaded.defaults
    if d.noise == "rolling":
        raise ConfigError(f"{teacher_dir} was trained with rolling noise levels (for endless streams); distillation "
                          "follows models trained with independent or shared levels")
    if d.condition is not None:
        raise ConfigError(f"{teacher_dir} is conditioned per window ({d.condition!r}); distillation follows "
                          "unconditioned and label-conditioned models")
    if data is None and d.history and d.history_prob >= 1.0:
        raise ConfigError(f"{teacher_dir} always saw its history clean in training (history_prob 1), so it cannot "
                          "sample histories of its own to distil from: pass --data (e.g. its training data)")
    torch.manual_seed(seed)
    draw, windows = _draw(loaded, data, load_options or {})
    network = loaded.model.network.config
    config = DistillConfig(nfe=nfe, steps=steps, method=method, history=context_tokens(loaded.encoder, d),
                           history_prob=d.history_prob if d.history else 0.0, noise=d.noise, max_minutes=minutes,
                           seed=seed, progress=progress, device=device,
                           **({"batch_size": batch_size} if batch_size else {}))
    distiller = Distiller(loaded.model, config, horizon=d.length // loaded.encoder.rows_per_token, dim=network["dim"],
                          draw=draw, cond_dim=int(network.get("cond_dim", 0) or 0))
    result = distiller.fit()
    student = distiller.student.to("cpu")
    student.extra["defaults"] = asdict(replace(d, nfe=nfe, solver=STUDENT_SOLVER))
    final = float(np.mean(result.losses[-50:])) if result.losses else float("nan")
    distilled = {**record, "method": method, "nfe": nfe, "steps": result.step, "windows": windows,
                 "teacher_evaluations": result.teacher_evaluations, "seconds": round(result.seconds, 1),
                 "config": asdict(config)}
    save_checkpoint(out, config={**student.config, "distilled": distilled},
                    tensors={"weights": student.network.state_dict(), "ema": student.ema.state_dict()},
                    metrics={"step": result.step, "loss": final}, step=result.step)
    return DistillSummary(out, teacher_dir, method, nfe, result.step, result.seconds, final, windows,
                          result.stopped_early)


def _teacher_record(teacher_dir: Path) -> dict[str, Any]:
    """The teacher's folder, EMA weights' sha256 and training step; a distilled model is refused as teacher."""
    config_path = teacher_dir / "config.json"
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {config_path}: {error}") from None
    earlier = raw.get("distilled")
    if earlier:
        raise ConfigError(f"{teacher_dir} is itself distilled (from {earlier.get('teacher')}); its predictions are "
                          "ends of the teacher's ODE, not denoisings, so distil its teacher instead")
    ema = raw.get("files", {}).get("ema.safetensors", {})
    return {"teacher": str(teacher_dir.resolve()), "teacher_sha256": ema.get("sha256"),
            "teacher_step": raw.get("step")}


def _check_out(teacher_dir: Path, out: Path, overwrite: bool) -> None:
    if out.resolve() == teacher_dir.resolve():
        raise ConfigError(f"--out {out} is the teacher's own folder; write the distilled model to another folder")
    if (out / "config.json").is_file() and not overwrite:
        raise ConfigError(f"{out} already holds a model: pass --overwrite to replace it, or choose another --out")


def _draw(loaded: LoadedModel, data: Any, options: dict[str, Any]) -> tuple[WindowDraw | None, str]:
    """Training windows from ``data`` (encoded a batch at a time with the teacher's encoder), or None: the
    teacher's own samples."""
    if data is None:
        return None, "teacher samples"
    d = loaded.defaults
    episodes = align_columns(data if isinstance(data, Episodes) else loaded.domain.load(data, **options),
                             loaded.encoder, data)
    _, labels = episode_labels(episodes, np.arange(len(episodes)), d)
    source, _ = window_source(episodes, loaded.encoder, d.history, d.length, d.stride, labels=labels,
                              classes=len(d.labels) if labels is not None else 0)

    def draw(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        x, cond, _ = source.take(torch.randint(len(source), (count,), generator=generator))
        return x, cond, None

    named = (data if isinstance(data, (str, Path)) else f"{len(data)} episodes in memory" if isinstance(data, Episodes)
             else f"a {type(data).__name__}")
    return draw, f"{len(source)} windows of {named}"
