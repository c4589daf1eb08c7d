"""The numbers of ``grokspec reproduce``, computed from its runs.

Every number comes from the run directories the reproduction trained (their
metrics.jsonl: H̃, accuracies and parameter norm at every evaluation) and
from ``grokspec scan`` of their checkpoints (the weight side). Nothing is
typed in here except the paper's column (PAPER).
"""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from grokspec.scan.calibrate import calibrate_table, fit_power_law
from grokspec.events import collapse_step, crossing_step, grok_step
from grokspec.scan.trajectories import REPRESENTATION, series_table
from grokspec.lab.rundir import RunDir
from grokspec.scan.scan import ScanOptions, default_output_dir, scan

if TYPE_CHECKING:
    from grokspec.repro.plan import Scale

__all__ = ["analyse", "PAPER", "bootstrap_ci", "run_events"]

THRESHOLD = 0.61

#: PAPER.md's table: the only numbers typed in by hand.
PAPER = {
    "t_grok_mean": 14360,
    "t_grok_ci": [12140, 17100],
    "train_acc_1_step": 500,
    "h_start": 0.78,
    "h_star_mean": 0.609,
    "h_star_ci": [0.595, 0.624],
    "h_star_range": [0.584, 0.654],
    "h_star_by_task": {"add": 0.605, "mul": 0.589, "sub": 0.589, "s5": 0.655},
    "collapse_before_grok": "10/10",
    "lead_collapse_mean": 1020,
    "lead_collapse_ci": [890, 1140],
    "corr_norm_entropy": -0.248,
    "mixing_delay": 5020,
    "mixing_p": 0.044,
    "norm_matched_delay": 8304,
    "norm_matched_p": 5e-5,
    "norm_matched_grokked": "28/30",
    "mlp_entropy": [0.76, 0.15],
    "mlp_test_acc": "near 0 for 80,000 steps",
    "law_c1": 2.45e5,
    "law_gamma": 1.65,
    "law_r2": 0.54,
    "law_interval": 6000,
}


def bootstrap_ci(values: list[float], *, resamples: int = 10000, seed: int = 0) -> list[float] | None:
    """95% percentile bootstrap CI of the mean (None for fewer than 2 values)."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(data) < 2:
        return None
    means = np.random.default_rng(seed).choice(data, size=(resamples, len(data)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    data = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not data:
        return {"n": 0, "mean": None, "ci": None, "range": None}
    return {"n": len(data), "mean": float(np.mean(data)), "ci": bootstrap_ci(data), "range": [min(data), max(data)]}


def _records(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(RunDir(run_dir).read_metrics())


def run_events(frame: pd.DataFrame, *, level: float = 0.99) -> dict[str, Any]:
    """Section 1's events of one run, from its metrics."""
    steps = list(frame["step"])
    h = list(frame["repr_entropy"])
    t_grok = grok_step(steps, list(frame["test_acc"]), level=level)
    crossing = crossing_step(steps, h, THRESHOLD)
    collapse = collapse_step(steps, h)
    at_grok = float(frame.loc[frame["step"] == t_grok, "repr_entropy"].iloc[0]) if t_grok is not None else None
    memorized = grok_step(steps, list(frame["train_acc"]), level=0.999)
    h_at_memorized = float(frame.loc[frame["step"] == memorized, "repr_entropy"].iloc[0]) if memorized is not None else None
    return {
        "t_grok": t_grok,
        "crossing": crossing,
        "t_collapse": collapse,
        "h_at_grok": at_grok,
        "lead_cross": t_grok - crossing if t_grok is not None and crossing is not None else None,
        "lead_collapse": t_grok - collapse if t_grok is not None and collapse is not None else None,
        "train_acc_1_step": memorized,
        "h_at_train_acc_1": h_at_memorized,
        "h_start": float(h[0]),
        "steps_trained": int(steps[-1]),
    }


def _group_runs(root: Path) -> dict[int, pd.DataFrame]:
    runs = {}
    for run_dir in sorted(Path(root).glob("seed_*")):
        if (run_dir / "metrics.jsonl").exists():
            runs[int(run_dir.name.removeprefix("seed_"))] = _records(run_dir)
    return runs


def _threshold_and_lead(tasks: dict[str, dict[int, pd.DataFrame]]) -> dict[str, Any]:
    per_task = {}
    pooled: dict[str, list] = {}
    for task, runs in tasks.items():
        events = {seed: run_events(frame) for seed, frame in runs.items()}
        grokked = [e for e in events.values() if e["t_grok"] is not None]
        collapse_first = [e for e in grokked if e["t_collapse"] is not None and e["t_collapse"] < e["t_grok"]]
        cross_first = [e for e in grokked if e["crossing"] is not None and e["crossing"] < e["t_grok"]]
        per_task[task] = {
            "runs": len(events),
            "grokked": len(grokked),
            "t_grok": _summary([e["t_grok"] for e in grokked]),
            "h_at_grok": _summary([e["h_at_grok"] for e in grokked]),
            "collapse_before_grok": f"{len(collapse_first)}/{len(grokked)}",
            "crossing_before_grok": f"{len(cross_first)}/{len(grokked)}",
            "lead_collapse": _summary([e["lead_collapse"] for e in grokked]),
            "lead_cross": _summary([e["lead_cross"] for e in grokked]),
            "train_acc_1_step": _summary([e["train_acc_1_step"] for e in events.values()]),
            "h_at_train_acc_1": _summary([e["h_at_train_acc_1"] for e in events.values()]),
            "h_start": _summary([e["h_start"] for e in events.values()]),
            "per_seed": events,
        }
        for key in ("t_grok", "h_at_grok", "lead_collapse", "lead_cross", "train_acc_1_step", "h_at_train_acc_1", "h_start"):
            pooled.setdefault(key, []).extend(e[key] for e in (grokked if key in ("t_grok", "h_at_grok", "lead_collapse", "lead_cross") else events.values()))
        pooled.setdefault("collapse_first", []).append((len(collapse_first), len(grokked)))
        pooled.setdefault("cross_first", []).append((len(cross_first), len(grokked)))
    counts = pooled.pop("collapse_first", [])
    cross_counts = pooled.pop("cross_first", [])
    return {
        "per_task": per_task,
        "pooled": {
            **{key: _summary(values) for key, values in pooled.items()},
            "collapse_before_grok": f"{sum(a for a, _ in counts)}/{sum(b for _, b in counts)}",
            "crossing_before_grok": f"{sum(a for a, _ in cross_counts)}/{sum(b for _, b in cross_counts)}",
        },
    }


def _two_phases(tasks: dict[str, dict[int, pd.DataFrame]]) -> dict[str, Any]:
    """Parameter norm against entropy before grokking."""
    norms, entropies, per_run = [], [], []
    for task, runs in tasks.items():
        for seed, frame in runs.items():
            t_grok = run_events(frame)["t_grok"]
            before = frame if t_grok is None else frame[frame["step"] < t_grok]
            norms.extend(before["param_norm"])
            entropies.extend(before["repr_entropy"])
            n = frame["param_norm"].to_numpy()
            final = n[-1]
            settled = next((int(s) for s, v in zip(frame["step"], n) if abs(v - final) <= 0.05 * final), None)
            corr = float(np.corrcoef(before["param_norm"], before["repr_entropy"])[0, 1]) if len(before) > 2 else None
            per_run.append({
                "task": task, "seed": seed, "norm_start": float(n[0]), "norm_at_grok": float(frame.loc[frame["step"] == t_grok, "param_norm"].iloc[0]) if t_grok is not None else None,
                "norm_end": float(final), "norm_settles_at": settled, "t_grok": t_grok, "corr": corr,
            })
    corr = float(np.corrcoef(norms, entropies)[0, 1]) if len(norms) > 2 else None
    falling = sum(1 for r in per_run if r["norm_end"] < r["norm_start"])
    return {
        "corr_norm_entropy_pre_grok": corr,
        "points": len(norms),
        "per_run_corr": _summary([r["corr"] for r in per_run]),
        "norm_start": _summary([r["norm_start"] for r in per_run]),
        "norm_at_grok": _summary([r["norm_at_grok"] for r in per_run]),
        "norm_end": _summary([r["norm_end"] for r in per_run]),
        "runs_with_falling_norm": f"{falling}/{len(per_run)}",
        "norm_settles_before_grok": f"{sum(1 for r in per_run if r['t_grok'] is not None and r['norm_settles_at'] is not None and r['norm_settles_at'] <= r['t_grok'])}/{sum(1 for r in per_run if r['t_grok'] is not None)}",
        "per_run": per_run,
    }


def _control(mlp: dict[int, pd.DataFrame], transformer: dict[int, pd.DataFrame], p: int) -> dict[str, Any]:
    def describe(runs: dict[int, pd.DataFrame]) -> dict[str, Any]:
        per_seed = {}
        for seed, frame in runs.items():
            events = run_events(frame)
            per_seed[seed] = {
                **events,
                "h_max": float(frame["repr_entropy"].max()),
                "h_min": float(frame["repr_entropy"].min()),
                "h_end": float(frame["repr_entropy"].iloc[-1]),
                "test_acc_end": float(frame["test_acc"].iloc[-1]),
                "test_acc_max": float(frame["test_acc"].max()),
                "train_acc_end": float(frame["train_acc"].iloc[-1]),
            }
        return {
            "runs": len(per_seed),
            "grokked": sum(1 for s in per_seed.values() if s["t_grok"] is not None),
            "crossed": sum(1 for s in per_seed.values() if s["crossing"] is not None),
            "h_max": _summary([s["h_max"] for s in per_seed.values()]),
            "h_min": _summary([s["h_min"] for s in per_seed.values()]),
            "test_acc_end": _summary([s["test_acc_end"] for s in per_seed.values()]),
            "test_acc_max": _summary([s["test_acc_max"] for s in per_seed.values()]),
            "per_seed": per_seed,
        }

    return {"chance": 1.0 / p, "mlp": describe(mlp), "transformer": describe(transformer)}


def _intervention(baseline: dict[int, pd.DataFrame], mixed: dict[int, pd.DataFrame], matched: dict[int, pd.DataFrame], window: tuple[int, int]) -> dict[str, Any]:
    from scipy.stats import mannwhitneyu

    def t_grok_or_budget(frame: pd.DataFrame) -> tuple[int, bool]:
        t = run_events(frame)["t_grok"]
        return (t, True) if t is not None else (int(frame["step"].iloc[-1]), False)

    def window_entropy(frame: pd.DataFrame) -> float:
        inside = frame[(frame["step"] >= window[0]) & (frame["step"] < window[1])]
        return float(inside["repr_entropy"].mean())

    base = {s: t_grok_or_budget(f) for s, f in baseline.items()}
    out: dict[str, Any] = {
        "window": list(window),
        "baseline_t_grok": {s: t for s, (t, _) in base.items()},
        "baseline_window_entropy": _summary([window_entropy(f) for f in baseline.values()]),
    }
    for name, runs in (("mixing", mixed), ("norm_matched", matched)):
        treated = {s: t_grok_or_budget(f) for s, f in runs.items()}
        seeds = sorted(set(treated) & set(base))
        delays = [treated[s][0] - base[s][0] for s in seeds]
        grokked = sum(1 for s in seeds if treated[s][1])
        test = mannwhitneyu([treated[s][0] for s in seeds], [base[s][0] for s in seeds], alternative="greater") if seeds else None
        out[name] = {
            "t_grok": {s: (t if ok else None) for s, (t, ok) in treated.items()},
            "delay_per_seed": dict(zip(seeds, delays)),
            "delay": _summary(delays),
            "grokked": f"{grokked}/{len(seeds)}",
            "censored_at_budget": len(seeds) - grokked,
            "mann_whitney_p": float(test.pvalue) if test is not None else None,
            "window_entropy": _summary([window_entropy(f) for f in runs.values()]),
        }
    return out


def _prediction_usefulness(table: pd.DataFrame, h_star: float) -> dict[str, Any]:
    """Leave-one-run-out: fit the law on the other runs, predict this run's
    T_grok from each of its points after the peak, and bin the absolute
    error by how far ahead of T_grok the prediction was made."""
    from grokspec.scan.calibrate import power_law_points

    runs = {}
    for run in table["run"].unique():
        mine = table[(table["run"] == run) & (table["tensor"] == "")]
        acc = mine[mine["metric"] == "test_acc"].sort_values("step")
        t_grok = grok_step(list(acc["step"]), list(acc["value"]))
        series = series_table(table, run).get(REPRESENTATION)
        if t_grok is not None and series is not None:
            runs[run] = power_law_points(series, t_grok, h_star)
    bins = [(0, 500), (500, 1000), (1000, 2000), (2000, 10**9)]
    errors: dict[str, list[float]] = {f"{a}-{b if b < 10**9 else 'inf'}": [] for a, b in bins}
    for held_out, (gaps, delays) in runs.items():
        rest_g = np.concatenate([g for r, (g, _) in runs.items() if r != held_out] or [np.empty(0)])
        rest_d = np.concatenate([d for r, (_, d) in runs.items() if r != held_out] or [np.empty(0)])
        law = fit_power_law(rest_g, rest_d)
        if law is None:
            continue
        for gap, delay in zip(gaps, delays):
            error = abs(law["c1"] * gap ** law["gamma"] - delay)
            for (a, b), key in zip(bins, errors):
                if a <= delay < b:
                    errors[key].append(float(error))
    return {key: {"points": len(v), "median_abs_error": float(np.median(v)) if v else None} for key, v in errors.items()}


def _weight_side(table: pd.DataFrame, calibration: dict[str, Any]) -> dict[str, Any]:
    """Each weight matrix's entropy series across runs: how often it
    collapses (the paper's rule) before T_grok, and with what lead."""
    out: dict[str, dict[str, Any]] = {}
    representation_leads = []
    for run in table["run"].unique():
        mine = table[(table["run"] == run) & (table["tensor"] == "")]
        acc = mine[mine["metric"] == "test_acc"].sort_values("step")
        t_grok = grok_step(list(acc["step"]), list(acc["value"]))
        for name, series in series_table(table, run).items():
            collapse = collapse_step(list(series.index), list(series.values))
            lead = t_grok - collapse if collapse is not None and t_grok is not None else None
            if name == REPRESENTATION:
                representation_leads.append(lead)
                continue
            entry = out.setdefault(name, {"runs": 0, "grokked": 0, "collapsed_before_grok": 0, "leads": [], "first": [], "at_grok": []})
            entry["runs"] += 1
            entry["first"].append(float(series.values[0]))
            if t_grok is None:
                continue
            entry["grokked"] += 1
            at = series[series.index <= t_grok]
            entry["at_grok"].append(float(at.values[-1]) if len(at) else None)
            if lead is not None and lead > 0:
                entry["collapsed_before_grok"] += 1
                entry["leads"].append(lead)
    tensors = {}
    for name, entry in sorted(out.items()):
        calibrated = calibration["series"].get(name, {})
        tensors[name] = {
            "runs": entry["runs"],
            "grokked": entry["grokked"],
            "collapsed_before_grok": entry["collapsed_before_grok"],
            "lead_collapse": _summary(entry["leads"]),
            "entropy_first": _summary(entry["first"]),
            "entropy_at_grok": _summary(entry["at_grok"]),
            "h_star": calibrated.get("h_star"),
            "h_star_ci": calibrated.get("h_star_ci"),
            "power_law_r2": (calibrated.get("power_law") or {}).get("r2"),
        }
    return {"tensors": tensors, "representation_lead_collapse": _summary([l for l in representation_leads if l is not None and l > 0])}


def analyse(out: Path, plan: Scale, window: tuple[int, int], *, log=None) -> dict[str, Any]:
    from grokspec.repro.plan import experiment_dirs

    log = log or (lambda message: None)
    dirs = experiment_dirs(Path(out))
    tasks = {task: _group_runs(dirs["transformer"] / task) for task in plan.tasks}
    log("  scanning the transformer runs' checkpoints (weights)")
    result = scan(dirs["transformer"], ScanOptions(representation=False), cache_path=default_output_dir(dirs["transformer"]) / "cache.sqlite")
    calibration = calibrate_table(result.table)
    rep = calibration["series"].get(REPRESENTATION, {})
    baseline = {s: f for s, f in tasks.get("add", {}).items() if s in plan.intervention_seeds}
    return {
        "paper": PAPER,
        "threshold": _threshold_and_lead(tasks),
        "two_phases": _two_phases(tasks),
        "mlp_control": _control(_group_runs(dirs["control"] / "mlp"), _group_runs(dirs["control"] / "transformer"), plan.mlp.p),
        "intervention": _intervention(baseline, _group_runs(dirs["intervention"] / "mixing"), _group_runs(dirs["intervention"] / "norm_matched"), window),
        "calibration": {
            "h_star": rep.get("h_star"),
            "h_star_ci": rep.get("h_star_ci"),
            "h_star_range": rep.get("h_star_range"),
            "runs": len(calibration["runs"]),
            "power_law": rep.get("power_law"),
            "prediction_by_lead": _prediction_usefulness(result.table, rep["h_star"]) if rep else None,
        },
        "weights": _weight_side(result.table, calibration),
        "scan": {"rows": len(result.table), "warnings": result.warnings[:50], "failed_checkpoints": result.failed_checkpoints},
    }
