"""Sections 5–6 of the reproduction: the calibration and time-to-grok law,
and the weight side — both from the tidy table of the companion runs' logs
(H̃ and every weight matrix's entropy at each evaluation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from grokspec.events import collapse_step
from grokspec.repro.stats import summary
from grokspec.scan.calibrate import calibrate_table, fit_power_law, power_law_points
from grokspec.scan.table import ScanTable
from grokspec.scan.trajectories import REPRESENTATION, run_trajectories

__all__ = ["LEAD_BINS", "calibration_section", "weight_side"]

#: How far ahead of T_grok a prediction was made (steps), for its error table.
LEAD_BINS = ((0, 500), (500, 1000), (1000, 2000), (2000, 10**9))


def _prediction_usefulness(table: ScanTable, h_star: float) -> dict[str, Any]:
    """Leave-one-run-out: fit the law on the other runs, predict this run's
    T_grok from each of its points after the peak, and bin the absolute
    error by how far ahead of T_grok the prediction was made."""
    runs = {}
    for run in table.runs():
        trajectories = run_trajectories(table, str(run))
        series = trajectories.series.get(REPRESENTATION)
        if trajectories.t_grok is not None and series is not None:
            runs[run] = power_law_points(series, trajectories.t_grok, h_star)
    errors: dict[str, list[float]] = {f"{a}-{b if b < 10**9 else 'inf'}": [] for a, b in LEAD_BINS}
    for held_out, (gaps, delays) in runs.items():
        rest_g = np.concatenate([g for r, (g, _) in runs.items() if r != held_out] or [np.empty(0)])
        rest_d = np.concatenate([d for r, (_, d) in runs.items() if r != held_out] or [np.empty(0)])
        law = fit_power_law(rest_g, rest_d)
        if law is None:
            continue
        for gap, delay in zip(gaps, delays):
            error = abs(law["c1"] * gap ** law["gamma"] - delay)
            for (a, b), key in zip(LEAD_BINS, errors):
                if a <= delay < b:
                    errors[key].append(float(error))
    return {key: {"points": len(v), "median_abs_error": float(np.median(v)) if v else None} for key, v in errors.items()}


def calibration_section(table: ScanTable) -> dict[str, Any]:
    """H* and the law for H̃ (and every series, for the weight side)."""
    calibration = calibrate_table(table) if len(table) else {"runs": [], "series": {}}
    rep = calibration["series"].get(REPRESENTATION, {})
    return {
        "h_star": rep.get("h_star"),
        "h_star_ci": rep.get("h_star_ci"),
        "h_star_range": rep.get("h_star_range"),
        "runs": len(calibration["runs"]),
        "power_law": rep.get("power_law"),
        "prediction_by_lead": _prediction_usefulness(table, rep["h_star"]) if rep else None,
        "series": calibration["series"],
    }


def _new_entry() -> dict[str, Any]:
    return {"runs": 0, "grokked": 0, "collapsed_before_grok": 0, "leads": [], "first": [], "at_grok": []}


def weight_side(table: ScanTable, calibrated: dict[str, Any]) -> dict[str, Any]:
    """Each weight matrix's entropy series across runs: how often it
    collapses (the paper's rule) before T_grok, and with what lead."""
    out: dict[str, dict[str, Any]] = {}
    representation_leads = []
    for run in table.runs():
        trajectories = run_trajectories(table, str(run))
        t_grok = trajectories.t_grok
        for name, series in trajectories.series.items():
            collapse = collapse_step(series.steps.tolist(), series.values.tolist())
            lead = t_grok - collapse if collapse is not None and t_grok is not None else None
            if name == REPRESENTATION:
                representation_leads.append(lead)
                continue
            entry = out.setdefault(name, _new_entry())
            entry["runs"] += 1
            entry["first"].append(float(series.values[0]))
            if t_grok is None:
                continue
            entry["grokked"] += 1
            at = series.before(t_grok)
            entry["at_grok"].append(float(at.values[-1]) if len(at) else None)
            if lead is not None and lead > 0:
                entry["collapsed_before_grok"] += 1
                entry["leads"].append(lead)
    tensors = {}
    for name, entry in sorted(out.items()):
        series_calibration = calibrated.get(name, {})
        tensors[name] = {
            "runs": entry["runs"],
            "grokked": entry["grokked"],
            "collapsed_before_grok": entry["collapsed_before_grok"],
            "lead_collapse": summary(entry["leads"]),
            "entropy_first": summary(entry["first"]),
            "entropy_at_grok": summary(entry["at_grok"]),
            "h_star": series_calibration.get("h_star"),
            "h_star_ci": series_calibration.get("h_star_ci"),
            "power_law_r2": (series_calibration.get("power_law") or {}).get("r2"),
        }
    positive = [lead for lead in representation_leads if lead is not None and lead > 0]
    return {"tensors": tensors, "representation_lead_collapse": summary(positive)}
