"""Joint sampling of the agents of one scene, with the domain's costs coupling them.

Agents that share a group (the same scene at the same time) are sampled in one batch; joint sample
``s`` of a scene is sample ``s`` of each of its agents, so the collision cost can push the agents of
one joint sample apart while the model keeps each plausible.

    from trajdiff import api
    from trajdiff.plugins.traffic.joint import encode_scene, sample_joint
    loaded = api.load_model("runs/eth")
    contexts, frames = encode_scene(loaded, windows)          # windows: [N, 20, F] raw, history first
    xy = sample_joint(loaded, contexts, frames, groups, samples=20, costs={"collision": 0.5})  # [N, 20, 12, 2]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trajdiff.core.conditional import Known, batch_slices, sample_conditional
from trajdiff.core.guidance import CostGradient
from trajdiff.errors import ConfigError, ShapeError
from trajdiff.plugins.traffic.costs import world_positions

__all__ = ["encode_scene", "sample_joint"]


def encode_scene(loaded: Any, windows: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Raw windows ``[N, history + horizon, F]`` (rows after the history may hold anything) -> contexts
    ``[N, T, D]`` with the forecast tokens zeroed, and their frames."""
    windows = np.asarray(windows, dtype=np.float64)
    d = loaded.defaults
    if windows.ndim != 3 or windows.shape[1] != d.length:
        raise ShapeError(f"windows must be [N, {d.length}, F] (history {d.history} + horizon {d.horizon}), "
                         f"got {windows.shape}")
    contexts, frames = [], []
    for window in windows:
        tokens, frame = loaded.encoder.encode_history(window[:d.history], d.horizon)
        contexts.append(tokens)
        frames.append(frame)
    return np.stack(contexts).astype(np.float32), frames


def sample_joint(
    loaded: Any,
    contexts: np.ndarray,
    frames: list[dict[str, Any]],
    groups: np.ndarray | list[Any],
    *,
    samples: int = 20,
    nfe: int | None = None,
    solver: str | None = None,
    costs: dict[str, float] | None = None,
    dt: float = 0.4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    chunk: int = 8192,
) -> np.ndarray:
    """Joint samples of every context's future, positions in user units ``[N, samples, horizon, 2]``.

    ``groups`` (one key per context) says which agents share a scene; contexts of one group are kept
    in one batch (chunks of about ``chunk`` sequences end at group boundaries). ``costs`` maps the
    domain's cost names (``collision``, ``speed``) to guidance scales; ``dt`` is seconds per step for
    the speed limit. ``nfe`` and ``solver`` default to the model's (the ``traffic`` domain: 10 steps of
    DPM-Solver++(2M)).
    """
    model, d = loaded.model, loaded.defaults
    n, length, _ = contexts.shape
    keys = list(groups)
    if len(keys) != n or len(frames) != n:
        raise ShapeError(f"got {n} contexts, {len(frames)} frames and {len(keys)} group keys; pass one of each")
    available = loaded.domain.costs()
    unknown = sorted(set(costs or {}) - set(available))
    if unknown:
        raise ConfigError(f"unknown traffic cost(s) {unknown}; available: {sorted(available)}")
    order = sorted(range(n), key=lambda i: str(keys[i]))  # keep each group contiguous
    ordered_keys = [keys[i] for i in order]
    ordered_frames = [frames[i] for i in order]

    def guides(part: slice, count: int) -> list[CostGradient]:
        meta = [{"group": key, "dt": dt} for key in ordered_keys[part]]
        return [CostGradient(available[name].bind(ordered_frames[part], meta, count), scale=scale)
                for name, scale in (costs or {}).items()]

    known = Known.history(torch.from_numpy(np.asarray(contexts, dtype=np.float32)[order]), d.history)
    x = sample_conditional(
        model.denoiser(ema=True), model.schedule, known, samples=samples, nfe=nfe or d.nfe, solver=solver or d.solver,
        guides=guides, generator=torch.Generator().manual_seed(seed),  # start noise, drawn on the CPU
        step_generator=torch.Generator(device=device).manual_seed(seed + 1),  # ancestral steps' noise, where x lives
        slices=batch_slices(n, samples, chunk, groups=ordered_keys), device=device,
    )  # [S, N, T, D] in group order
    out = np.empty((n, samples, length - d.history, 2))
    with torch.no_grad():
        flat = x.transpose(0, 1).reshape(n * samples, length, -1)
        xy = world_positions(flat, [f for f in ordered_frames for _ in range(samples)])
    out[order] = xy.reshape(n, samples, -1, 2).cpu().numpy()
    return out
