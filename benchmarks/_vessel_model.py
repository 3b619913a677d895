"""Training (or reusing) the model of `vessel.py`: the vessel domain through `api.train`, as `trajdiff train`
runs it."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from trajdiff import api
from trajdiff.core.data import Episodes


def cpu_seconds() -> float:
    """CPU seconds this process has used (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_or_reuse(train: Episodes, out: Path, *, recipe: str | None, steps: int, minutes: float, seed: int,
                   network: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains a vessel model on ``train`` into ``out`` unless ``out`` already holds one trained with the same
    settings (then it is reused, and the record says so). Returns what the results JSON records of training."""
    settings = {"recipe": recipe, "steps": steps, "minutes": minutes, "seed": seed, "network": network,
                "train_tracks": len(train), "train_rows": int(sum(train.lengths))}
    record_path = out / "benchmark_training.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("settings") == settings:
            return {**record, "reused": True}
    started, cpu = time.monotonic(), cpu_seconds()
    summary = api.train("vessel", train, out, recipe=recipe, steps=steps, minutes=minutes, seed=seed,
                        network=network, progress=False, overwrite=True)
    record = {"settings": settings, "steps_done": summary.steps, "seconds": time.monotonic() - started,
              "cpu_minutes": (cpu_seconds() - cpu) / 60.0, "final_loss": summary.final_loss,
              "windows": summary.windows}
    record_path.write_text(json.dumps(record, indent=2))
    return {**record, "reused": False}
