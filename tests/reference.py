"""Independent float64 references (LAPACK through scipy) for the tests."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def reference_singular_values(x: np.ndarray, *, center: bool = False) -> np.ndarray:
    """LAPACK's gesdd singular values of x as float64 (after centring if asked)."""
    a = np.asarray(x, dtype=np.float64)
    if center:
        a = a - a.mean(axis=0, keepdims=True)
    return scipy.linalg.svdvals(a)


def reference_entropy(x: np.ndarray, *, power: float = 2.0, normalize: str = "dim", center: bool = False) -> float:
    """SPEC §1's definition, written out in numpy on LAPACK singular values."""
    m, n = x.shape
    sigma = reference_singular_values(x, center=center)
    weights = sigma**power
    total = weights.sum()
    if total == 0:
        return float("nan")
    p = weights[weights > 0] / total
    h = float(-(p * np.log(p)).sum())
    eps = np.finfo(x.dtype).eps if x.dtype in (np.float32, np.float64) else np.finfo(np.float32).eps
    k = {
        "dim": min(m, n),
        "cols": n,
        "rank": int((sigma > sigma[0] * max(m, n) * eps).sum()),
        "none": None,
    }[normalize]
    if k is None:
        return h
    if k <= 1:
        return float("nan")
    return h / np.log(k)


def with_singular_values(rows: int, cols: int, sigma: np.ndarray, seed: int = 0) -> np.ndarray:
    """A float64 matrix with exactly these singular values (random orthogonal factors)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    s = np.zeros((rows, cols))
    k = min(rows, cols)
    s[np.arange(k), np.arange(k)] = sigma[:k]
    return u @ s @ v.T
