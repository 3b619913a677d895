"""Peak memory (RSS) of `trajdiff forecast` over a log of partitions, streamed, against the same log in memory.

The log: ``--entities`` series per partition (``time,series,x,y``: ``--rows`` hourly rows each, two noisy
sines), as Parquet partition files, for each count in ``--partitions``; the same rows as one Parquet file
for the in-memory forecast. The model: a tiny timeseries transformer (history 16, horizon 8, width 16)
trained for 20 steps on 20 of the series; the forecast draws ``--samples`` samples with 2 network
evaluations, written to a Parquet table. Each forecast runs as its own process (``python -m trajdiff.cli``);
its peak RSS is the kernel's ``ru_maxrss`` for that process (``os.wait4``), its time the wall clock.

    python benchmarks/streaming_memory.py --partitions 2 8 32

A streamed forecast holds one partition and its forecasts, so its peak should stay flat as partitions are
added; the in-memory one holds the whole log and every forecast. Results: ``benchmarks/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, write_results  # noqa: E402


def partition(index: int, entities: int, rows: int) -> pd.DataFrame:
    """``entities`` series of ``rows`` rows, named by partition and number."""
    rng = np.random.default_rng(index)
    t = np.tile(np.arange(rows), entities)
    phase = np.repeat(rng.uniform(0, 2 * np.pi, entities), rows)
    values = np.stack([np.sin(2 * np.pi * t / 24 + phase), 0.5 * np.cos(2 * np.pi * t / 12 + phase)], axis=1)
    frame = pd.DataFrame(values + 0.1 * rng.standard_normal(values.shape), columns=["x", "y"])
    frame.insert(0, "series", np.repeat([f"p{index}-s{k}" for k in range(entities)], rows))
    frame.insert(0, "time", pd.Timestamp("2020-01-01") + pd.to_timedelta(t, unit="h"))
    return frame


def measure(command: list[str]) -> dict[str, Any]:
    """Runs ``command``; its peak RSS (MB), wall time and the last line of its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAJDIFF_PROGRESS_SECONDS": "30"}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1), "seconds": round(time.monotonic() - started, 1),
            "output": output.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--entities", type=int, default=500, help="series per partition")
    parser.add_argument("--rows", type=int, default=200, help="rows per series")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/trajdiff-streaming"))
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "trajdiff.cli"]
    model = work / "model"
    if not (model / "config.json").exists():
        partition(10_000, 20, args.rows).to_csv(work / "train.csv", index=False)
        from trajdiff import api

        api.train("timeseries", work / "train.csv", model, steps=20, history=16, horizon=8, batch_size=16,
                  progress=False, encoder={"patch": 4},
                  network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})
    rows = []
    for count in args.partitions:
        folder = work / f"parts-{count}"
        whole = work / f"whole-{count}.parquet"
        if not folder.exists():
            folder.mkdir()
            for index in range(count):
                partition(index, args.entities, args.rows).to_parquet(folder / f"part-{index:04d}.parquet")
            pd.concat([pd.read_parquet(path) for path in sorted(folder.iterdir())]).to_parquet(whole)
        common = ["--model", str(model), "--samples", str(args.samples), "--nfe", "2"]
        for mode, data in (("streamed", folder), ("in memory", whole)):
            command = [*cli, "forecast", *common, "--data", str(data), "--out", str(work / "forecast.parquet")]
            measured = measure(command)
            row = {"mode": mode, "partitions": count, "entities": count * args.entities,
                   "data_rows": count * args.entities * args.rows, **measured}
            print(row, flush=True)
            rows.append(row)
    command = "python benchmarks/streaming_memory.py " + " ".join(sys.argv[1:])
    print(write_results("streaming", command, rows, RESULTS_DIR / "streaming.json"))


if __name__ == "__main__":
    main()
