"""report.md and report.json of ``grokspec reproduce``: the sections'
renderers in order, the figures, and the JSON.

The tables put our numbers beside the paper's; the sentences that draw
conclusions are generated from the numbers (each section's renderer), so a
claim that does not reproduce is reported as not reproducing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from grokspec.io_atomic import write_json, write_text
from grokspec.repro.figures import make_figures
from grokspec.repro.sections import (
    alarms,
    calibration,
    control,
    differences,
    intervention,
    phases,
    plateau,
    summary,
    threshold,
    weights,
)

__all__ = ["json_clean", "render_markdown", "write_report"]

_SECTIONS = (summary, threshold, phases, control, intervention, calibration, weights, plateau, alarms, differences)


def render_markdown(report: dict[str, Any]) -> str:
    return "\n".join(line for section in _SECTIONS for line in section.render(report))


def write_report(out: Path, report: dict[str, Any]) -> None:
    out = Path(out)
    report["figures"] = make_figures(out, report)
    write_json(out / "report.json", json_clean(report))
    write_text(out / "report.md", render_markdown(report))


def json_clean(value: Any) -> Any:
    """Plain JSON: string keys, lists for tuples, no NaN or infinity (null)."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
