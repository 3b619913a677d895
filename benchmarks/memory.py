"""Peak memory (RSS) of `trajdiff train --steps 50` and `trajdiff forecast` as the data grow.

Two kinds of data, each at 0.2 M, 2 M and 20 M rows:

- timeseries: a generated 3-column CSV (``time,a,b``: one stamp a minute from 2000-01-01, a daily sine and
  a 90-minute cosine with noise), one series; the domain's default model (history 96, horizon 96, patches
  of 16 rows, linear residual), windows of stride 1 over the whole file;
- vessel: a tracktable log of as many AIS reports, made by `make_vessel_log.make_log` (the shared NY Harbor
  week replicated with shifted MMSIs and times), the domain's default model.

Each command runs as its own process (``python -m trajdiff.cli``); its peak RSS is the kernel's
``ru_maxrss`` for that process (``os.wait4``), its time the wall clock. A train row also records the
windows it could draw from (``window_range``: the first and last (episode, start row) of the index) and the
first and last window its 50 steps drew (``windows_drawn``, from the model's config.json), showing that
windows come from the whole file. Every row records the command it ran (``cli``), this script's command line
(``run``), the machine and the date.

    python benchmarks/memory.py --rows 200000 2000000 20000000 --samples 2 --threads 1  # train and forecast
    python benchmarks/memory.py --rows 200000 2000000 20000000 --load                   # the loaders alone
    python benchmarks/memory.py --table                                      # the table for BENCHMARKS.md

Results are merged into ``benchmarks/results/memory.json`` (a row per command, domain and size). The data and
models go to ``--workdir`` (about 2 GB for 20 M rows of each domain). ``--samples 2`` keeps the vessel forecast
at 20 M rows (90,452 tracks with enough history, 180,904 sampled futures) the longest run; the time series has
one entity. The target (issue 15): 20 M rows train within 4 GB, and the peak grows by at most 150 bytes a row
from 2 M to 20 M rows (`table` prints both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine, now, write_results  # noqa: E402
from make_vessel_log import make_log  # noqa: E402

OUT = RESULTS_DIR / "memory.json"
STEPS = 50


def make_series_csv(path: Path, rows: int, chunk: int = 1_000_000) -> None:
    """``rows`` rows of ``time,a,b`` (see the module docstring), written a chunk at a time."""
    rng = np.random.default_rng(0)
    start = np.datetime64("2000-01-01T00:00")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("time,a,b\n")
        for lo in range(0, rows, chunk):
            t = np.arange(lo, min(rows, lo + chunk))
            frame = pd.DataFrame({
                "time": np.datetime_as_string(start + t.astype("timedelta64[m]"), unit="s"),
                "a": np.sin(2 * np.pi * t / 1440) + 0.1 * rng.standard_normal(len(t)),
                "b": np.cos(2 * np.pi * t / 90) + 0.1 * rng.standard_normal(len(t)),
            })
            frame["time"] = frame["time"].str.replace("T", " ")
            frame.to_csv(handle, header=False, index=False, float_format="%.5f")


def data_file(domain: str, rows: int, workdir: Path) -> Path:
    """The benchmark's data file for ``domain`` and ``rows`` (made once, kept in ``workdir``)."""
    path = workdir / (f"series-{rows}.csv" if domain == "timeseries" else f"vessels-{rows}.traj")
    if not path.is_file():
        partial = path.with_suffix(path.suffix + ".part")
        make_series_csv(partial, rows) if domain == "timeseries" else make_log(partial, rows)
        partial.rename(path)
    return path


CODE: Path | None = None
"""``--code DIR``: run the trajdiff package found in DIR (e.g. an earlier commit's, from `git archive`)."""


def measure(command: list[str], threads: int) -> dict[str, Any]:
    """Runs ``command``; its peak RSS (MB), wall time, exit code and the tail of its output."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TRAJDIFF_PROGRESS_SECONDS": "30"}
    if CODE is not None:
        env["PYTHONPATH"] = str(CODE)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak RSS (kB on Linux)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1), "seconds": round(time.monotonic() - started, 1),
            "returncode": process.returncode, "output": output.strip().splitlines()[-6:]}


LOAD = ("import sys, trajdiff.memory as m; m.lean_allocators(); from trajdiff.plugins.manager import get_plugins; "
        "e = get_plugins().domain(sys.argv[1]).load(sys.argv[2]); print(len(e), sum(e.lengths))")
"""The domain's loader alone, as the command line runs it (`--load`): what of a command's peak is the loader's."""


def load_only(domain: str, rows: int, workdir: Path, threads: int) -> dict[str, Any]:
    data = data_file(domain, rows, workdir)
    measured = measure([sys.executable, "-c", LOAD, domain, str(data)], threads)
    row = {"method": "trajdiff", "command": "load", "domain": domain, "rows": rows, **measured,
           "cli": f"python -c <load> {domain} {data}"}
    print(json.dumps(row), flush=True)
    return row


def run(domain: str, rows: int, workdir: Path, threads: int, samples: int | None) -> list[dict[str, Any]]:
    data = data_file(domain, rows, workdir)
    model = workdir / f"model-{domain}-{rows}"
    cli = [sys.executable, "-m", "trajdiff.cli"]
    out = []
    train_command = [*cli, "train", "--domain", domain, "--data", str(data), "--out", str(model), "--steps",
                     str(STEPS), "--overwrite", "--threads", str(threads)]
    train = measure(train_command, threads)
    row: dict[str, Any] = {"method": "trajdiff", "command": "train", "domain": domain, "rows": rows, "steps": STEPS,
                           **train, "cli": _shown(train_command)}
    if train["returncode"] == 0:
        metadata = json.loads((model / "config.json").read_text())["metadata"]
        row.update({key: metadata.get(key) for key in ("windows", "episodes", "window_range", "windows_drawn")})
    out.append(row)
    print(json.dumps(row), flush=True)
    if train["returncode"] == 0:
        command = [*cli, "forecast", "--model", str(model), "--data", str(data), "--out",
                   str(workdir / f"forecast-{domain}-{rows}.csv"), "--threads", str(threads)]
        if samples is not None:
            command += ["--samples", str(samples)]
        forecast = measure(command, threads)
        row = {"method": "trajdiff", "command": "forecast", "domain": domain, "rows": rows, **forecast,
               "cli": _shown(command)}
        if samples is not None:
            row["samples"] = samples
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def _shown(command: list[str]) -> str:
    return " ".join(["trajdiff", *command[3:]])


def table(rows: list[dict[str, Any]]) -> str:
    """The BENCHMARKS.md table: peak RSS and time per domain, command and size, and the growth per row."""
    lines = ["| domain | command | rows | peak RSS (MB) | seconds | windows | windows drawn (first, last start) |",
             "|---|---|---|---|---|---|---|"]
    order = {"load": 0, "train": 1, "forecast": 2}
    for r in sorted(rows, key=lambda r: (r["domain"], order.get(r["command"], 3), r["rows"], r.get("code") or "")):
        drawn = r.get("windows_drawn") or {}
        span = f"{drawn['first']} .. {drawn['last']} of {r['window_range'][1]}" if drawn else ""
        windows = f"{r['windows']:,}" if r.get("windows") else ""
        command = r["command"] + (f" ({r['code']})" if r.get("code") else "")
        lines.append(f"| {r['domain']} | {command} | {r['rows']:,} | {r['peak_rss_mb']:,.0f} | {r['seconds']:.0f} "
                     f"| {windows} | {span} |")
    growth = []
    for domain in sorted({r["domain"] for r in rows}):
        for command in ("load", "train", "forecast"):
            by_rows = {r["rows"]: r["peak_rss_mb"] for r in rows if r["domain"] == domain and r["command"] == command
                       and r["returncode"] == 0 and not r.get("code")}
            if 2_000_000 in by_rows and 20_000_000 in by_rows:
                per_row = (by_rows[20_000_000] - by_rows[2_000_000]) * 2**20 / 18_000_000
                growth.append(f"{domain} {command}: {per_row:.0f} bytes per row from 2 M to 20 M rows (target 150), "
                              f"{by_rows[20_000_000] / 1024:.2f} GiB at 20 M rows")
    return "\n".join(lines + ([""] + growth if growth else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000, 20_000_000])
    parser.add_argument("--domain", nargs="+", default=["timeseries", "vessel"], choices=["timeseries", "vessel"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/trajdiff-memory"),
                        help="where the generated data and models go (large: about 1 GB per 20 M rows)")
    parser.add_argument("--threads", type=int, default=1, help="--threads of each command (and OMP_NUM_THREADS)")
    parser.add_argument("--samples", type=int, default=None, help="forecast samples per entity (default: the domain's)")
    parser.add_argument("--table", action="store_true", help="print the table of memory.json and exit")
    parser.add_argument("--load", action="store_true", help="measure the domain's loader alone (rows 'load')")
    parser.add_argument("--code", type=Path, default=None, help="run the trajdiff package in this folder (rows get "
                        "'code': the --label); e.g. `git archive <rev> trajdiff | tar -x -C DIR`")
    parser.add_argument("--label", default=None, help="what --code is, e.g. 'before: 3a87dec'")
    args = parser.parse_args()
    global CODE
    CODE = args.code
    kept = json.loads(OUT.read_text())["rows"] if OUT.is_file() else []
    if args.table:
        print(table(kept))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/memory.py", *sys.argv[1:]])
    for domain in args.domain:
        for rows in args.rows:
            measured = [load_only(domain, rows, args.workdir, args.threads)] if args.load else \
                run(domain, rows, args.workdir, args.threads, args.samples)
            for new in measured:
                if args.code is not None:
                    new["code"] = args.label or str(args.code)
                key = (new["command"], new["domain"], new["rows"], new.get("code"))
                kept = [r for r in kept if (r["command"], r["domain"], r["rows"], r.get("code")) != key]
                kept.append({**new, "machine": machine(), "date": now(), "run": command})
                kept.sort(key=lambda r: (r["domain"], r["command"], r["rows"]))
                write_results("memory", command, kept, OUT, note="rows merged over runs; each row's run and date")
    print(table(kept))
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
