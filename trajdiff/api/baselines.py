"""Baselines in `evaluate`: each domain's trivial forecasts (`Domain.baselines`) scored on exactly the windows
the model was scored on, the model / baseline ratios, and the table `trajdiff evaluate` prints.

Why: a model can be worse than constant velocity on data unlike its training data (vessels from a port it
never saw) and its own numbers alone do not show it. A baseline is one point forecast per window, scored as
a single sample ``[1, N, H, F]``: on best-of-S metrics (minADE ...) that is its plain error, on spread and
coverage metrics the value of a forecast without spread.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.plugins.spec import BaselineContext, Domain, Encoder

__all__ = ["baseline_context", "compare_baselines", "comparison_table"]

SINGLE_NOTE = ("(baselines: one point forecast per window, scored as a single sample, so best-of-S scores are\n"
               "   plain errors and spread or coverage those of a forecast without spread; model/baseline > 1:\n"
               "   the model is worse)")


def baseline_context(episodes: Episodes, encoder: Encoder, frames: list[dict[str, Any]],
                     windows: list[tuple[int, int]], history: int) -> BaselineContext:
    """What the baselines of these windows may read: columns, the model's encoder, each window's frame, the
    time stamps of its observed rows and its episode's meta (``windows``: (episode, first row) of each)."""
    metas = [episodes.meta[i] if episodes.meta else {} for i, _ in windows]
    times = [np.asarray(meta["times"])[start:start + history] if "times" in meta else np.array([])
             for meta, (_, start) in zip(metas, windows, strict=True)]
    return BaselineContext(columns=list(episodes.columns), encoder=encoder, frames=list(frames), times=times,
                           meta=metas)


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _forecast(baseline: Any, histories: np.ndarray, truth: np.ndarray,
              context: BaselineContext) -> tuple[np.ndarray | None, str | None]:
    """One baseline's forecast ``[N, H, F]``, or None and why (not applicable, failed, wrong shape): a
    broken baseline is reported, never takes the evaluation down."""
    try:
        forecast = baseline(histories, truth.shape[1], context)
    except Exception as error:  # a plugin's baseline: report it by name, keep the others
        return None, f"failed: {type(error).__name__}: {error}"
    if forecast is None:
        return None, "does not apply to these windows"
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.shape != truth.shape:
        return None, f"returned shape {forecast.shape}, expected {truth.shape} ([windows, horizon, columns])"
    return forecast, None


def compare_baselines(domain: Domain, histories: np.ndarray, truth: np.ndarray, context: BaselineContext,
                      model_scores: dict[str, float]) -> dict[str, Any]:
    """Scores every baseline of ``domain`` with its metrics on these windows (``histories [N, h, F]``,
    ``truth [N, H, F]``, user units) and compares the model (``model_scores``) with each.

    Returns ``baselines`` ({name: {metric: value}}), ``ratios`` ({name: {metric: model / baseline}} on the
    domain's point metrics, or on every metric when it declares none), ``main_metric``, ``point_metrics``,
    ``baselines_skipped`` ({name: why}) and ``warnings`` (the model worse than a baseline on a point metric).
    Values that are not finite (a ratio over a zero) are None."""
    metrics = domain.metrics()
    point = [name for name in domain.point_metrics() if name in metrics]
    compared = point or list(metrics)
    scores: dict[str, dict[str, float | None]] = {}
    skipped: dict[str, str] = {}
    for name, baseline in domain.baselines().items():
        forecast, why = _forecast(baseline, histories, truth, context)
        if forecast is None:
            skipped[name] = why or ""
            continue
        scores[name] = {}
        for metric_name, metric in metrics.items():
            try:
                with warnings.catch_warnings():  # spread statistics of one sample warn (and give NaN -> None)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    scores[name][metric_name] = _number(float(metric(forecast[None], truth)))
            except Exception as error:  # a metric that needs several samples
                scores[name][metric_name] = None
                skipped.setdefault(f"{name}.{metric_name}", f"failed: {type(error).__name__}: {error}")
    ratios: dict[str, dict[str, float | None]] = {}
    alerts: list[str] = []
    for name, values in scores.items():
        ratios[name] = {}
        for metric_name in compared:
            model, base = model_scores.get(metric_name), values.get(metric_name)
            ratio = model / base if model is not None and base else math.nan
            ratios[name][metric_name] = _number(ratio)
            if metric_name in point and math.isfinite(ratio) and ratio > 1.0:
                worse = 100.0 * (ratio - 1.0)
                alerts.append(f"the model is {worse:.{0 if worse >= 1.0 else 1}f}% worse than {name} on {metric_name}")
    return {"baselines": scores, "ratios": ratios, "main_metric": compared[0] if compared else None,
            "point_metrics": point, "baselines_skipped": skipped, "warnings": alerts}


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 10_000 else f"{value:.4f}"


def comparison_table(result: dict[str, Any]) -> list[str]:
    """The lines `trajdiff evaluate` prints for ``result`` (from `evaluate`) when its domain has baselines: one
    row for the model and one per baseline, a column per metric and the model / baseline ratio on the main
    metric; then a note on how baselines are scored, the baselines skipped and a warning line wherever the
    model is worse than a baseline on a point metric. No lines without baselines."""
    baselines: dict[str, dict[str, float | None]] = result.get("baselines") or {}
    skipped: dict[str, str] = result.get("baselines_skipped") or {}
    if not baselines and not skipped:
        return []
    metrics = list(result["metrics"])
    main = result.get("main_metric")
    ratio_header = f"model/baseline {main}" if main else ""
    rows = [["model", *(_cell(result["metrics"][m]) for m in metrics), ""]]
    for name, values in baselines.items():
        ratio = (result.get("ratios") or {}).get(name, {}).get(main) if main else None
        rows.append([name, *(_cell(values.get(m)) for m in metrics), "" if ratio is None else f"{ratio:.3f}"])
    header = ["", *metrics, ratio_header]
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]
    lines = ["  " + "  ".join(cell.ljust(w) if k == 0 else cell.rjust(w)
                              for k, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in [header, *rows]]
    if baselines:
        lines += ["  " + line for line in SINGLE_NOTE.splitlines()]
    lines += [f"  baseline {name} skipped: {why}" for name, why in skipped.items()]
    lines += [f"warning: {text}" for text in result.get("warnings") or []]
    return lines
