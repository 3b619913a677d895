"""ETTh1: how much the linear forecasts alone vary, on every test window (the context for the ETTh1 table).

The closed-form ridge base of the time-series encoder with either anchor (the last value, NLinear-style,
or the mean), and DLinear trained as in `etth1.py` with several seeds, early-stopped on the validation
months (the protocol's baseline) or on the last fifth of the training months instead.

    .venv/bin/python benchmarks/etth1_linear.py      # about 2 minutes; writes results/etth1-linear.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402
from etth1 import CONTEXT, DATA, point_scores, split, train_dlinear, windows  # noqa: E402

from trajdiff.plugins.timeseries.linear import RidgeForecaster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizons", type=int, nargs="+", default=[96, 192])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not DATA.exists():
        raise SystemExit(f"ETTh1 not found at {DATA}; see datasets/etth1.md for how to obtain it")
    _, train, val, test = split(pd.read_csv(DATA))
    cut = int(len(train) * 0.8)
    rows = []
    for horizon in args.horizons:
        x, y = windows(test, horizon)
        for anchor in ("last", "mean"):
            ridge = RidgeForecaster(CONTEXT, horizon, anchor=anchor).fit([train])
            predicted = np.stack([ridge.predict(w) for w in x])
            rows.append({"method": f"ridge, anchor {anchor}", "horizon": horizon, "windows": len(x),
                         **point_scores(predicted, y)})
        for stop, (fit_on, check_on) in {"validation": (train, val),
                                         "last fifth of training": (train[:cut], train[cut - CONTEXT:])}.items():
            for seed in args.seeds:
                model, _ = train_dlinear(fit_on, check_on, horizon, epochs=10, seed=seed)
                with torch.no_grad():
                    predicted = model(torch.from_numpy(x.copy()).float()).numpy()
                rows.append({"method": f"DLinear, early stopping on {stop}", "seed": seed, "horizon": horizon,
                             "windows": len(x), **point_scores(predicted, y)})
                print(f"h={horizon} {rows[-1]['method']} seed {seed}: {rows[-1]['mse']:.4f}", flush=True)
    command = "python benchmarks/etth1_linear.py " + " ".join(sys.argv[1:])
    path = write_results("etth1-linear", command.strip(), rows, args.out or results_path("etth1-linear", False))
    print(markdown_table(rows, ["method", "seed", "horizon", "windows", "mse", "mae"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
