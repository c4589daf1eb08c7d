"""Confidence intervals for a mean estimated from random probes: Student's t
quantile and a control-variate regression (the approximate entropy's error
bar, :mod:`grokspec.slq`). numpy and the standard library only."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["regression_estimate", "t_quantile"]


def t_quantile(coverage: float, dof: int) -> float:
    """Student's t quantile for a two-sided `coverage` (Cornish–Fisher
    expansion around the normal quantile; within 1e-3 for dof >= 3)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + coverage / 2)
    if dof <= 0:
        return math.inf
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def regression_estimate(values: np.ndarray, controls: list[np.ndarray], coverage: float) -> tuple[float, float]:
    """Control-variate estimate of E[values] (the intercept of a least-squares
    fit on centred controls whose expectations are zero) and the half-width
    of its interval."""
    n = values.shape[0]
    usable = [c for c in controls if np.ptp(c) > 1e-12 * max(np.abs(c).max(), 1e-300)]
    x = np.column_stack([np.ones(n), *usable]) if n > len(usable) + 2 else np.ones((n, 1))
    coefficients, *_ = np.linalg.lstsq(x, values, rcond=None)
    residual = values - x @ coefficients
    dof = n - x.shape[1]
    if dof <= 0:
        return float(values.mean()), math.inf
    variance = float(residual @ residual) / dof
    inverse = np.linalg.pinv(x.T @ x)
    return float(coefficients[0]), t_quantile(coverage, dof) * math.sqrt(max(variance * inverse[0, 0], 0.0))
