"""The scan report: section 1's events for each run and series.

Series of a run: the representation entropy H̃ (metric ``repr_entropy``,
threshold 0.61 unless ``--threshold`` or a calibration says otherwise) and
the entropy of each weight matrix (no default threshold: thresholds do not
carry over between representations and weights, so only a calibration
supplies one). T_grok comes from the run's accuracy metric. With a
calibration, each series whose latest value lies above its H* gets a
predicted T_grok from ΔT = C1 (v − H*)^γ with the calibration's interval.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from grokspec import __version__
from grokspec.events import detect_events, grok_step
from grokspec.spectral import REPRESENTATION_THRESHOLD

if TYPE_CHECKING:
    from grokspec.discovery import RunSpec
    from grokspec.scan import ScanOptions

__all__ = ["build_report", "load_calibration", "predict", "series_table", "GROK_METRICS", "CALIBRATION_FORMAT"]

REPORT_FORMAT = "grokspec-report/1"
CALIBRATION_FORMAT = "grokspec-calibration/1"
REPRESENTATION = "representation"
#: Accuracy metrics that define T_grok, in order of preference.
GROK_METRICS = ("test_acc", "eval_accuracy", "eval_acc", "val_acc", "val_accuracy", "test_accuracy", "accuracy")


def load_calibration(path: Path | str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the calibration {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path} is not a grokspec calibration (format {data.get('format') if isinstance(data, dict) else None!r})")
    return data


def series_table(table: pd.DataFrame, run: str) -> dict[str, pd.Series]:
    """A run's entropy series, each a Series indexed by step: 'representation'
    and one per weight tensor (metric 'entropy')."""
    mine = table[(table["run"] == run) & table["value"].notna()]
    out: dict[str, pd.Series] = {}
    rep = mine[(mine["tensor"] == "") & (mine["metric"] == "repr_entropy")]
    if not rep.empty:
        # The training log and the checkpoint forward passes agree where both
        # exist; the log is denser, so it wins on shared steps.
        rep = rep.assign(priority=(rep["step_source"] != "log").astype(int)).sort_values(["step", "priority"])
        out[REPRESENTATION] = rep.drop_duplicates("step").set_index("step")["value"].astype(float)
    weights = mine[(mine["tensor"] != "") & (mine["metric"] == "entropy")]
    for tensor, rows in weights.groupby("tensor", sort=True):
        out[str(tensor)] = rows.drop_duplicates("step").set_index("step")["value"].astype(float).sort_index()
    return out


def _accuracy(table: pd.DataFrame, run: str, preferred: str | None) -> tuple[str | None, pd.Series | None]:
    mine = table[(table["run"] == run) & (table["tensor"] == "") & table["value"].notna()]
    for metric in ([preferred] if preferred else list(GROK_METRICS)):
        rows = mine[mine["metric"] == metric]
        if not rows.empty:
            return metric, rows.drop_duplicates("step").set_index("step")["value"].astype(float).sort_index()
    return None, None


def predict(last_step: int, last_value: float, law: dict[str, Any], h_star: float) -> dict[str, Any]:
    """Time-to-grok from the calibrated power law at the latest point."""
    gap = last_value - h_star
    delta = law["c1"] * gap ** law["gamma"] if gap > 0 else 0.0
    predicted = last_step + delta
    interval = float(law.get("interval_steps", 0.0))
    return {
        "from_step": int(last_step),
        "value": float(last_value),
        "predicted_t_grok": round(predicted),
        "interval": [round(max(last_step, predicted - interval)), round(predicted + interval)],
    }


def _threshold(name: str, options: ScanOptions, calibration: dict[str, Any] | None) -> tuple[float | None, str]:
    calibrated = (calibration or {}).get("series", {}).get(name)
    if name == REPRESENTATION:
        if options.threshold is not None:
            return options.threshold, "option"
        if calibrated:
            return float(calibrated["h_star"]), "calibration"
        return REPRESENTATION_THRESHOLD, "default"
    if calibrated:
        return float(calibrated["h_star"]), "calibration"
    return None, "none"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(
    table: pd.DataFrame,
    runs: list[RunSpec],
    options: ScanOptions,
    calibration: dict[str, Any] | None,
    warnings: list[str],
    failed_checkpoints: int,
) -> dict[str, Any]:
    run_reports = []
    for run in runs:
        steps = table[(table["run"] == run.name) & (table["step_source"] != "log")]
        grok_metric, accuracy = _accuracy(table, run.name, options.grok_metric)
        series_reports: list[dict[str, Any]] = []
        for name, values in series_table(table, run.name).items():
            threshold, source = _threshold(name, options, calibration)
            events = detect_events(
                list(values.index),
                list(values.values),
                None if accuracy is None else list(accuracy.values),
                accuracy_steps=None if accuracy is None else list(accuracy.index),
                threshold=threshold,
                persist=options.persist,
                level=options.grok_level,
            )
            events_dict = asdict(events)
            calibrated = (calibration or {}).get("series", {}).get(name)
            prediction = None
            if calibrated and calibrated.get("power_law") and events.t_grok is None and len(values):
                prediction = predict(int(values.index[-1]), float(values.values[-1]), calibrated["power_law"], float(calibrated["h_star"]))
            series_reports.append({
                "series": name,
                "metric": "repr_entropy" if name == REPRESENTATION else "entropy",
                "threshold": threshold,
                "threshold_source": source,
                "points": int(len(values)),
                "first": _clean(float(values.values[0])) if len(values) else None,
                "last": _clean(float(values.values[-1])) if len(values) else None,
                "min": _clean(float(values.min())) if len(values) else None,
                "events": events_dict,
                "prediction": prediction,
            })
        primary = next((s for s in series_reports if s["series"] == REPRESENTATION), None)
        if primary is None:
            calibrated_series = [s for s in series_reports if s["threshold"] is not None and s["events"]["crossing"] is not None]
            primary = min(calibrated_series, key=lambda s: s["events"]["crossing"], default=None)
        t_grok = None if accuracy is None else grok_step(list(accuracy.index), list(accuracy.values), level=options.grok_level)
        headline = primary["events"] if primary else {
            "crossing": None, "t_collapse": None, "t_grok": t_grok, "lead_cross": None, "lead_collapse": None,
            "status": "grokked" if t_grok is not None else "not-crossed",
        }
        sources = steps.drop_duplicates("checkpoint")["step_source"].value_counts().to_dict()
        run_reports.append({
            "run": run.name,
            "kind": run.kind,
            "checkpoints": int(steps["checkpoint"].nunique()),
            "steps": [int(steps["step"].min()), int(steps["step"].max())] if not steps.empty else None,
            "step_sources": {str(k): int(v) for k, v in sources.items()},
            "grok_metric": grok_metric,
            "primary_series": primary["series"] if primary else None,
            "threshold": primary["threshold"] if primary else None,
            "threshold_source": primary["threshold_source"] if primary else None,
            **{k: headline[k] for k in ("status", "crossing", "t_collapse", "t_grok", "lead_cross", "lead_collapse")},
            "prediction": primary["prediction"] if primary else None,
            "weight_series": sum(1 for s in series_reports if s["series"] != REPRESENTATION),
            "weight_series_collapsed_before_grok": sum(
                1 for s in series_reports
                if s["series"] != REPRESENTATION and s["events"]["lead_collapse"] is not None and s["events"]["lead_collapse"] > 0
            ),
            "series": series_reports,
        })
    return {
        "format": REPORT_FORMAT,
        "grokspec_version": __version__,
        "options": {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "calibration": str(options.calibration) if options.calibration else None,
        "runs": run_reports,
        "warnings": warnings,
        "failed_checkpoints": failed_checkpoints,
    }

