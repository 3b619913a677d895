"""Helpers shared by the benchmark scripts: machine description, timing, results files, tables."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU model, logical cores, torch version, torch threads."""
    return (
        f"{cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"python {platform.python_version()}, torch threads {torch.get_num_threads()}"
    )


def now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def results_path(name: str, quick: bool) -> Path:
    """benchmarks/results/<name>.json for a full run, a temporary file for a ``--quick`` run."""
    if quick:
        return Path(tempfile.gettempdir()) / f"trajdiff-bench-{name}-quick.json"
    return RESULTS_DIR / f"{name}.json"


def write_results(name: str, command: str, rows: list[dict[str, Any]], path: Path, **extra: Any) -> Path:
    """Writes the results file in the agreed format (extra keys go after ``rows``)."""
    payload = {"benchmark": name, "command": command, "date": now(), "machine": machine(), "rows": rows, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def time_once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timeit(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2, number: int = 1) -> dict[str, float]:
    """Median (and min, max) seconds per call of ``fn`` over ``repeats`` timings of ``number`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "repeats": repeats}


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Times several functions in rotating order, one call each per round, so that slow phases of a
    shared machine hit all of them alike. Returns every timing (seconds) per name, in round order."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_once(fns[name]))
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if value == 0.0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``columns`` from ``rows`` (missing values print as '-')."""
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "-")) if c in row else "-" for c in columns) + " |")
    return "\n".join(lines)
