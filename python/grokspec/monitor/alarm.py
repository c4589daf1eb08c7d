"""The monitor's early warning: which rule, with which settings, and the one
adapter through which the monitor asks the shared event rules.

The rules themselves live in :mod:`grokspec.events` (SPEC §1); this module
only chooses one. When a default warning rule is decided (issue 8,
:mod:`grokspec.alarms`), :func:`_alarm` is the single place to switch to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from grokspec.events import COLLAPSE_DROP, COLLAPSE_WINDOW, REPRESENTATION_THRESHOLD, collapse_step, crossing_step

__all__ = ["ALARM_RULES", "AlarmConfig", "AlarmRuleName"]

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


def _alarm(steps: Sequence[int], values: Sequence[float], config: AlarmConfig = AlarmConfig()) -> tuple[str, int] | None:
    """(rule, step) of the warning on the series so far, or None.

    The one adapter between the monitor and the event rules: the monitor
    never calls an event rule elsewhere, so adopting the project's default
    warning rule is a change of this function alone. Live, a warning at the
    series' first evaluation is none: one value is not a fall (a scan, which
    sees the whole run, may still call such a run "crossed").
    """
    if config.rule == "crossing":
        step = crossing_step(steps, values, config.threshold, persist=config.persist)
    else:
        step = collapse_step(steps, values, window=config.window, drop=config.drop)
    if step is None or step == min(steps):
        return None
    return config.rule, step
