"""``grokspec reproduce``: train (:mod:`grokspec.repro.plan`), analyse
(:mod:`grokspec.repro.analysis`), render (:mod:`grokspec.repro.markdown`).

The three halves meet only in files: the plan writes run dirs and
``plan.json``; the analysis reads them (metrics.jsonl and config.json) into
a report; the renderer writes report.json, report.md and the figures. So a
report can be rebuilt from the metrics alone, without training
(``analyse_only``), for example from runs trained on another machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from grokspec.repro.analysis import analyse
from grokspec.repro.markdown import write_report
from grokspec.repro.plan import train_plan
from grokspec.repro.scales import Scale

__all__ = ["reproduce"]

Log = Callable[[str], None]


def reproduce(
    out: str | Path,
    scale: str | Scale = "cpu",
    *,
    controls: tuple[str, ...] | None = None,
    jobs: int = 1,
    device: str = "auto",
    train: bool = True,
    report: bool = True,
    log: Log | None = None,
) -> dict[str, Any] | None:
    """Trains (unless `train` is false), then analyses and writes the report
    (unless `report` is false). Returns the report, or None without one."""
    log = log or (lambda message: None)
    out = Path(out)
    if train:
        train_plan(out, scale, controls=controls, jobs=jobs, device=device, log=log)
    if not report:
        return None
    log("— analysis")
    result = analyse(out, log=log)
    write_report(out, result)
    return result
