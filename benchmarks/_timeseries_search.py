"""ETTh1 option search on the validation months only: which trajdiff configuration carries the point forecast.

Each named configuration (`CONFIGS`) is trained through `api.train` on the training months (CPU time of the
process measured), then scored on evenly spread validation windows: the MSE of the sample median and mean,
of the encoder's ridge base, and the weight on the diffusion median that `trajdiff.core.calibration` would
choose. The validation windows are split into two folds (first and second half of the months) so that a
choice is kept only if it holds on both. Test windows are never read here. Each run adds (or replaces) its row
in --results (by configuration, horizon and steps), with the command that made it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/_timeseries_search.py --config mlp-ci --steps 4000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402
from etth1 import DATA, TRAIN_END, VAL_END  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.core.calibration import fit_calibration  # noqa: E402

MLP = {"kind": "window_mlp", "dim": None, "length": None, "width": 256, "depth": 3}
CI = {"split_columns": True}
# name -> (recipe, network, encoder options, load options, lookback rows); "-z" configs are given the training
# months already standardized per column (split_columns alone pools the 7 columns into one normalizer, so the
# ridge base would revert to the pooled mean instead of each column's)
CONFIGS: dict[str, tuple[str | None, dict | None, dict, dict, int]] = {
    "mlp-joint": ("window-mlp", MLP, {}, {}, 96),
    "mlp-ci": ("window-mlp", MLP, {"instance_norm": True}, CI, 96),
    "mlp-ci-global": ("window-mlp", MLP, {"instance_norm": True, "global_base": True}, CI, 96),
    "mlp-ci-raw": ("window-mlp", MLP, {"instance_norm": True, "residual": "none"}, CI, 96),
    "mlp-ci-336": ("window-mlp", MLP, {"instance_norm": True}, CI, 336),
    "mlp-ci-336-global": ("window-mlp", MLP, {"instance_norm": True, "global_base": True}, CI, 336),
    "mlp-ci-512w": ("window-mlp", {**MLP, "width": 512}, {"instance_norm": True}, CI, 96),
    "mlp-ciz": ("window-mlp", MLP, {}, CI, 96),
    "mlp-ciz-global": ("window-mlp", MLP, {"instance_norm": True, "global_base": True}, CI, 96),
    "mlp-ciz-336-global": ("window-mlp", MLP, {"instance_norm": True, "global_base": True}, CI, 336),
    "mlp-ciz-336": ("window-mlp", MLP, {}, CI, 336),
    "mlp-joint-336": ("window-mlp", MLP, {}, {}, 336),
}


def series(frame: pd.DataFrame) -> np.ndarray:
    values = frame.drop(columns=["date"]).to_numpy(dtype=np.float64)
    train = values[:TRAIN_END]
    return (values - train.mean(0)) / train.std(0)


def validation_windows(z: np.ndarray, context: int, horizon: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spread validation windows, each variable its own series: ``[N * 7, context, 1]``, ``[N * 7, H, 1]``."""
    part = z[TRAIN_END - context: VAL_END]
    view = np.lib.stride_tricks.sliding_window_view(part, context + horizon, axis=0).transpose(0, 2, 1)
    pick = np.linspace(0, len(view) - 1, min(len(view), count)).round().astype(int)
    view = view[pick]
    flat = view.transpose(0, 2, 1).reshape(-1, context + horizon, 1)
    return flat[:, :context], flat[:, context:]


def score(model_dir: Path, x: np.ndarray, y: np.ndarray, context: int, samples: int, seed: int,
          joint: bool) -> dict:
    loaded = api.load_model(model_dir)
    encoder = loaded.encoder
    columns = encoder.columns_count
    if joint:  # back to [N, L, 7] windows for a multivariate model
        x, y = (a.reshape(-1, columns, a.shape[1]).transpose(0, 2, 1) for a in (x, y))
    horizon = y.shape[1]
    raw = encoder.normalizer.inverse(np.concatenate([x, np.zeros((len(x), horizon, x.shape[2]))], axis=1))
    tokens, frames = zip(*(encoder.encode(w, context) for w in raw), strict=True)
    tokens = np.stack(tokens).astype(np.float32)
    drawn = api.sample_futures(loaded, tokens, samples=samples, nfe=10, seed=seed, antithetic=True)
    decoded = np.stack([encoder.decode(drawn[:, j], frames[j]) for j in range(len(frames))], axis=1)
    futures = encoder.normalizer.transform(decoded)[:, :, context:]
    base_tokens = tokens.copy()
    base_tokens[:, context // encoder.rows_per_token:] = 0.0
    base = np.stack([encoder.normalizer.transform(encoder.decode(base_tokens[j], frames[j]))[context:]
                     for j in range(len(frames))])
    median, mean = np.median(futures, 0), futures.mean(0)
    half = len(y) // 2
    out = {}
    for name, sl in (("all", slice(None)), ("fold1", slice(0, half)), ("fold2", slice(half, None))):
        out[name] = {key: float(np.mean((pred[sl] - y[sl]) ** 2))
                     for key, pred in (("median", median), ("mean", mean), ("base", base))}
        out[name]["weight"] = fit_calibration(futures[:, sl], y[sl], base[sl], spread=False).median_weight
    inside = (np.quantile(futures, 0.05, axis=0) <= y) & (y <= np.quantile(futures, 0.95, axis=0))
    out["coverage90"] = float(inside.mean())
    out["anchor"] = encoder.forecaster.anchor if encoder.forecaster is not None else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--val-windows", type=int, default=200, help="per variable")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "timeseries_search.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = pd.read_csv(DATA)
    z = series(frame)
    for name in args.config:
        recipe, network, encoder, load_options, context = CONFIGS[name]
        train_frame = frame.iloc[:TRAIN_END].copy()
        if "-ciz" in name:
            train_frame.iloc[:, 1:] = z[:TRAIN_END]
        x, y = validation_windows(z, context, args.horizon, args.val_windows)
        with tempfile.TemporaryDirectory() as tmp:
            before, wall = time.process_time(), time.monotonic()
            summary = api.train("timeseries", train_frame, Path(tmp) / "m", steps=args.steps, history=context,
                                horizon=args.horizon, batch_size=args.batch_size, seed=args.seed, progress=False,
                                network=network, recipe=recipe, encoder=encoder, load_options=load_options)
            train_cpu = (time.process_time() - before) / 60
            before = time.process_time()
            scores = score(Path(tmp) / "m", x, y, context, args.samples, args.seed, joint=not load_options)
        record = {"config": name, "horizon": args.horizon, "steps": args.steps, "batch_size": args.batch_size,
                  "train_cpu_minutes": train_cpu, "score_cpu_minutes": (time.process_time() - before) / 60,
                  "wall_minutes": (time.monotonic() - wall) / 60, "final_loss": summary.final_loss,
                  "val_windows": len(y), "samples": args.samples, **scores}
        record["command"] = "python benchmarks/_timeseries_search.py " + " ".join(sys.argv[1:])
        merge(args.results, record)
        print(json.dumps(record), flush=True)


def merge(path: Path, record: dict) -> None:
    """Adds ``record`` to the results file, replacing a row of the same configuration, horizon and steps."""
    key = (record["config"], record["horizon"], record["steps"])
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else []
    rows = [r for r in rows if (r["config"], r["horizon"], r["steps"]) != key] + [record]
    write_results("timeseries_search", "python benchmarks/_timeseries_search.py --config NAME ... (per row)", rows,
                  path, note="validation months only; test windows are never read")


if __name__ == "__main__":
    main()
