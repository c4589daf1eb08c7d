"""Alarm quality: how well a rule warns of grokking, over runs that grok and
negative controls that do not (docs/ALARMS.md).

For each rule, over the grokking runs: alarms before T_onset (the warning
came while test accuracy was still low), after it, or none (missed); over
the controls: false alarms. Then the median lead to onset and to T_grok
(with percentile-bootstrap 95% CIs), the median test accuracy at the alarm,
and the AUROC of separating grokking runs from controls by the rule's
statistic — measured on a grokking run's evaluations *before* its onset
(what was known before generalization became visible) and on a control's
whole run.

Parameters are tuned on some runs (:func:`tune`) and scored on others; the
caller keeps the two apart, and every :class:`AlarmQuality` says what it was
tuned on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from grokspec.alarms import AlarmRule, Trajectory, evaluate_rule
from grokspec.events import GROK_LEVEL

__all__ = ["AlarmQuality", "RunScore", "alarm_quality", "auroc", "median_ci", "score_run", "tune", "youden"]

#: Outcomes of a rule on one run.
BEFORE_ONSET, AFTER_ONSET, MISSED, FALSE_ALARM, QUIET = "before-onset", "after-onset", "missed", "false-alarm", "quiet"


@dataclass(frozen=True)
class RunScore:
    """One rule on one run."""

    run: str
    grokked: bool
    t_onset: int | None
    t_grok: int | None
    alarm_step: int | None
    test_acc_at_alarm: float | None
    lead_onset: int | None
    lead_grok: int | None
    #: The rule's statistic before onset (grokking runs) or over the run (controls).
    statistic: float
    outcome: str


@dataclass(frozen=True)
class AlarmQuality:
    """A rule's alarm quality over a set of runs (report.json's ``alarm_quality`` entries)."""

    rule: str
    family: str
    params: dict[str, float | int | str]
    tuned_on: str
    grokking_runs: int
    controls: int
    before_onset: int
    after_onset: int
    missed: int
    false_alarms: int
    hit_rate_before_onset: float | None
    false_alarm_rate: float | None
    median_lead_onset: float | None
    median_lead_onset_ci: tuple[float, float] | None
    median_lead_grok: float | None
    median_lead_grok_ci: tuple[float, float] | None
    median_test_acc_at_alarm: float | None
    auroc: float | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}


def score_run(rule: AlarmRule, name: str, trajectory: Trajectory, *, grok_level: float = GROK_LEVEL) -> RunScore | None:
    """The rule's outcome on one run; None when the run lacks the rule's series."""
    if rule.series not in trajectory.series:
        return None
    outcome = evaluate_rule(rule, trajectory, grok_level=grok_level)
    t_grok, t_onset = trajectory.t_grok(grok_level), trajectory.t_onset
    grokked = t_grok is not None
    if grokked and t_onset is not None:
        # Only what was known before generalization became visible.
        before = trajectory.truncated(t_onset - 1)
        statistic = evaluate_rule(rule, before, grok_level=grok_level).statistic if before.steps else -math.inf
    else:
        statistic = outcome.statistic
    alarm = outcome.alarm
    if t_grok is not None:
        # A run that grokked has reached the onset level by then at the latest.
        onset = t_onset if t_onset is not None else t_grok
        kind = MISSED if alarm is None else BEFORE_ONSET if alarm.step < onset else AFTER_ONSET
    else:
        kind = QUIET if alarm is None else FALSE_ALARM
    return RunScore(
        run=name,
        grokked=grokked,
        t_onset=t_onset,
        t_grok=t_grok,
        alarm_step=None if alarm is None else alarm.step,
        test_acc_at_alarm=None if alarm is None else alarm.test_acc,
        lead_onset=None if alarm is None else alarm.lead_onset,
        lead_grok=None if alarm is None else alarm.lead_grok,
        statistic=statistic,
        outcome=kind,
    )


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(positive > negative) + ½ P(tie), over all pairs (−inf ties count as ties)."""
    if not positives or not negatives:
        return None
    pos = np.asarray(positives, dtype=float)[:, None]
    neg = np.asarray(negatives, dtype=float)[None, :]
    greater = np.sum(pos > neg)
    ties = np.sum(pos == neg)
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def median_ci(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap 95% CI of the median (None for fewer than 2 values)."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(data) < 2:
        return None
    medians = np.median(np.random.default_rng(seed).choice(data, size=(resamples, len(data)), replace=True), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def _median(values: Sequence[float | int | None]) -> float | None:
    data = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.median(data)) if data else None


def youden(quality: AlarmQuality) -> float:
    """The selection criterion: hit rate before onset minus false-alarm rate
    (Youden's J at the rule's own operating point); −1 when undefined."""
    if quality.hit_rate_before_onset is None or quality.false_alarm_rate is None:
        return -1.0
    return quality.hit_rate_before_onset - quality.false_alarm_rate


def alarm_quality(
    rule: AlarmRule,
    runs: Sequence[tuple[str, Trajectory]],
    *,
    tuned_on: str = "not tuned",
    grok_level: float = GROK_LEVEL,
) -> tuple[AlarmQuality, list[RunScore]]:
    """The rule's quality over `runs` (grokking runs and controls alike; a
    run counts as grokking when it reached the grokking level)."""
    scores = [s for name, t in runs if (s := score_run(rule, name, t, grok_level=grok_level)) is not None]
    grok = [s for s in scores if s.grokked]
    controls = [s for s in scores if not s.grokked]
    alarmed = [s for s in grok if s.alarm_step is not None]
    count = {k: sum(1 for s in scores if s.outcome == k) for k in (BEFORE_ONSET, AFTER_ONSET, MISSED, FALSE_ALARM)}
    leads_onset = [float(s.lead_onset) for s in alarmed if s.lead_onset is not None]
    leads_grok = [float(s.lead_grok) for s in alarmed if s.lead_grok is not None]
    quality = AlarmQuality(
        rule=rule.label(),
        family=rule.name,
        params=rule.params(),
        tuned_on=tuned_on,
        grokking_runs=len(grok),
        controls=len(controls),
        before_onset=count[BEFORE_ONSET],
        after_onset=count[AFTER_ONSET],
        missed=count[MISSED],
        false_alarms=count[FALSE_ALARM],
        hit_rate_before_onset=count[BEFORE_ONSET] / len(grok) if grok else None,
        false_alarm_rate=count[FALSE_ALARM] / len(controls) if controls else None,
        median_lead_onset=_median(leads_onset),
        median_lead_onset_ci=median_ci(leads_onset),
        median_lead_grok=_median(leads_grok),
        median_lead_grok_ci=median_ci(leads_grok),
        median_test_acc_at_alarm=_median([s.test_acc_at_alarm for s in alarmed]),
        auroc=auroc([s.statistic for s in grok], [s.statistic for s in controls]),
    )
    return quality, scores


def tune(
    candidates: Sequence[AlarmRule], runs: Sequence[tuple[str, Trajectory]], *, grok_level: float = GROK_LEVEL
) -> tuple[AlarmRule, AlarmQuality]:
    """The candidate with the best criterion (:func:`youden`) on `runs`;
    ties go to the earlier candidate (list them from the most conservative)."""
    if not candidates:
        raise ValueError("tuning needs at least one candidate rule")
    best: tuple[AlarmRule, AlarmQuality] | None = None
    for rule in candidates:
        quality, _ = alarm_quality(rule, runs, grok_level=grok_level)
        if best is None or youden(quality) > youden(best[1]):
            best = (rule, quality)
    assert best is not None
    return best
