"""ETTh1 multivariate forecasting, standard protocol, trajdiff beside baselines trained in the same run.

Protocol (Zhou et al., 2021; as used by DLinear and PatchTST): train / val / test = first 12 / next
4 / next 4 months (30-day months, hourly rows); test windows may take their 96 rows of context from
the end of the validation months; all 7 variables standardized with training statistics; MSE and
MAE on standardized values over every test window (stride 1) and every variable.

trajdiff is trained through the public API on the training months only (a DataFrame), in rounds of
--round-steps up to --steps, keeping the round with the lowest validation MSE, and sampled through
`api.sample_futures` (antithetic pairs unless --no-antithetic); its point forecast is the per-element
median of the samples, and CRPS and 50% / 90% interval coverage come from the same samples. Rows:

- trajdiff as sampled, then calibrated on the validation months (`trajdiff.core.calibration`): the
  weight on the diffusion median against the encoder's linear base, with and without a spread factor
  fitted to 90% coverage;
- the encoder's ridge base alone, and with Gaussian errors of the training residuals' spread (raw and
  calibrated the same way): a probabilistic baseline with the same centre;
- last value, seasonal naive (repeat the last 24 hours), and DLinear (moving-average decomposition +
  two linear maps shared across variables, Adam, early stopping on validation MSE), trained in the
  same run; published DLinear and PatchTST figures for reference.

--max-windows scores an evenly spread subset of the test windows; the ridge base and DLinear are then
also scored on every test window (their ``every_window`` entries).

    .venv/bin/python benchmarks/etth1.py             # full run (both horizons), writes results/etth1.json
    .venv/bin/python benchmarks/etth1.py --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.core import metrics  # noqa: E402
from trajdiff.core.calibration import fit_calibration  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ett" / "ETTh1.csv"
CONTEXT = 96
TRAIN_END, VAL_END, TEST_END = 12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24
NETWORK = {"kind": "transformer", "width": 128, "depth": 3, "heads": 4, "dropout": 0.1}
PUBLISHED = {
    96: {"DLinear (published)": (0.375, 0.399), "PatchTST/64 (published)": (0.370, 0.400)},
    192: {"DLinear (published)": (0.405, 0.416), "PatchTST/64 (published)": (0.413, 0.429)},
}


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    values = frame.drop(columns=["date"]).to_numpy(dtype=np.float64)
    train = values[:TRAIN_END]
    mean, std = train.mean(0), train.std(0)
    z = (values - mean) / std
    return frame.iloc[:TRAIN_END], z[:TRAIN_END], z[TRAIN_END - CONTEXT : VAL_END], z[VAL_END - CONTEXT : TEST_END]


def windows(z: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    view = np.lib.stride_tricks.sliding_window_view(z, CONTEXT + horizon, axis=0).transpose(0, 2, 1)
    return view[:, :CONTEXT], view[:, CONTEXT:]


class DLinear(nn.Module):
    """Zeng et al. (2023): series = trend (moving average, kernel 25) + seasonal; one linear map each."""

    def __init__(self, horizon: int, kernel: int = 25) -> None:
        super().__init__()
        self.kernel = kernel
        self.seasonal = nn.Linear(CONTEXT, horizon)
        self.trend = nn.Linear(CONTEXT, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, F] -> [B, H, F]
        pad = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)
        trend = padded.unfold(1, self.kernel, 1).mean(-1)
        seasonal = x - trend
        return (self.seasonal(seasonal.transpose(1, 2)) + self.trend(trend.transpose(1, 2))).transpose(1, 2)


def train_dlinear(train: np.ndarray, val: np.ndarray, horizon: int, epochs: int, seed: int) -> tuple[DLinear, float]:
    torch.manual_seed(seed)
    model = DLinear(horizon)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    x_train, y_train = (torch.from_numpy(a.copy()).float() for a in windows(train, horizon))
    x_val, y_val = (torch.from_numpy(a.copy()).float() for a in windows(val, horizon))
    best, best_state, patience = float("inf"), None, 0
    started = time.monotonic()
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for lo in range(0, len(order), 32):
            batch = order[lo : lo + 32]
            loss = (model(x_train[batch]) - y_train[batch]).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for group in optimizer.param_groups:  # the reference implementation halves the rate each epoch
            group["lr"] = 5e-3 * 0.5 ** (epoch + 1)
        with torch.no_grad():
            val_mse = float((model(x_val) - y_val).square().mean())
        if val_mse < best:
            best, best_state, patience = val_mse, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            patience += 1
            if patience >= 3:
                break
    model.load_state_dict(best_state)
    return model, time.monotonic() - started


def point_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"mse": float(np.mean((prediction - truth) ** 2)), "mae": float(np.mean(np.abs(prediction - truth)))}


def sample_scores(samples: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    s, t = torch.from_numpy(samples).float(), torch.from_numpy(truth).float()
    scores = point_scores(np.median(samples, axis=0), truth)
    scores["crps"] = float(metrics.crps_samples(s, t).mean())
    scores["coverage50"] = float(metrics.interval_coverage(s, t, 0.5))
    scores["coverage90"] = float(metrics.interval_coverage(s, t, 0.9))
    return scores


def _channels(x: np.ndarray, independent: bool) -> np.ndarray:
    """[N, L, F] -> [N * F, L, 1] when each variable is its own series (channel independence)."""
    return x.transpose(0, 2, 1).reshape(-1, x.shape[1], 1) if independent else x


def _encode(encoder, x: np.ndarray, horizon: int) -> tuple[np.ndarray, list[dict]]:
    """Standardized windows' histories -> the model's tokens, going through user units as a file would."""
    raw = encoder.normalizer.inverse(np.concatenate([x, np.zeros((len(x), horizon, x.shape[2]))], axis=1))
    encoded, frames = zip(*(encoder.encode(w, CONTEXT) for w in raw), strict=True)
    return np.stack(encoded).astype(np.float32), list(frames)


def _forecast(loaded, contexts, frames, samples: int, nfe: int, seed: int, antithetic: bool = False) -> np.ndarray:
    """Standardized samples [S, N, H, F] of the future."""
    encoder = loaded.encoder
    drawn = api.sample_futures(loaded, contexts, samples=samples, nfe=nfe, seed=seed, antithetic=antithetic)
    decoded = np.stack([encoder.decode(drawn[:, j], frames[j]) for j in range(len(frames))], axis=1)
    return encoder.normalizer.transform(decoded)[:, :, CONTEXT:]


def _base(encoder, contexts: np.ndarray, frames: list[dict]) -> np.ndarray:
    """The encoder's ridge base forecast (standardized, ``[N, H, F]``): each window decoded with a zero residual."""
    context_tokens = CONTEXT // encoder.rows_per_token
    base_tokens = contexts.copy()
    base_tokens[:, context_tokens:] = 0.0
    return np.stack([encoder.normalizer.transform(encoder.decode(base_tokens[j], frames[j]))[CONTEXT:]
                     for j in range(len(frames))])


def _gaussian_samples(base: np.ndarray, spread: np.ndarray, samples: int, seed: int, antithetic: bool) -> np.ndarray:
    """``samples`` draws of base + spread * N(0, 1) per element (``[S, N, H, F]``), mirrored in pairs if asked."""
    rng = np.random.default_rng(seed)
    if antithetic:
        half = rng.standard_normal((samples // 2, *base.shape))
        noise = np.concatenate([half, -half])
    else:
        noise = rng.standard_normal((samples, *base.shape))
    return base + spread * noise


def run_trajdiff(train_frame: pd.DataFrame, train: np.ndarray, val: np.ndarray, test: np.ndarray, horizon: int,
                 args: argparse.Namespace, workdir: Path) -> tuple[list[dict], dict[str, float]]:
    """Trains in rounds, keeps the round with the lowest validation MSE (early stopping, as the
    baselines' protocol does), fits the calibration on validation, then scores the test windows."""
    model_dir, best_dir = workdir / f"etth1-h{horizon}", workdir / f"etth1-h{horizon}-best"
    x_val, y_val = windows(val, horizon)
    pick = np.linspace(0, len(x_val) - 1, min(len(x_val), args.val_windows)).round().astype(int)
    x_val, y_val = _channels(x_val[pick], args.channel_independent), _channels(y_val[pick], args.channel_independent)
    extra = {"load_options": {"split_columns": True}, "encoder": {"instance_norm": True}} \
        if args.channel_independent else {}
    best, history, started = (float("inf"), 0), [], time.monotonic()
    for end in range(args.round_steps, args.steps + 1, args.round_steps):
        api.train("timeseries", train_frame, model_dir, steps=end, history=CONTEXT, horizon=horizon,
                            batch_size=args.batch_size, seed=args.seed, progress=not args.quiet,
                            resume=end > args.round_steps, network=NETWORK, **extra)
        loaded = api.load_model(model_dir)
        contexts, frames = _encode(loaded.encoder, x_val, horizon)
        drawn = _forecast(loaded, contexts, frames, 8, 10, args.seed, args.antithetic)
        val_mse = float(np.mean((np.median(drawn, 0) - y_val) ** 2))
        history.append({"steps": end, "val_mse": val_mse})
        print(f"  h={horizon} steps={end} validation MSE {val_mse:.4f}", flush=True)
        if val_mse < best[0]:
            best = (val_mse, end)
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(model_dir, best_dir)
    train_seconds = time.monotonic() - started
    loaded = api.load_model(best_dir)
    encoder = loaded.encoder
    contexts, frames = _encode(encoder, x_val, horizon)
    val_samples = _forecast(loaded, contexts, frames, args.samples, 10, args.seed + 1, args.antithetic)
    val_base = _base(encoder, contexts, frames)
    calibration = fit_calibration(val_samples, y_val, val_base, level=0.9, data="ETTh1 validation months")
    centred = fit_calibration(val_samples, y_val, val_base, spread=False)
    print(f"  h={horizon}: weight on the diffusion median {calibration.median_weight:.1f}, spread factor "
          f"{calibration.spread_factor:.2f} (validation)")
    x_test, y_test = windows(test, horizon)
    if args.max_windows and len(x_test) > args.max_windows:
        keep = np.linspace(0, len(x_test) - 1, args.max_windows).round().astype(int)
        x_test, y_test = x_test[keep], y_test[keep]
    x_test, y_test = _channels(x_test, args.channel_independent), _channels(y_test, args.channel_independent)
    x_train, y_train = windows(train, horizon)
    contexts, frames = _encode(encoder, _channels(x_train, args.channel_independent), horizon)
    spread = (_base(encoder, contexts, frames) - _channels(y_train, args.channel_independent)).std(axis=0)
    contexts, frames = _encode(encoder, x_test, horizon)
    base = _base(encoder, contexts, frames)
    rows = []
    for nfe in args.nfe:
        started = time.monotonic()
        samples = _forecast(loaded, contexts, frames, args.samples, nfe, args.seed, args.antithetic)
        seconds = time.monotonic() - started
        common = {"horizon": horizon, "nfe": nfe, "samples": args.samples, "antithetic": args.antithetic,
                  "windows": len(x_test), "train_steps": best[1], "train_s": train_seconds}
        rows.append({"method": "trajdiff", **common, **sample_scores(samples, y_test),
                     "windows_per_s": len(x_test) / seconds})
        rows.append({"method": "trajdiff, centre calibrated on validation", **common,
                     "median_weight": centred.median_weight, **sample_scores(centred.apply(samples, base), y_test)})
        rows.append({"method": "trajdiff, centre and spread calibrated on validation", **common,
                     "median_weight": calibration.median_weight, "spread_factor": calibration.spread_factor,
                     **sample_scores(calibration.apply(samples, base), y_test)})
    gaussian = _gaussian_samples(base, spread, args.samples, args.seed, args.antithetic)
    rows.append({"method": "ridge base + Gaussian errors (training residual spread)", "horizon": horizon,
                 "samples": args.samples, "windows": len(x_test), **sample_scores(gaussian, y_test)})
    widened = fit_calibration(_gaussian_samples(val_base, spread, args.samples, args.seed + 1, args.antithetic),
                              y_val, val_base, level=0.9)
    rows.append({"method": "ridge base + Gaussian errors, calibrated on validation", "horizon": horizon,
                 "samples": args.samples, "windows": len(x_test), "spread_factor": widened.spread_factor,
                 **sample_scores(widened.apply(gaussian, base), y_test)})
    forecaster = encoder.forecaster
    ridge = {"method": f"ridge base (trajdiff encoder, anchor {forecaster.anchor})", "horizon": horizon,
             "windows": len(x_test), **point_scores(base, y_test), "anchor": forecaster.anchor,
             "anchor_holdout_mse": forecaster.holdout_mse, "validation_rounds": history}
    every_x, every_y = (_channels(a, args.channel_independent) for a in windows(test, horizon))
    if len(every_x) > len(x_test):  # the base is deterministic and cheap: score it on every test window too
        contexts, frames = _encode(encoder, every_x, horizon)
        ridge["every_window"] = {"windows": len(every_x), **point_scores(_base(encoder, contexts, frames), every_y)}
    return rows, ridge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizons", type=int, nargs="+", default=[96, 192])
    parser.add_argument("--steps", type=int, default=3000, help="most training steps")
    parser.add_argument("--round-steps", type=int, default=500, help="steps between validation checks")
    parser.add_argument("--val-windows", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--max-windows", type=int, default=0, help="evaluate on at most this many test windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--antithetic", action=argparse.BooleanOptionalAction, default=True,
                        help="draw samples in mirrored noise pairs (a steadier median; --no-antithetic: independent)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channel-independent", action="store_true",
                        help="each variable its own series (split_columns) with instance normalization")
    parser.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/etth1.json)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.horizons, args.steps, args.round_steps, args.samples, args.nfe = [96], 100, 50, 4, [5]
        args.max_windows, args.val_windows = 64, 32
    torch.set_num_threads(args.threads)
    if not DATA.exists():
        raise SystemExit(f"ETTh1 not found at {DATA}; see datasets/etth1.md for how to obtain it")
    frame = pd.read_csv(DATA)
    train_frame, train, val, test = split(frame)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as workdir:
        for horizon in args.horizons:
            ours, ridge = run_trajdiff(train_frame, train, val, test, horizon, args, Path(workdir))
            x_test, y_test = windows(test, horizon)
            if args.max_windows and len(x_test) > args.max_windows:
                keep = np.linspace(0, len(x_test) - 1, args.max_windows).round().astype(int)
                x_test, y_test = x_test[keep], y_test[keep]
            dlinear, seconds = train_dlinear(train, val, horizon, epochs=2 if args.quick else 10, seed=args.seed)
            with torch.no_grad():
                predicted = dlinear(torch.from_numpy(x_test.copy()).float()).numpy()
            last = np.repeat(x_test[:, -1:], horizon, axis=1)
            seasonal = np.concatenate([x_test[:, -24:]] * (horizon // 24 + 1), axis=1)[:, :horizon]
            rows += ours
            rows.append(ridge)
            rows.append(
                {
                    "method": "DLinear (same run)",
                    "horizon": horizon,
                    "windows": len(x_test),
                    **point_scores(predicted, y_test),
                    "train_s": seconds,
                }
            )
            every_x, every_y = windows(test, horizon)
            if len(every_x) > len(x_test):
                with torch.no_grad():
                    every = dlinear(torch.from_numpy(every_x.copy()).float()).numpy()
                rows[-1]["every_window"] = {"windows": len(every_x), **point_scores(every, every_y)}
            rows.append(
                {
                    "method": "seasonal naive (24 h)",
                    "horizon": horizon,
                    "windows": len(x_test),
                    **point_scores(seasonal, y_test),
                }
            )
            rows.append(
                {"method": "last value", "horizon": horizon, "windows": len(x_test), **point_scores(last, y_test)}
            )
            for name, (mse, mae) in PUBLISHED[horizon].items():
                rows.append({"method": name, "horizon": horizon, "mse": mse, "mae": mae})
    command = "python benchmarks/etth1.py " + " ".join(sys.argv[1:])
    path = write_results("etth1", command.strip(), rows, args.out or results_path("etth1", args.quick))
    print(
        markdown_table(
            rows,
            [
                "method",
                "horizon",
                "nfe",
                "windows",
                "mse",
                "mae",
                "crps",
                "coverage50",
                "coverage90",
                "windows_per_s",
                "train_s",
            ],
        )
    )
    for row in rows:
        if "every_window" in row:
            every = row["every_window"]
            print(f"{row['method']}, h={row['horizon']}, every test window ({every['windows']}): "
                  f"MSE {every['mse']:.4f}, MAE {every['mae']:.4f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
