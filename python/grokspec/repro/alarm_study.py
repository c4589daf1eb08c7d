"""The alarm study of a reproduction: every rule tuned on the tuning seeds and
scored on the others, over grokking runs and negative controls
(docs/ALARMS.md).

Tuning runs: each experiment's ``tuning_seeds`` (the plateau regime's first
seeds and each control's first seed). Scored runs: every other seed of the
grokking regimes (companion and plateau) and of the controls. Rules without
parameters to tune (the paper's threshold and collapse rules, and
plateau-fall with the package's defaults) are scored on the same runs.
A control that grokked within its budget, or a grokking-regime run that did
not, is left out and listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from grokspec.alarms import (
    REPRESENTATION_SERIES,
    AlarmRule,
    CollapseRule,
    PlateauFallRule,
    PredictorRule,
    ThresholdRule,
    Trajectory,
)
from grokspec.repro.runs import RunSet
from grokspec.scan.alarm_quality import AlarmQuality, alarm_quality, tune, youden
from grokspec.scan.calibrate import fit_power_law, power_law_points
from grokspec.scan.table import StepSeries

__all__ = ["WEIGHT_SERIES", "alarm_study", "plateau_candidates"]

#: The weight-side series compared (attention in/out projections, readout).
WEIGHT_SERIES = ("layers.0.self_attn.in_proj_weight", "layers.0.self_attn.out_proj.weight", "readout.weight")

Runs = list[tuple[str, Trajectory]]


def plateau_candidates(series: str, drops: Sequence[float]) -> list[AlarmRule]:
    """The plateau-fall grid, the most conservative first (ties go to it)."""
    out: list[AlarmRule] = []
    for drop in sorted(drops, reverse=True):
        for persist in (5, 4, 3, 2):
            for lag in (8, 5, None):
                if lag is None or lag >= persist:
                    out.append(PlateauFallRule(drop=drop, persist=persist, lag=lag, series=series))
    return out


def _finite_series(steps: Sequence[int], values: np.ndarray) -> StepSeries:
    """The points of a trajectory that hold a value."""
    keep = ~np.isnan(values)
    return StepSeries(np.asarray(steps, dtype=np.int64)[keep], np.asarray(values, dtype=float)[keep])


def _predictor_candidates(tuning: Runs) -> list[AlarmRule]:
    """The law ΔT = C1 (H̃ − H*)^γ fitted on the tuning runs that grokked, and horizons to tune."""
    groks = [(t, g) for _, t in tuning if (g := t.t_grok()) is not None]
    if not groks:
        return []
    series = [_finite_series(t.steps, t.values(REPRESENTATION_SERIES)) for t, _ in groks]
    h_star = float(np.mean([s.before(g).values[-1] for s, (_, g) in zip(series, groks)]))
    points = [power_law_points(s, g, h_star) for s, (_, g) in zip(series, groks)]
    law = fit_power_law(np.concatenate([p[0] for p in points]), np.concatenate([p[1] for p in points]))
    if law is None:
        return []
    return [
        PredictorRule(h_star=h_star, c1=law["c1"], gamma=law["gamma"], horizon=horizon, persist=persist)
        for horizon in (500.0, 1000.0, 2000.0, 3000.0)
        for persist in (3, 2, 1)
    ]


def _split(runs: RunSet) -> tuple[Runs, dict[str, Runs], dict[str, Runs], list[str]]:
    """(tuning runs, scored grokking runs by regime, scored controls by kind, runs left out)."""
    tuning: Runs = []
    grokking: dict[str, Runs] = {}
    controls: dict[str, Runs] = {}
    left_out: list[str] = []
    for role in ("grokking", "control"):
        for key in runs.keys(role):
            experiment = runs.experiments[key]
            for seed in sorted(runs.records[key]):
                name, trajectory = f"{key}/seed_{seed}", runs.trajectory(key, seed)
                if seed in experiment.tuning_seeds:
                    tuning.append((name, trajectory))
                elif (trajectory.t_grok() is not None) != (role == "grokking"):
                    left_out.append(f"{name} ({'grokked' if role == 'control' else 'did not grok'} within its budget)")
                else:
                    (grokking if role == "grokking" else controls).setdefault(experiment.group, []).append((name, trajectory))
    return tuning, grokking, controls, left_out


def _rules(tuning: Runs) -> list[tuple[AlarmRule, str]]:
    """Every rule compared, with what it was tuned on."""
    tuned_on = f"{len(tuning)} tuning runs"
    rules: list[tuple[AlarmRule, str]] = [
        (ThresholdRule(), "the paper's threshold, not tuned"),
        (CollapseRule(), "the paper's rule, not tuned"),
        (PlateauFallRule(), "grokspec's defaults, chosen on the tuning runs"),
    ]
    if tuning:
        rules.append((tune(plateau_candidates(REPRESENTATION_SERIES, (0.06, 0.04, 0.03, 0.02, 0.01)), tuning)[0], tuned_on))
        predictors = _predictor_candidates(tuning)
        if predictors:
            rules.append((tune(predictors, tuning)[0], tuned_on))
        for series in WEIGHT_SERIES:
            if any(series in t.series for _, t in tuning):
                grid = plateau_candidates(series, (0.03, 0.02, 0.01, 0.005, 0.0025))
                rules.append((tune(grid, tuning)[0], tuned_on))
    unique: dict[str, tuple[AlarmRule, str]] = {}
    for rule, source in rules:
        unique.setdefault(rule.label(), (rule, source))  # a tuned rule equal to the default is listed once
    return list(unique.values())


def _run_alarms(rule: AlarmRule, runs: Runs) -> dict[str, Any]:
    _, scores = alarm_quality(rule, runs)
    return {
        s.run: {
            "step": s.alarm_step,
            "test_acc": s.test_acc_at_alarm,
            "lead_onset": s.lead_onset,
            "lead_grok": s.lead_grok,
            "onset": s.t_onset,
            "t_grok": s.t_grok,
            "outcome": s.outcome,
        }
        for s in scores
    }


#: How the default rule is chosen (docs/ALARMS.md).
CRITERION = (
    "Youden's J = hit rate before onset − false-alarm rate, over the plateau regime's scored runs and every "
    "scored control (the regime with a memorization plateau to warn in); ties: the longer median lead to onset"
)


def _best(qualities: list[AlarmQuality]) -> AlarmQuality:
    return max(qualities, key=lambda q: (round(youden(q), 9), q.median_lead_onset or -np.inf))


def alarm_study(runs: RunSet) -> dict[str, Any]:
    tuning, grokking, controls, left_out = _split(runs)
    all_grokking = [r for group in grokking.values() for r in group]
    all_controls = [r for group in controls.values() for r in group]
    rules = _rules(tuning)
    pooled = [alarm_quality(rule, all_grokking + all_controls, tuned_on=source)[0] for rule, source in rules]
    by_regime = {
        regime: [alarm_quality(rule, members + all_controls, tuned_on=source)[0].to_json() for rule, source in rules]
        for regime, members in grokking.items()
    }
    false_by_control = {
        kind: {rule.label(): alarm_quality(rule, members)[0].false_alarms for rule, _ in rules}
        for kind, members in controls.items()
    }
    selection = [
        alarm_quality(rule, grokking.get("plateau", all_grokking) + all_controls, tuned_on=source)[0] for rule, source in rules
    ]
    best = _best(selection)
    best_rule = next(rule for rule, _ in rules if rule.label() == best.rule)
    return {
        "criterion": CRITERION,
        "criterion_j": {q.rule: youden(q) for q in selection},
        "pooled_j": {q.rule: youden(q) for q in pooled},
        "tuning_runs": [name for name, _ in tuning],
        "scored_grokking_runs": {regime: len(members) for regime, members in grokking.items()},
        "scored_controls": {kind: len(members) for kind, members in controls.items()},
        "left_out": left_out,
        "alarm_quality": [q.to_json() for q in pooled],
        "alarm_quality_by_regime": by_regime,
        "false_alarms_by_control": false_by_control,
        "best_rule": best.rule,
        "best_rule_params": best.params,
        "best_rule_alarms": _run_alarms(best_rule, all_grokking + all_controls),
        "default_rule_alarms": _run_alarms(PlateauFallRule(), all_grokking + all_controls),
    }
