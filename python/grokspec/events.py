"""Events on a trajectory (SPEC §1): threshold crossing, entropy collapse,
grokking, lead times and status.

A trajectory is a value v(t) at evaluation steps t1 < t2 < ...; NaN (or
missing) points are ignored.

- crossing(θ): the first t with v(t) < θ *after the series has been at or
  above θ* (with ``persist = k``, the next k−1 values too). The refinement of
  the plain "first t with v(t) < θ" is deliberate: at initialization the
  uncentred representation covariance is dominated by the shared position
  embedding and H̃ starts near 0.59, then rises above 0.8 while the network
  memorizes; a warning must be a fall, not the starting point. A series that
  is never at or above θ counts as crossed at its first point.
- T_collapse: the first t_i with v(t_{i−w+1}) − v(t_i) > δ (w = 5, δ = 0.05).
- T_grok: the first t with the accuracy metric >= level (0.99).
- T_onset: the first t with the accuracy metric >= the onset level (0.1, or
  chance + 0.1 when chance > 0.05).
- lead_cross = T_grok − crossing; lead_collapse = T_grok − T_collapse.
- status: "grokked", "crossed" (below the threshold, not yet grokked),
  "not-crossed".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Events",
    "detect_events",
    "crossing_step",
    "collapse_step",
    "grok_step",
    "COLLAPSE_WINDOW",
    "COLLAPSE_DROP",
    "GROK_LEVEL",
    "REPRESENTATION_THRESHOLD",
    "ONSET_LEVEL",
    "onset_level",
    "onset_step",
]

#: The one place each of SPEC §1's constants is written.
COLLAPSE_WINDOW = 5
COLLAPSE_DROP = 0.05
GROK_LEVEL = 0.99
#: The paper's threshold of the representation entropy H̃.
REPRESENTATION_THRESHOLD = 0.61
#: Test accuracy at which generalization counts as visible (T_onset) ...
ONSET_LEVEL = 0.1
#: ... unless guessing already scores above this, then chance + ONSET_LEVEL.
ONSET_CHANCE_LIMIT = 0.05


@dataclass(frozen=True)
class Events:
    threshold: float | None
    crossing: int | None
    t_collapse: int | None
    t_grok: int | None
    lead_cross: int | None
    lead_collapse: int | None
    status: str


def _clean(steps: Sequence[float], values: Sequence[float | None]) -> list[tuple[int, float]]:
    points = []
    for t, v in zip(steps, values):
        if v is None:
            continue
        v = float(v)
        if math.isnan(v):
            continue
        points.append((int(t), v))
    points.sort()
    return points


def crossing_step(steps: Sequence[float], values: Sequence[float | None], threshold: float, *, persist: int = 1) -> int | None:
    """The first step at which the series falls below `threshold` and stays
    there for `persist` evaluations (see the module notes)."""
    if persist < 1:
        raise ValueError(f"persist must be at least 1, got {persist}")
    points = _clean(steps, values)
    been_above = not any(v >= threshold for _, v in points)  # never above: crossed at the start
    for i, (t, v) in enumerate(points):
        if v >= threshold:
            been_above = True
            continue
        window = points[i : i + persist]
        if been_above and len(window) == persist and all(w < threshold for _, w in window):
            return t
    return None


def collapse_step(
    steps: Sequence[float],
    values: Sequence[float | None],
    *,
    window: int = COLLAPSE_WINDOW,
    drop: float = COLLAPSE_DROP,
) -> int | None:
    """The paper's T_collapse: the first t_i with v(t_{i−w+1}) − v(t_i) > drop."""
    if window < 2:
        raise ValueError(f"the collapse window must span at least 2 evaluations, got {window}")
    points = _clean(steps, values)
    for i in range(window - 1, len(points)):
        if points[i - window + 1][1] - points[i][1] > drop:
            return points[i][0]
    return None


def grok_step(steps: Sequence[float], accuracy: Sequence[float | None], *, level: float = GROK_LEVEL) -> int | None:
    """The first step whose accuracy reaches `level`."""
    return next((t for t, a in _clean(steps, accuracy) if a >= level), None)


def onset_level(chance: float | None = None) -> float:
    """SPEC §1's onset level: 0.1, or chance + 0.1 for tasks whose chance
    accuracy is above 0.05."""
    if chance is not None and chance > ONSET_CHANCE_LIMIT:
        return chance + ONSET_LEVEL
    return ONSET_LEVEL


def onset_step(steps: Sequence[float], accuracy: Sequence[float | None], *, level: float = ONSET_LEVEL) -> int | None:
    """T_onset: the first step whose accuracy reaches `level` (the moment
    generalization becomes visible; a warning is early only before it)."""
    return grok_step(steps, accuracy, level=level)


def detect_events(
    steps: Sequence[float],
    values: Sequence[float | None],
    accuracy: Sequence[float | None] | None = None,
    *,
    accuracy_steps: Sequence[float] | None = None,
    threshold: float | None = None,
    persist: int = 1,
    window: int = COLLAPSE_WINDOW,
    drop: float = COLLAPSE_DROP,
    level: float = GROK_LEVEL,
) -> Events:
    """All of section 1's events for one series. The accuracy may be
    recorded at other steps than the series (`accuracy_steps`); by default
    at the same ones."""
    crossing = crossing_step(steps, values, threshold, persist=persist) if threshold is not None else None
    collapse = collapse_step(steps, values, window=window, drop=drop)
    grok = None
    if accuracy is not None:
        grok = grok_step(steps if accuracy_steps is None else accuracy_steps, accuracy, level=level)
    status = "grokked" if grok is not None else "crossed" if crossing is not None else "not-crossed"
    return Events(
        threshold=threshold,
        crossing=crossing,
        t_collapse=collapse,
        t_grok=grok,
        lead_cross=grok - crossing if grok is not None and crossing is not None else None,
        lead_collapse=grok - collapse if grok is not None and collapse is not None else None,
        status=status,
    )
