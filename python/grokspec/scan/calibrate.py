"""``grokspec calibrate``: thresholds and the time-to-grok law, learned from
runs that grokked (SPEC §5).

For every series (the representation entropy, and each weight tensor by
name) across the runs that grokked:

- H*: the series' value at T_grok (its last evaluation at or before T_grok)
  in each run; the mean, a bootstrap 95% CI over runs, and the range.
- the power law ΔT = C1 (v − H*)^γ, fitted by least squares in log-log
  space on the points after the series' peak before T_grok, up to T_grok,
  where v > H* (the memorization phase *raises* H̃ and obeys no such law);
  R² (log space), the leave-one-run-out mean absolute error in steps, and
  the prediction interval: the 95th percentile of the absolute residual in
  steps.

``scan --calibration FILE`` then uses H* as each series' threshold and the
law to predict T_grok.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grokspec import __version__
from grokspec.events import GROK_LEVEL
from grokspec.scan.options import ScanOptions
from grokspec.scan.report import CALIBRATION_FORMAT
from grokspec.scan.scan import default_output_dir, scan
from grokspec.scan.table import Row, ScanTable, StepSeries
from grokspec.scan.trajectories import REPRESENTATION, run_trajectories

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["calibrate", "calibrate_table", "fit_power_law", "power_law_points"]


def fit_power_law(gaps: np.ndarray, delays: np.ndarray) -> dict[str, float] | None:
    """Least squares of log ΔT = log C1 + γ log gap; None with fewer than 3 points."""
    keep = (gaps > 0) & (delays > 0)
    x, y = np.log(gaps[keep]), np.log(delays[keep])
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    gamma, log_c1 = np.polyfit(x, y, 1)
    predicted = log_c1 + gamma * x
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum((y - predicted) ** 2) / total if total > 0 else 1.0
    residual_steps = np.abs(delays[keep] - np.exp(predicted))
    return {
        "c1": float(np.exp(log_c1)),
        "gamma": float(gamma),
        "r2": float(r2),
        "interval_steps": float(np.percentile(residual_steps, 95)),
        "n_points": len(x),
    }


def power_law_points(values: StepSeries, t_grok: int, h_star: float) -> tuple[np.ndarray, np.ndarray]:
    """(v − H*, T_grok − t) for the points after the series' peak before
    T_grok (the peak itself ends the plateau, it is not yet the fall)."""
    before = values.before(t_grok, inclusive=False)
    if not len(before):
        return np.empty(0), np.empty(0)
    after_peak = int(np.nanargmax(before.values)) + 1
    gaps = before.values[after_peak:] - h_star
    delays = t_grok - before.steps[after_peak:].astype(float)
    keep = gaps > 0
    return gaps[keep].astype(float), delays[keep]


def calibrate_table(
    table: ScanTable | pd.DataFrame,
    *,
    grok_metric: str | None = None,
    level: float = GROK_LEVEL,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The calibration from a scan table holding several runs."""
    table = ScanTable.coerce(table)
    rng = np.random.default_rng(seed)
    per_series: dict[str, dict[str, tuple[float, StepSeries, int]]] = {}
    runs_used, runs_not_grokked = [], []
    for run in table.runs():
        trajectories = run_trajectories(table, str(run), grok_metric=grok_metric, grok_level=level)
        t_grok = trajectories.t_grok
        if t_grok is None:
            runs_not_grokked.append(str(run))
            continue
        runs_used.append(str(run))
        for name, values in trajectories.series.items():
            at = values.before(t_grok)
            if len(at):
                per_series.setdefault(name, {})[str(run)] = (float(at.values[-1]), values, t_grok)
    series_out = {}
    for name, runs in per_series.items():
        h_values = np.array([h for h, _, _ in runs.values()])
        h_star = float(h_values.mean())
        if len(h_values) > 1:
            resampled = rng.choice(h_values, size=(bootstrap, len(h_values)), replace=True).mean(axis=1)
            ci = [float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))]
        else:
            ci = [h_star, h_star]
        points = {run: power_law_points(values, t_grok, h_star) for run, (_, values, t_grok) in runs.items()}
        gaps = np.concatenate([g for g, _ in points.values()]) if points else np.empty(0)
        delays = np.concatenate([d for _, d in points.values()]) if points else np.empty(0)
        law: dict[str, Any] | None = fit_power_law(gaps, delays)
        if law is not None and len(points) > 1:
            errors: list[float] = []
            for held_out, (g_out, d_out) in points.items():
                if len(g_out) == 0:
                    continue
                rest_g = np.concatenate([g for r, (g, _) in points.items() if r != held_out])
                rest_d = np.concatenate([d for r, (_, d) in points.items() if r != held_out])
                fitted = fit_power_law(rest_g, rest_d)
                if fitted is not None:
                    errors.extend(np.abs(d_out - fitted["c1"] * g_out ** fitted["gamma"]))
            law["loo_mae_steps"] = float(np.mean(errors)) if errors else None
        series_out[name] = {
            "metric": "repr_entropy" if name == REPRESENTATION else "entropy",
            "h_star": h_star,
            "h_star_ci": ci,
            "h_star_range": [float(h_values.min()), float(h_values.max())],
            "n_runs": len(h_values),
            "per_run": {run: h for run, (h, _, _) in runs.items()},
            "power_law": law,
        }
    return {
        "format": CALIBRATION_FORMAT,
        "grokspec_version": __version__,
        "grok_level": level,
        "runs": runs_used,
        "runs_not_grokked": runs_not_grokked,
        "series": series_out,
    }


def calibrate(
    run_paths: list[Path], options: ScanOptions | None = None, *, bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Scans each path (using its scan cache) and calibrates on all their runs."""
    options = options or ScanOptions()
    rows: list[Row] = []
    for path in run_paths:
        path = Path(path)
        result = scan(path, options, cache_path=default_output_dir(path) / "cache.sqlite")
        rows.extend(row._replace(run=f"{path}/{row.run}") if len(run_paths) > 1 else row for row in result.rows)
    combined = ScanTable(rows)
    calibration = calibrate_table(
        combined, grok_metric=options.grok_metric, level=options.grok_level, bootstrap=bootstrap, seed=seed
    )
    if not calibration["runs"]:
        raise ValueError("none of the runs grokked, so there is nothing to calibrate on")
    return calibration
