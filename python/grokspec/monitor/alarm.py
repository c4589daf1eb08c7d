"""The monitor's early warning: which rule, with which settings, and the one
adapter through which the monitor asks the shared event rules.

The rules themselves live in :mod:`grokspec.events` (SPEC §1) and
:mod:`grokspec.alarms`; this module only chooses one. A monitor warns with
an :class:`AlarmConfig` (SPEC §1's crossing or collapse, which need H̃ alone;
the default) or with any rule of :mod:`grokspec.alarms` — among them
``plateau-fall``, the project's measured default for training runs
(docs/ALARMS.md), which arms once the training set is memorized and so
needs the train accuracy at each evaluation. :func:`_alarm` is the single
place where the monitor asks a rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from grokspec.alarms import REPRESENTATION_SERIES, AlarmRule, Trajectory, evaluate_rule, rule_by_name
from grokspec.events import COLLAPSE_DROP, COLLAPSE_WINDOW, REPRESENTATION_THRESHOLD, collapse_step, crossing_step

__all__ = ["ALARM_RULES", "AlarmConfig", "AlarmRuleName", "MonitorAlarm", "needs_train_accuracy", "resolve_alarm", "rule_name"]

AlarmRuleName = Literal["crossing", "collapse"]
#: The rules a monitor can warn with: SPEC §1's threshold crossing and T_collapse.
ALARM_RULES: tuple[AlarmRuleName, ...] = ("crossing", "collapse")


@dataclass(frozen=True)
class AlarmConfig:
    """Which of SPEC §1's rules raises the warning, and its settings.

    ``crossing``: H̃ falls below ``threshold`` (after having been at or above
    it) and stays there ``persist`` evaluations. ``collapse``: H̃ falls by
    more than ``drop`` over ``window`` evaluations (the paper's T_collapse).
    """

    rule: AlarmRuleName = "crossing"
    threshold: float = REPRESENTATION_THRESHOLD
    persist: int = 1
    window: int = COLLAPSE_WINDOW
    drop: float = COLLAPSE_DROP

    def __post_init__(self) -> None:
        if self.rule not in ALARM_RULES:
            raise ValueError(f"unknown alarm rule {self.rule!r} (choose from {', '.join(ALARM_RULES)})")
        if isinstance(self.persist, bool) or not isinstance(self.persist, int) or self.persist < 1:
            raise ValueError(f"persist must be a positive integer, got {self.persist!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"the collapse window must span at least 2 evaluations, got {self.window!r}")


#: What a monitor warns with.
MonitorAlarm = AlarmConfig | AlarmRule


def resolve_alarm(alarm: MonitorAlarm | str | None) -> MonitorAlarm:
    """The monitor's rule: None is the crossing; a name is a rule of
    grokspec.alarms ("plateau-fall", "threshold", "collapse")."""
    if alarm is None:
        return AlarmConfig()
    if isinstance(alarm, str):
        return rule_by_name(alarm)
    if not isinstance(alarm, (AlarmConfig, AlarmRule)):
        raise TypeError(f"alarm must be an AlarmConfig, a grokspec.alarms rule or a rule name, got {type(alarm).__name__}")
    return alarm


def rule_name(alarm: MonitorAlarm) -> str:
    """The rule's short name, as records and warnings give it ("crossing", "plateau-fall", ...)."""
    return alarm.rule if isinstance(alarm, AlarmConfig) else alarm.name


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def needs_train_accuracy(alarm: MonitorAlarm) -> bool:
    """Whether the rule arms only once the training set is memorized."""
    return isinstance(alarm, AlarmRule) and alarm.name in ("plateau-fall", "predictor")


def _alarm(
    steps: Sequence[int],
    values: Sequence[float],
    config: MonitorAlarm = AlarmConfig(),
    train_acc: Sequence[float | None] | None = None,
) -> tuple[str, int] | None:
    """(rule, step) of the warning on the series so far, or None.

    The one adapter between the monitor and the rules: the monitor never
    calls a rule elsewhere. `train_acc` (None where not known) arms the
    rules that wait for memorization. Live, a warning at the series' first
    evaluation is none: one value is not a fall (a scan, which sees the
    whole run, may still call such a run "crossed").
    """
    if isinstance(config, AlarmConfig):
        if config.rule == "crossing":
            step = crossing_step(steps, values, config.threshold, persist=config.persist)
        else:
            step = collapse_step(steps, values, window=config.window, drop=config.drop)
    else:
        order = sorted(range(len(steps)), key=lambda i: steps[i])
        known = list(train_acc) if train_acc is not None else [None] * len(steps)
        trajectory = Trajectory(
            steps=tuple(int(steps[i]) for i in order),
            train_acc=tuple(_number(known[i]) for i in order),
            test_acc=(math.nan,) * len(steps),
            series={REPRESENTATION_SERIES: tuple(float(values[i]) for i in order)},
        )
        alarm = evaluate_rule(config, trajectory).alarm
        step = None if alarm is None else alarm.step
    if step is None or step == min(steps):
        return None
    return rule_name(config), step
