"""The numbers of ``grokspec reproduce``, computed from its runs.

Every number comes from the run directories the plan trained — their
metrics.jsonl (H̃, accuracies, parameter norm and every weight matrix's
entropy at each evaluation) and config.json — and from OUT/plan.json. No
checkpoint is read, so a report can be rebuilt from the metrics alone.
Nothing is typed in here except the paper's column (:mod:`grokspec.repro.paper`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from grokspec.repro.alarm_study import alarm_study
from grokspec.repro.events_table import run_events
from grokspec.repro.paper import PAPER
from grokspec.repro.phases import control_comparison, intervention, two_phases
from grokspec.repro.runs import RunSet, load_runs
from grokspec.repro.stats import summary
from grokspec.repro.weights import calibration_section, weight_side
from grokspec.scan.run_metrics import chance_of

__all__ = ["analyse"]

Log = Callable[[str], None]

_GROKKED_ONLY = ("t_grok", "t_onset", "h_at_grok", "lead_collapse", "lead_cross", "lead_onset_collapse", "lead_onset_cross")
_ALL_RUNS = ("train_acc_1_step", "h_at_train_acc_1", "h_start")


def _events(runs: RunSet, key: str) -> dict[int, dict[str, Any]]:
    chance = chance_of(runs.experiments[key].config_dict)
    return {seed: run_events(frame, chance=chance) for seed, frame in runs.frames(key).items()}


def _group(events: dict[int, dict[str, Any]]) -> dict[str, Any]:
    grokked = [e for e in events.values() if e["t_grok"] is not None]

    def before(event: str, reference: str) -> str:
        hits = [e for e in grokked if e[event] is not None and e[reference] is not None and e[event] < e[reference]]
        return f"{len(hits)}/{len(grokked)}"

    return {
        "runs": len(events),
        "grokked": len(grokked),
        **{key: summary([e[key] for e in grokked]) for key in _GROKKED_ONLY},
        **{key: summary([e[key] for e in events.values()]) for key in _ALL_RUNS},
        "collapse_before_grok": before("t_collapse", "t_grok"),
        "crossing_before_grok": before("crossing", "t_grok"),
        "collapse_before_onset": before("t_collapse", "t_onset"),
        "crossing_before_onset": before("crossing", "t_onset"),
        "test_acc_at_collapse": summary([e["test_acc_at_collapse"] for e in grokked]),
        "per_seed": events,
    }


def _threshold_and_lead(runs: RunSet) -> dict[str, Any]:
    """The companion regime per task, and pooled over tasks."""
    keys = [k for k in runs.keys("grokking") if runs.experiments[k].group == "companion"]
    per_task = {runs.experiments[k].config_dict["task"]: _group(_events(runs, k)) for k in keys}
    pooled_events = {i: e for i, e in enumerate(e for k in keys for e in _events(runs, k).values())}
    pooled = _group(pooled_events)
    pooled.pop("per_seed")
    return {"per_task": per_task, "pooled": pooled}


def _plateau(runs: RunSet) -> dict[str, Any] | None:
    """The plateau regime: memorization, onset and grokking, and the ratio the regime promises."""
    key = next((k for k in runs.keys("grokking") if runs.experiments[k].group == "plateau"), None)
    if key is None:
        return None
    events = _events(runs, key)
    ratios = [e["t_grok"] / e["train_acc_1_step"] for e in events.values() if e["t_grok"] is not None and e["train_acc_1_step"]]
    group = _group(events)
    group["grok_over_memorization"] = summary(ratios)
    group["runs_with_ratio_at_least_4"] = f"{sum(1 for r in ratios if r >= 4)}/{len(ratios)}"
    group["config"] = runs.experiments[key].config_dict
    group["tuning_seeds"] = list(runs.experiments[key].tuning_seeds)
    return group


def _controls(runs: RunSet) -> dict[str, Any]:
    out = {}
    for key in runs.keys("control"):
        frames = runs.frames(key)
        events = _events(runs, key)
        out[runs.experiments[key].group] = {
            "runs": len(frames),
            "grokked": sum(1 for e in events.values() if e["t_grok"] is not None),
            "memorized": sum(1 for e in events.values() if e["train_acc_1_step"] is not None),
            "steps": summary([e["steps_trained"] for e in events.values()]),
            "h_max": summary([float(f["repr_entropy"].max()) for f in frames.values()]),
            "h_end": summary([float(f["repr_entropy"].iloc[-1]) for f in frames.values()]),
            "test_acc_max": summary([float(f["test_acc"].max()) for f in frames.values()]),
            "chance": chance_of(runs.experiments[key].config_dict),
            "config": runs.experiments[key].config_dict,
            "tuning_seeds": list(runs.experiments[key].tuning_seeds),
        }
    return out


def analyse(out: str | Path, *, log: Log | None = None) -> dict[str, Any]:
    """The report of the reproduction in `out` (its plan.json and run dirs)."""
    log = log or (lambda message: None)
    runs = load_runs(Path(out))
    companion = [k for k in runs.keys("grokking") if runs.experiments[k].group == "companion"]
    table = runs.table(companion)
    log("  events, leads and the plateau regime")
    report: dict[str, Any] = {
        "paper": PAPER,
        "setup": runs.setup,
        "threshold": _threshold_and_lead(runs),
        "plateau": _plateau(runs),
        "controls": _controls(runs),
        "two_phases": two_phases(runs, companion),
        "mlp_control": control_comparison(runs),
        "intervention": intervention(runs),
    }
    log("  calibration and the weight side")
    report["calibration"] = calibration_section(table)
    report["weights"] = weight_side(table, report["calibration"]["series"])
    log("  alarm rules: tuning and alarm quality")
    report["alarms"] = alarm_study(runs)
    report["alarm_quality"] = report["alarms"]["alarm_quality"]
    return report
