"""Early-warning rules on a run's evaluations, compared on equal terms
(docs/ALARMS.md).

Every rule turns a run's trajectory into a *margin* per evaluation and fires
at the first evaluation that ends ``persist`` consecutive evaluations with a
positive margin. The decision at step t uses only evaluations at or before t
(a rule never looks ahead), so the alarm step is the step at which a user
watching the run would have been told. The rule's *statistic* is the largest
margin it sustained over ``persist`` evaluations: it fires exactly when the
statistic is positive, and it is the score whose AUROC separates runs that
grok from runs that do not.

Rules (``name``):

- ``threshold``: H̃ below θ (0.61) after having been at or above it
  (SPEC §1's crossing);
- ``collapse``: the paper's T_collapse, a fall of more than δ = 0.05 over
  w = 5 evaluations;
- ``plateau-fall``: after the training set is memorized (train accuracy ≥
  0.99), the series' plateau level is the running maximum of its rolling
  median over ``window`` evaluations; the rule fires when the series stays
  more than δ below that level for ``persist`` consecutive evaluations — a
  fall relative to the run's own history that a single dip cannot trigger;
- ``predictor``: the calibrated time-to-grok law ΔT = C1 (v − H*)^γ
  predicts grokking within ``horizon`` steps (armed after memorization);
- any rule can read a weight matrix's entropy series instead of H̃
  (``series``), which is how the weight side is compared.

Stdlib and numpy only: importing this module never imports torch or pandas.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from grokspec.events import (
    COLLAPSE_DROP,
    COLLAPSE_WINDOW,
    GROK_LEVEL,
    REPRESENTATION_THRESHOLD,
    grok_step,
    onset_level,
    onset_step,
)

__all__ = [
    "ALARM_RULE_NAMES",
    "DEFAULT_ALARM_RULE",
    "MEMORIZED_LEVEL",
    "REPRESENTATION_SERIES",
    "Alarm",
    "AlarmRule",
    "CollapseRule",
    "PlateauFallRule",
    "PredictorRule",
    "RuleOutcome",
    "ThresholdRule",
    "Trajectory",
    "default_rule",
    "evaluate_rule",
    "first_alarm",
    "rule_by_name",
]

#: The name of the representation-entropy series in a Trajectory.
REPRESENTATION_SERIES = "representation"
#: Train accuracy at which the training set counts as memorized (arms the
#: rules that watch for a fall from the memorization plateau).
MEMORIZED_LEVEL = 0.99


@dataclass(frozen=True)
class Trajectory:
    """One run's evaluations: H̃, accuracies and (optionally) weight-matrix
    entropies, all at the same steps (NaN where a value is missing)."""

    steps: tuple[int, ...]
    train_acc: tuple[float, ...]
    test_acc: tuple[float, ...]
    #: Entropy series by name: ``representation`` (H̃) and weight tensors.
    series: Mapping[str, tuple[float, ...]]
    #: Test accuracy of guessing, when known (it sets the onset level).
    chance: float | None = None

    def __post_init__(self) -> None:
        n = len(self.steps)
        lengths = {"train_acc": len(self.train_acc), "test_acc": len(self.test_acc)}
        lengths.update({f"series {name!r}": len(v) for name, v in self.series.items()})
        wrong = [f"{name} has {length}" for name, length in lengths.items() if length != n]
        if wrong:
            raise ValueError(f"a trajectory's series must have one value per step ({n} steps); " + ", ".join(wrong))
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError("a trajectory's steps must be strictly increasing")

    def values(self, name: str) -> np.ndarray:
        if name not in self.series:
            raise KeyError(f"the trajectory has no series {name!r} (it has {', '.join(sorted(self.series)) or 'none'})")
        return np.asarray(self.series[name], dtype=float)

    @property
    def onset_level(self) -> float:
        return onset_level(self.chance)

    @property
    def t_onset(self) -> int | None:
        return onset_step(self.steps, self.test_acc, level=self.onset_level)

    def t_grok(self, level: float = GROK_LEVEL) -> int | None:
        return grok_step(self.steps, self.test_acc, level=level)

    def memorized_index(self, level: float = MEMORIZED_LEVEL) -> int | None:
        """Index of the first evaluation with train accuracy >= `level`."""
        return next((i for i, a in enumerate(self.train_acc) if not math.isnan(a) and a >= level), None)

    def truncated(self, end_step: int) -> Trajectory:
        """The evaluations at steps <= end_step (what was known then)."""
        n = sum(1 for t in self.steps if t <= end_step)
        return Trajectory(
            steps=self.steps[:n],
            train_acc=self.train_acc[:n],
            test_acc=self.test_acc[:n],
            series={k: v[:n] for k, v in self.series.items()},
            chance=self.chance,
        )


@dataclass(frozen=True)
class Alarm:
    """A rule's first firing on a run (SPEC §1's alarm record)."""

    rule: str
    step: int
    test_acc: float | None
    #: T_onset − step (None when the run never reached the onset level).
    lead_onset: int | None
    #: T_grok − step (None when the run never grokked).
    lead_grok: int | None


@dataclass(frozen=True)
class RuleOutcome:
    """What a rule did on one run: its alarm (or None) and its statistic."""

    alarm: Alarm | None
    #: The largest margin sustained over `persist` evaluations (> 0 iff it fired).
    statistic: float


class AlarmRule:
    """Base of the rules: a margin per evaluation, fired on `persist`
    consecutive positive margins. Subclasses are frozen dataclasses."""

    name: str
    series: str
    persist: int

    def label(self) -> str:
        """The rule and its parameters, as tables and report.json name it."""
        raise NotImplementedError

    def margins(self, trajectory: Trajectory) -> np.ndarray:
        """One margin per evaluation (−inf where the rule is not armed or the value is missing)."""
        raise NotImplementedError

    def params(self) -> dict[str, float | int | str]:
        """The rule's parameters (a lag of None, the running maximum, reads -1)."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]  # every rule is a dataclass
        values = {f.name: getattr(self, f.name) for f in fields if f.name != "name"}
        return {k: -1 if v is None else v for k, v in values.items()}


def _sustained(margins: np.ndarray, persist: int) -> np.ndarray:
    """Per evaluation, the smallest margin of the last `persist` ones (−inf before)."""
    out = np.full(len(margins), -np.inf)
    for i in range(persist - 1, len(margins)):
        out[i] = margins[i - persist + 1 : i + 1].min()
    return out


def _check_persist(persist: int) -> None:
    if not isinstance(persist, int) or persist < 1:
        raise ValueError(f"persist must be a positive integer, got {persist!r}")


@dataclass(frozen=True)
class ThresholdRule(AlarmRule):
    """H̃ (or `series`) below `threshold` after having been at or above it."""

    threshold: float = REPRESENTATION_THRESHOLD
    persist: int = 1
    series: str = REPRESENTATION_SERIES
    name: str = field(default="threshold", init=False)

    def __post_init__(self) -> None:
        _check_persist(self.persist)

    def label(self) -> str:
        suffix = f", {self.persist} evals" if self.persist > 1 else ""
        return f"threshold {self.threshold:g}{suffix}" + _series_suffix(self.series)

    def margins(self, trajectory: Trajectory) -> np.ndarray:
        v = trajectory.values(self.series)
        out = np.full(len(v), -np.inf)
        # Causal, unlike SPEC's crossing event: a series that starts below the
        # threshold (H̃ at initialization) has not fallen, and its future is unknown.
        been_above = False
        for i, value in enumerate(v):
            if math.isnan(value):
                continue
            if value >= self.threshold:
                been_above = True
            if been_above:
                out[i] = self.threshold - value
        return out


@dataclass(frozen=True)
class CollapseRule(AlarmRule):
    """The paper's T_collapse: v(t_{i−w+1}) − v(t_i) > drop."""

    window: int = COLLAPSE_WINDOW
    drop: float = COLLAPSE_DROP
    series: str = REPRESENTATION_SERIES
    persist: int = 1
    name: str = field(default="collapse", init=False)

    def __post_init__(self) -> None:
        _check_persist(self.persist)
        if self.window < 2:
            raise ValueError(f"the collapse window must span at least 2 evaluations, got {self.window}")

    def label(self) -> str:
        return f"collapse (fall > {self.drop:g} over {self.window} evals)" + _series_suffix(self.series)

    def margins(self, trajectory: Trajectory) -> np.ndarray:
        v = trajectory.values(self.series)
        index = np.flatnonzero(~np.isnan(v))  # NaN points are ignored, as SPEC §1 says
        out = np.full(len(v), -np.inf)
        for j in range(self.window - 1, len(index)):
            out[index[j]] = v[index[j - self.window + 1]] - v[index[j]] - self.drop
        return out


def _plateau_levels(v: np.ndarray, start: int, window: int, lag: int | None) -> np.ndarray:
    """From `start` on, the plateau level at each evaluation (NaN while unknown):
    with `lag` None, the running maximum of the rolling median over `window`
    evaluations; with `lag` L, the rolling median of the `window` evaluations
    that ended L evaluations earlier (a reference that follows slow drifts)."""
    out = np.full(len(v), np.nan)
    level = -np.inf
    for i in range(start, len(v)):
        end = i if lag is None else i - lag
        first = end - window + 1
        if first < start:
            continue
        median = float(np.nanmedian(v[first : end + 1])) if np.any(~np.isnan(v[first : end + 1])) else math.nan
        if math.isnan(median):
            continue
        level = max(level, median) if lag is None else median
        out[i] = level
    return out


@dataclass(frozen=True)
class PlateauFallRule(AlarmRule):
    """A sustained fall of the series from its own memorization-plateau level."""

    # Defaults: tuned on the reproduction's tuning runs (plateau seeds 0-4 and
    # each control's seed 0, never scored); docs/ALARMS.md.
    drop: float = 0.04
    persist: int = 2
    window: int = 5
    #: None: the plateau is the running maximum since memorization; L: the
    #: level L evaluations ago (a slow drift then never adds up to a fall).
    lag: int | None = 8
    memorized: float = MEMORIZED_LEVEL
    series: str = REPRESENTATION_SERIES
    name: str = field(default="plateau-fall", init=False)

    def __post_init__(self) -> None:
        _check_persist(self.persist)
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"the plateau window must be a positive integer, got {self.window!r}")
        if not self.drop > 0:
            raise ValueError(f"the plateau-fall drop must be positive, got {self.drop}")
        if self.lag is not None and (not isinstance(self.lag, int) or self.lag < self.persist):
            raise ValueError(f"the plateau lag must be at least persist ({self.persist}) evaluations, got {self.lag!r}")

    def label(self) -> str:
        reference = "running max" if self.lag is None else f"lag {self.lag}"
        text = f"plateau-fall (> {self.drop:g} below the plateau, {reference}, {self.persist} evals)"
        return text + _series_suffix(self.series)

    def margins(self, trajectory: Trajectory) -> np.ndarray:
        v = trajectory.values(self.series)
        out = np.full(len(v), -np.inf)
        start = trajectory.memorized_index(self.memorized)
        if start is None:
            return out  # never memorized: no plateau to fall from
        level = _plateau_levels(v, start, self.window, self.lag)
        ok = ~np.isnan(level) & ~np.isnan(v)
        out[ok] = level[ok] - v[ok] - self.drop
        return out


@dataclass(frozen=True)
class PredictorRule(AlarmRule):
    """The calibrated law ΔT = C1 (v − H*)^γ predicts grokking within `horizon` steps."""

    h_star: float
    c1: float
    gamma: float
    horizon: float = 1000.0
    persist: int = 2
    memorized: float = MEMORIZED_LEVEL
    series: str = REPRESENTATION_SERIES
    name: str = field(default="predictor", init=False)

    def __post_init__(self) -> None:
        _check_persist(self.persist)
        if not (self.c1 > 0 and math.isfinite(self.gamma) and self.horizon > 0):
            raise ValueError(
                f"the predictor needs C1 > 0, a finite γ and a positive horizon, got {self.c1}, {self.gamma}, {self.horizon}"
            )

    def label(self) -> str:
        return f"predictor (ΔT ≤ {self.horizon:,.0f} steps, {self.persist} evals)" + _series_suffix(self.series)

    def margins(self, trajectory: Trajectory) -> np.ndarray:
        v = trajectory.values(self.series)
        out = np.full(len(v), -np.inf)
        start = trajectory.memorized_index(self.memorized)
        if start is None:
            return out
        for i in range(start, len(v)):
            if math.isnan(v[i]):
                continue
            gap = v[i] - self.h_star
            predicted = self.c1 * gap**self.gamma if gap > 0 else 0.0
            # In units of the horizon, so that margins of different rules are comparable in sign only.
            out[i] = (self.horizon - predicted) / self.horizon
        return out


def _series_suffix(series: str) -> str:
    return "" if series == REPRESENTATION_SERIES else f" on {series}"


def evaluate_rule(rule: AlarmRule, trajectory: Trajectory, *, grok_level: float = GROK_LEVEL) -> RuleOutcome:
    """The rule's first firing on `trajectory` and its statistic."""
    sustained = _sustained(rule.margins(trajectory), rule.persist)
    statistic = float(sustained.max()) if len(sustained) else -math.inf
    fired = np.flatnonzero(sustained > 0)
    if not len(fired):
        return RuleOutcome(alarm=None, statistic=statistic)
    i = int(fired[0])
    step = trajectory.steps[i]
    onset, grok = trajectory.t_onset, trajectory.t_grok(grok_level)
    acc = trajectory.test_acc[i]
    alarm = Alarm(
        rule=rule.label(),
        step=step,
        test_acc=None if math.isnan(acc) else float(acc),
        lead_onset=None if onset is None else onset - step,
        lead_grok=None if grok is None else grok - step,
    )
    return RuleOutcome(alarm=alarm, statistic=statistic)


def first_alarm(rule: AlarmRule, trajectory: Trajectory, *, grok_level: float = GROK_LEVEL) -> Alarm | None:
    return evaluate_rule(rule, trajectory, grok_level=grok_level).alarm


#: The default warning's rule: chosen by measured alarm quality (docs/ALARMS.md).
DEFAULT_ALARM_RULE = "plateau-fall"
#: Rules that a name selects without calibration (grokspec train's --alarm-rule).
ALARM_RULE_NAMES = ("plateau-fall", "threshold", "collapse")


def default_rule() -> AlarmRule:
    return rule_by_name(DEFAULT_ALARM_RULE)


def rule_by_name(name: str, *, threshold: float = REPRESENTATION_THRESHOLD) -> AlarmRule:
    """A rule that needs no calibration, with its default parameters."""
    if name == "plateau-fall":
        return PlateauFallRule()
    if name == "threshold":
        return ThresholdRule(threshold=threshold)
    if name == "collapse":
        return CollapseRule()
    raise ValueError(f"unknown alarm rule {name!r} (choose from {', '.join(ALARM_RULE_NAMES)})")
