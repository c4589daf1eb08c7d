"""A run's trajectories, built once from the tidy scan table.

Report, calibrate, plot and the reproduction all read a run through
:class:`RunTrajectories`: its entropy series by name (``representation`` for
H̃, one per weight tensor), the accuracy series that defines grokking, and
the derived T_grok and T_onset (SPEC §1) — computed here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from grokspec.events import GROK_LEVEL, grok_step, onset_level, onset_step

__all__ = ["RunTrajectories", "run_trajectories", "series_table", "REPRESENTATION", "REPRESENTATION_METRIC", "GROK_METRICS"]

#: The name of the representation-entropy series.
REPRESENTATION = "representation"
#: The table metric holding H̃.
REPRESENTATION_METRIC = "repr_entropy"
#: Accuracy metrics that define T_grok, in order of preference.
GROK_METRICS = ("test_acc", "eval_accuracy", "eval_acc", "val_acc", "val_accuracy", "test_accuracy", "accuracy")


@dataclass(frozen=True)
class RunTrajectories:
    """Everything a report needs from one run's rows of the table."""

    run: str
    #: Entropy series by name, each indexed by step (ascending).
    series: dict[str, pd.Series]
    #: The accuracy metric that defines grokking, and its series.
    accuracy_metric: str | None
    accuracy: pd.Series | None
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
        before = self.accuracy[self.accuracy.index <= step]
        return None if before.empty else float(before.values[-1])


def series_table(table: pd.DataFrame, run: str) -> dict[str, pd.Series]:
    """A run's entropy series, each a Series indexed by step: 'representation'
    and one per weight tensor (metric 'entropy')."""
    mine = table[(table["run"] == run) & table["value"].notna()]
    out: dict[str, pd.Series] = {}
    rep = mine[(mine["tensor"] == "") & (mine["metric"] == REPRESENTATION_METRIC)]
    if not rep.empty:
        # The training log and the checkpoint forward passes agree where both
        # exist; the log is denser, so it wins on shared steps.
        rep = rep.assign(priority=(rep["step_source"] != "log").astype(int)).sort_values(["step", "priority"])
        out[REPRESENTATION] = rep.drop_duplicates("step").set_index("step")["value"].astype(float)
    weights = mine[(mine["tensor"] != "") & (mine["metric"] == "entropy")]
    # One sort and one de-duplication for every tensor at once, then plain
    # slicing: per-tensor pandas operations cost ~1 ms each, which a
    # checkpoint with thousands of tensors turns into seconds.
    weights = weights.drop_duplicates(["tensor", "step"]).sort_values(["tensor", "step"], kind="stable")
    tensors = weights["tensor"].to_numpy()
    steps = weights["step"].to_numpy()
    values = weights["value"].to_numpy(dtype=float)
    bounds = np.flatnonzero(tensors[1:] != tensors[:-1]) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(tensors)]):
        if stop > start:
            out[str(tensors[start])] = pd.Series(values[start:stop], index=pd.Index(steps[start:stop], name="step"), name="value")
    return out


def _accuracy(table: pd.DataFrame, run: str, preferred: str | None) -> tuple[str | None, pd.Series | None]:
    mine = table[(table["run"] == run) & (table["tensor"] == "") & table["value"].notna()]
    for metric in [preferred] if preferred else list(GROK_METRICS):
        rows = mine[mine["metric"] == metric]
        if not rows.empty:
            return metric, rows.drop_duplicates("step").set_index("step")["value"].astype(float).sort_index()
    return None, None


def run_trajectories(
    table: pd.DataFrame,
    run: str,
    *,
    grok_metric: str | None = None,
    grok_level: float = GROK_LEVEL,
    chance: float | None = None,
) -> RunTrajectories:
    """The trajectories of `run` in a scan table. `chance` is the accuracy of
    guessing (1/p for the modular tasks), when known; it sets the onset level."""
    metric, accuracy = _accuracy(table, run, grok_metric)
    level = onset_level(chance)
    steps = [] if accuracy is None else list(accuracy.index)
    values = [] if accuracy is None else list(accuracy.values)
    return RunTrajectories(
        run=run,
        series=series_table(table, run),
        accuracy_metric=metric,
        accuracy=accuracy,
        t_grok=grok_step(steps, values, level=grok_level) if accuracy is not None else None,
        t_onset=onset_step(steps, values, level=level) if accuracy is not None else None,
        onset_level=level,
    )
