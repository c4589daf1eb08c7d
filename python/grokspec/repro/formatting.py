"""Number formatting for the reproduction report."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["f", "fraction", "interval", "mean_ci", "median_ci_text", "value_range"]


def f(value: Any, digits: int = 3) -> str:
    """A number as the report prints it ('—' for none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def mean_ci(summary: dict[str, Any] | None, digits: int = 3) -> str:
    if not summary or summary.get("mean") is None:
        return "—"
    text = f(summary["mean"], digits)
    if summary.get("ci"):
        text += f" [{f(summary['ci'][0], digits)}, {f(summary['ci'][1], digits)}]"
    return text


def value_range(summary: dict[str, Any] | None, digits: int = 3) -> str:
    if not summary or not summary.get("range"):
        return "—"
    return f"[{f(summary['range'][0], digits)}, {f(summary['range'][1], digits)}]"


def interval(pair: list[float] | None, digits: int = 3) -> str:
    return "—" if not pair else f"[{f(pair[0], digits)}, {f(pair[1], digits)}]"


def median_ci_text(median: float | None, ci: list[float] | None, digits: int = 0) -> str:
    if median is None:
        return "—"
    return f(float(median), digits) + (f" {interval(ci, digits)}" if ci else "")


def fraction(count: int, total: int) -> str:
    return f"{count}/{total}" + (f" ({100 * count / total:.0f}%)" if total else "")
