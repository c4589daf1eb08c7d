"""Sections 2–4 of the reproduction: parameter norm against entropy, the MLP
control against the transformer at its setting, and the intervention."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from grokspec.repro.events_table import run_events
from grokspec.repro.runs import RunSet
from grokspec.repro.stats import summary
from grokspec.scan.run_metrics import chance_of

__all__ = ["control_comparison", "intervention", "two_phases"]


def _norm_run(task: str, seed: int, frame: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    t_grok = run_events(frame)["t_grok"]
    before = frame if t_grok is None else frame[frame["step"] < t_grok]
    n = frame["param_norm"].to_numpy()
    final = n[-1]
    settled = next((int(s) for s, v in zip(frame["step"], n) if abs(v - final) <= 0.05 * final), None)
    corr = float(np.corrcoef(before["param_norm"], before["repr_entropy"])[0, 1]) if len(before) > 2 else None
    at_grok = float(frame.loc[frame["step"] == t_grok, "param_norm"].iloc[0]) if t_grok is not None else None
    record = {
        "task": task,
        "seed": seed,
        "norm_start": float(n[0]),
        "norm_at_grok": at_grok,
        "norm_end": float(final),
        "norm_settles_at": settled,
        "t_grok": t_grok,
        "corr": corr,
    }
    return record, before


def two_phases(runs: RunSet, keys: list[str]) -> dict[str, Any]:
    """Parameter norm against entropy before grokking (the companion runs)."""
    norms: list[float] = []
    entropies: list[float] = []
    per_run = []
    for key in keys:
        task = runs.experiments[key].config_dict["task"]
        for seed, frame in runs.frames(key).items():
            record, before = _norm_run(task, seed, frame)
            per_run.append(record)
            norms.extend(before["param_norm"])
            entropies.extend(before["repr_entropy"])
    corr = float(np.corrcoef(norms, entropies)[0, 1]) if len(norms) > 2 else None
    falling = sum(1 for r in per_run if r["norm_end"] < r["norm_start"])
    grokked = [r for r in per_run if r["t_grok"] is not None]
    settles = sum(1 for r in grokked if r["norm_settles_at"] is not None and r["norm_settles_at"] <= r["t_grok"])
    return {
        "corr_norm_entropy_pre_grok": corr,
        "points": len(norms),
        "per_run_corr": summary([r["corr"] for r in per_run]),
        "norm_start": summary([r["norm_start"] for r in per_run]),
        "norm_at_grok": summary([r["norm_at_grok"] for r in per_run]),
        "norm_end": summary([r["norm_end"] for r in per_run]),
        "runs_with_falling_norm": f"{falling}/{len(per_run)}",
        "norm_settles_before_grok": f"{settles}/{len(grokked)}",
        "per_run": per_run,
    }


def _describe(runs: dict[int, pd.DataFrame]) -> dict[str, Any]:
    per_seed = {}
    for seed, frame in runs.items():
        per_seed[seed] = {
            **run_events(frame),
            "h_max": float(frame["repr_entropy"].max()),
            "h_min": float(frame["repr_entropy"].min()),
            "h_end": float(frame["repr_entropy"].iloc[-1]),
            "test_acc_end": float(frame["test_acc"].iloc[-1]),
            "test_acc_max": float(frame["test_acc"].max()),
            "train_acc_end": float(frame["train_acc"].iloc[-1]),
        }
    values = per_seed.values()
    return {
        "runs": len(per_seed),
        "grokked": sum(1 for s in values if s["t_grok"] is not None),
        "crossed": sum(1 for s in values if s["crossing"] is not None),
        "h_max": summary([s["h_max"] for s in values]),
        "h_min": summary([s["h_min"] for s in values]),
        "test_acc_end": summary([s["test_acc_end"] for s in values]),
        "test_acc_max": summary([s["test_acc_max"] for s in values]),
        "per_seed": per_seed,
    }


def control_comparison(runs: RunSet) -> dict[str, Any] | None:
    """The MLP control against the transformer at the same setting."""
    if "control/mlp" not in runs.records:
        return None
    config = runs.experiments["control/mlp"].config_dict
    return {
        "chance": chance_of(config),
        "p": config["p"],
        "train_fraction": config["train_fraction"],
        "steps": config["steps"],
        "mlp": _describe(runs.frames("control/mlp")),
        "transformer": _describe(runs.frames("comparison/transformer")),
    }


def _t_grok_or_budget(frame: pd.DataFrame) -> tuple[int, bool]:
    t = run_events(frame)["t_grok"]
    return (t, True) if t is not None else (int(frame["step"].iloc[-1]), False)


def _window_entropy(frame: pd.DataFrame, window: list[int]) -> float:
    inside = frame[(frame["step"] >= window[0]) & (frame["step"] < window[1])]
    return float(inside["repr_entropy"].mean())


def intervention(runs: RunSet) -> dict[str, Any] | None:
    """Delays of T_grok under representation mixing, against the same seeds without it."""
    from scipy.stats import mannwhitneyu

    window = runs.setup.get("mixing_window")
    if window is None or "intervention/mixing" not in runs.records:
        return None
    seeds = set(runs.setup["intervention_seeds"])
    baseline = {s: f for s, f in runs.frames("transformer/add").items() if s in seeds}
    base = {s: _t_grok_or_budget(f) for s, f in baseline.items()}
    out: dict[str, Any] = {
        "window": list(window),
        "baseline_t_grok": {s: t for s, (t, _) in base.items()},
        "baseline_window_entropy": summary([_window_entropy(f, window) for f in baseline.values()]),
        "mixing_fraction": runs.experiments["intervention/mixing"].config_dict["mixing_fraction"],
    }
    for name in ("mixing", "norm_matched"):
        frames = runs.frames(f"intervention/{name}")
        treated = {s: _t_grok_or_budget(f) for s, f in frames.items()}
        common = sorted(set(treated) & set(base))
        delays = [treated[s][0] - base[s][0] for s in common]
        grokked = sum(1 for s in common if treated[s][1])
        treated_times = [treated[s][0] for s in common]
        test = mannwhitneyu(treated_times, [base[s][0] for s in common], alternative="greater") if common else None
        out[name] = {
            "t_grok": {s: (t if ok else None) for s, (t, ok) in treated.items()},
            "delay_per_seed": dict(zip(common, delays)),
            "delay": summary(delays),
            "grokked": f"{grokked}/{len(common)}",
            "censored_at_budget": len(common) - grokked,
            "mann_whitney_p": float(test.pvalue) if test is not None else None,
            "window_entropy": summary([_window_entropy(f, window) for f in frames.values()]),
        }
    return out
