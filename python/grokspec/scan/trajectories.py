"""A run's trajectories, built once from the tidy scan table.

Report, calibrate, plot and the reproduction all read a run through
:class:`RunTrajectories`: its entropy series by name (``representation`` for
H̃, one per weight tensor), the accuracy series that defines grokking, and
the derived T_grok and T_onset (SPEC §1) — computed here and nowhere else.
Everything here is plain Python and numpy over :class:`ScanTable` rows
(no pandas: a cached rescan must not pay for importing it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from grokspec.events import GROK_LEVEL, grok_step, onset_level, onset_step
from grokspec.scan.table import Row, ScanTable, StepSeries

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RunTrajectories",
    "accuracy_series",
    "run_trajectories",
    "series_table",
    "REPRESENTATION",
    "REPRESENTATION_METRIC",
    "GROK_METRICS",
]

#: The name of the representation-entropy series.
REPRESENTATION = "representation"
#: The table metric holding H̃.
REPRESENTATION_METRIC = "repr_entropy"
#: Accuracy metrics that define T_grok, in order of preference.
GROK_METRICS = (
    "test_acc", "eval_accuracy", "eval_acc", "val_acc", "val_accuracy", "test_accuracy", "accuracy",
    "val_acc_epoch", "val/acc", "val/accuracy", "valid_acc", "test/acc",  # Lightning users' names
)  # fmt: skip


@dataclass(frozen=True)
class RunTrajectories:
    """Everything a report needs from one run's rows of the table."""

    run: str
    #: Entropy series by name: H̃ first, then the weight tensors by name.
    series: dict[str, StepSeries]
    #: The accuracy metric that defines grokking, and its series.
    accuracy_metric: str | None
    accuracy: StepSeries | None
    #: First step with accuracy >= the grokking level.
    t_grok: int | None
    #: First step with accuracy >= the onset level (generalization visible).
    t_onset: int | None
    #: The onset level used (0.1, or chance + 0.1 when chance > 0.05).
    onset_level: float

    def accuracy_at(self, step: int) -> float | None:
        """The accuracy at the last evaluation at or before `step`."""
        if self.accuracy is None:
            return None
        before = self.accuracy.before(step)
        return float(before.values[-1]) if len(before) else None


def _run_level(table: ScanTable, run: str, metric: str) -> list[Row]:
    """A run's rows of one run-level metric (no tensor) that hold a value."""
    return [r for r in table.of_run(run) if r.tensor == "" and r.metric == metric and r.has_value]


def series_table(table: ScanTable | pd.DataFrame, run: str) -> dict[str, StepSeries]:
    """A run's entropy series: 'representation' (H̃) and one per weight
    tensor (metric 'entropy'), the tensors in name order."""
    table = ScanTable.coerce(table)
    out: dict[str, StepSeries] = {}
    representation = _run_level(table, run, REPRESENTATION_METRIC)
    if representation:
        # The training log and the checkpoint forward passes agree where both
        # exist; the log is denser, so it wins on shared steps.
        ordered = sorted(representation, key=lambda r: r.step_source != "log")
        out[REPRESENTATION] = StepSeries.from_pairs((r.step, r.value or 0.0) for r in ordered)
    by_tensor: dict[str, list[tuple[int, float]]] = {}
    for r in table.of_run(run):
        if r.tensor and r.metric == "entropy" and r.has_value:
            by_tensor.setdefault(r.tensor, []).append((r.step, r.value or 0.0))
    for tensor in sorted(by_tensor):
        out[tensor] = StepSeries.from_pairs(by_tensor[tensor])
    return out


def accuracy_series(table: ScanTable | pd.DataFrame, run: str, metric: str) -> StepSeries | None:
    """A run-level metric of `run` by step (the first row of a step wins), or None."""
    rows = _run_level(ScanTable.coerce(table), run, metric)
    return StepSeries.from_pairs((r.step, r.value or 0.0) for r in rows) if rows else None


def _accuracy(table: ScanTable, run: str, preferred: str | None) -> tuple[str | None, StepSeries | None]:
    for metric in [preferred] if preferred else list(GROK_METRICS):
        series = accuracy_series(table, run, metric)
        if series is not None:
            return metric, series
    return None, None


def run_trajectories(
    table: ScanTable | pd.DataFrame,
    run: str,
    *,
    grok_metric: str | None = None,
    grok_level: float = GROK_LEVEL,
    chance: float | None = None,
) -> RunTrajectories:
    """The trajectories of `run` in a scan table. `chance` is the accuracy of
    guessing (1/p for the modular tasks), when known; it sets the onset level."""
    table = ScanTable.coerce(table)
    metric, accuracy = _accuracy(table, run, grok_metric)
    level = onset_level(chance)
    steps = [] if accuracy is None else accuracy.steps.tolist()
    values = [] if accuracy is None else accuracy.values.tolist()
    return RunTrajectories(
        run=run,
        series=series_table(table, run),
        accuracy_metric=metric,
        accuracy=accuracy,
        t_grok=grok_step(steps, values, level=grok_level) if accuracy is not None else None,
        t_onset=onset_step(steps, values, level=level) if accuracy is not None else None,
        onset_level=level,
    )
