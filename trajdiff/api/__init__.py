"""The Python face of trajdiff: train, forecast, evaluate, calibrate and impute for any domain.

Each function works from what a user has (a domain name, a data file or DataFrame, a model
directory) and is what the command line calls. The domain, found through the plugin manager,
does everything data-specific: loading, encoding into a local normalized frame and back, metrics.

    from trajdiff import api
    api.train("timeseries", "ETTh1.csv", "runs/etth1", steps=2000)
    frame = api.forecast("runs/etth1", "ETTh1.csv", samples=20, out="forecast.csv", plot="forecast.png")
    api.calibrate("runs/etth1", "validation.csv", spread=False, antithetic=True)   # stored, applied from now on
    scores = api.evaluate("runs/etth1", "test.csv", antithetic=True)

The modules, read top-down: `checks` (arguments, a model's stored defaults and the samples, checked where
they enter and before anything is written), `loading` (model directories, encoders, windows), `training`, `sampling`
(futures for encoded contexts), `forecasting`, `backtesting` (evaluate, calibrate), `imputation`
(impute, anomaly scores), `distillation` (a few-step student of a trained model), `output` (files) and `plots`.
"""

from __future__ import annotations

from trajdiff.api.backtesting import Backtest, backtest, calibrate, evaluate
from trajdiff.api.distillation import DistillSummary, distill
from trajdiff.api.forecasting import ForecastResult, forecast
from trajdiff.api.imputation import AnomalyResult, ImputeResult, anomaly_scores, impute
from trajdiff.api.loading import LoadedModel, context_tokens, encode_windows, load_model, make_encoder
from trajdiff.api.output import write_forecast, write_json, write_table
from trajdiff.api.plots import plot_forecasts
from trajdiff.api.sampling import keep_representatives, sample_futures
from trajdiff.api.training import TrainSummary, train

__all__ = [
    "AnomalyResult", "Backtest", "DistillSummary", "ForecastResult", "ImputeResult", "LoadedModel", "TrainSummary",
    "anomaly_scores", "backtest", "calibrate", "context_tokens", "distill", "encode_windows", "evaluate", "forecast",
    "impute", "keep_representatives", "load_model", "make_encoder", "plot_forecasts", "sample_futures", "train",
    "write_forecast", "write_json", "write_table",
]
