"""trajectories.png: entropy against step, one panel per run.

Each panel shows the representation entropy H̃ (bold), the weight-matrix
entropies (thin, translucent: there can be hundreds), the threshold
(dashed), four vertical markers — the crossing, the alarm, onset and
T_grok — and the accuracy that defines grokking (dotted, right axis). Panels tile in a grid that stays
readable from 1 run to 20 and more.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from grokspec.io_atomic import atomic_path
from grokspec.scan.report import RunReport, ScanReport
from grokspec.scan.table import ScanTable
from grokspec.scan.trajectories import REPRESENTATION, accuracy_series, series_table

__all__ = ["has_trajectory", "plot_trajectories"]


def has_trajectory(report: ScanReport) -> bool:
    """Whether any series of any run has two points or more (a line to draw)."""
    return any(series.points >= 2 for run in report.runs for series in run.series)


def plot_trajectories(
    table: ScanTable, report: ScanReport, path: Path, *, max_runs: int = 48, metadata: dict[str, str] | None = None
) -> Path:
    """Draws the figure into `path` (atomically); `metadata` becomes PNG text chunks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report.runs[:max_runs]
    count = max(len(runs), 1)
    cols = min(4, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(runs) :]:
        ax.axis("off")
    for ax, run in zip(axes.flat, runs):
        _panel(ax, table, run)
    if len(report.runs) > max_runs:
        fig.suptitle(f"first {max_runs} of {len(report.runs)} runs (all are in report.json)", fontsize=10)
    handles, labels = [], []
    for ax in axes.flat[: len(runs)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.tight_layout()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(labels), 3 * cols),
            fontsize=8,
            frameon=False,
        )
    with atomic_path(path) as temporary:
        # "tight" grows the canvas to hold the legend below the panels.
        fig.savefig(temporary, dpi=110, format="png", bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    return path


def _panel(ax: Any, table: ScanTable, run: RunReport) -> None:
    series = series_table(table, run.run)
    weights = [name for name in series if name != REPRESENTATION]
    for i, name in enumerate(weights):
        values = series[name]
        ax.plot(
            values.steps,
            values.values,
            color="tab:gray",
            alpha=max(0.08, 0.6 / math.sqrt(len(weights))),
            lw=0.8,
            label="weight matrices" if i == 0 else None,
        )
    if REPRESENTATION in series:
        values = series[REPRESENTATION]
        ax.plot(values.steps, values.values, color="tab:blue", lw=2.0, label="representation H̃")
    if run.threshold is not None:
        ax.axhline(run.threshold, color="tab:red", ls="--", lw=1, label=f"threshold ({run.threshold_source})")
    if run.crossing is not None:
        ax.axvline(run.crossing, color="tab:orange", lw=1.2, label="crossing")
    if run.alarm is not None:
        ax.axvline(run.alarm.step, color="tab:red", ls=(0, (4, 1, 1, 1)), lw=1.8, label="alarm")
    if run.onset is not None:
        ax.axvline(run.onset, color="tab:purple", ls="-.", lw=1.2, label="onset")
    if run.t_grok is not None:
        ax.axvline(run.t_grok, color="tab:green", lw=1.2, label="T_grok")
    metric = run.grok_metric
    if metric:
        acc = accuracy_series(table, run.run, metric)
        if acc is not None:
            twin = ax.twinx()
            twin.set_ylim(-0.02, 1.02)
            twin.tick_params(labelsize=7)
            twin.set_ylabel(metric, fontsize=8)
            # Drawn on the twin axis, listed in the main legend.
            (line,) = twin.plot(acc.steps, acc.values, color="black", ls=":", lw=1)
            ax.plot([], [], color="black", ls=":", lw=1, label=metric)
            del line
    title = run.run if len(run.run) <= 40 else "…" + run.run[-39:]
    ax.set_title(f"{title} — {run.status}", fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("normalized entropy", fontsize=8)
    ax.tick_params(labelsize=7)
