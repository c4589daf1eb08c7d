"""Summaries with bootstrap confidence intervals, for the reproduction report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "summary"]


def bootstrap_ci(values: Sequence[float | None], *, resamples: int = 10000, seed: int = 0) -> list[float] | None:
    """95% percentile bootstrap CI of the mean (None for fewer than 2 values)."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(data) < 2:
        return None
    means = np.random.default_rng(seed).choice(data, size=(resamples, len(data)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summary(values: Sequence[float | int | None]) -> dict[str, Any]:
    """n, mean, bootstrap CI of the mean and range of the finite values."""
    data = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not data:
        return {"n": 0, "mean": None, "ci": None, "range": None}
    return {"n": len(data), "mean": float(np.mean(data)), "ci": bootstrap_ci(data), "range": [min(data), max(data)]}
