"""The approximate spectral entropy of a large matrix, with an error bar.

``H = -Σ p_i ln p_i`` with ``p_i = λ_i / Σλ`` (``λ`` the eigenvalues of the
Gram matrix ``G`` of the short side) needs ``tr(f(G/S))`` for
``f(x) = x ln x``, ``S = ‖A‖_F²`` (exact and cheap). It is estimated as

1. **deflation**: a randomized block Krylov space of ``G`` (float64
   orthogonalization, the matrix products in the input's precision) gives
   ``d`` orthonormal Ritz vectors ``u_j`` that span the top of the spectrum;
   their part ``Σ u_jᵀ f(G) u_j`` is bracketed without any assumption on
   convergence: Jensen gives ``f(θ_j)`` from below and the two-node
   Gauss–Radau rule (node at 0, moments ``θ_j`` and ``‖G u_j‖²``) gives
   ``θ_j ln(‖G u_j‖²/θ_j)`` from above;
2. **the rest**, ``tr(P f(G) P)`` with ``P = I - UUᵀ``, by Hutchinson's
   estimator on Rademacher probes ``P z``, each quadratic form by Lanczos
   (full reorthogonalization) on ``G``: the Gauss rule is a lower and the
   Gauss–Radau rule with a node at 0 an upper bound of ``zᵀP f(G) P z``
   (``f``'s even derivatives are positive and its odd ones, from the third,
   negative on ``(0, ∞)``), and Lanczos runs until the two agree;
3. **control variates**: ``zᵀPGPz`` and ``‖Pz‖²`` are known exactly per
   probe and their expectations exactly, so their regression on the
   probe values is subtracted (it removes the linear part of ``f`` over
   the bulk, most of the probe variance).

The reported error is a ~95% interval half-width: the deflated part's
bracket, plus Student's t quantile times the probes' standard error, plus
the mean quadrature bracket. For ``power=1`` the same Lanczos runs give
``Σσ = tr(√G)`` and ``Σ σ ln σ``; their quadrature brackets are estimates
(Gauss vs Gauss–Radau), not bounds, and the interval is propagated by the
delta method. Other powers are refused.

Everything is seeded: the same matrix, options and seed give the same
numbers on the same machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from grokspec import slq
from grokspec.block_products import blas_threads, choose_backend
from grokspec.errors import GrokspecError, NonFiniteError, ShapeError
from grokspec.slq import ApproxOptions

__all__ = ["AUTO_APPROX_MIN", "POWERS", "ApproxOptions", "ApproxResult", "approx_columns", "approx_entropy", "spectral_columns"]

#: The powers the approximation supports.
POWERS = (1.0, 2.0)


@dataclass(frozen=True)
class ApproxResult:
    """The estimate of one matrix's entropy and its statistics."""

    rows: int
    cols: int
    #: The entropy, normalized as asked (nats for ``"none"``).
    entropy: float
    #: Half-width of the ~95% interval of ``entropy`` (same units).
    entropy_error: float
    sigma_max: float
    frobenius_norm: float
    stable_rank: float
    #: ``exp(H)`` with H in nats.
    effective_rank: float
    #: ``#{σ_i > σ_max·max(m, n)·eps}``: exact when the tail lies clearly
    #: above the threshold, else estimated from the probes' spectral measures.
    numerical_rank: int
    #: Matrix-vector products with ``G`` spent (columns × steps).
    products: int


def _check_options(power: float, normalize: str) -> None:
    if power not in POWERS:
        raise ValueError(f"method='approx' supports power 1 or 2, got {power:g}; use an exact method for other powers")
    if normalize not in ("dim", "cols", "rank", "none"):
        raise ValueError(f"normalize must be 'dim', 'cols', 'rank' or 'none', got {normalize!r}")


#: Below this short side the exact engine is cheaper than any estimate: it
#: computes the matrix exactly (``entropy_error`` 0).
EXACT_BELOW = 256


def approx_entropy(
    a: np.ndarray,
    *,
    power: float = 2.0,
    normalize: str = "dim",
    center: bool = False,
    options: ApproxOptions | None = None,
    threads: int | None = None,
) -> ApproxResult:
    """The estimated statistics of one 2-D float32/float64 matrix (see the
    module's docstring); raises ValueError for a power other than 1 or 2.
    `threads` (None: all cores) share the pass for ‖A‖_F² and the products
    (numpy's or torch's BLAS, ``options.products``)."""
    options = options or ApproxOptions()
    _check_options(power, normalize)
    if a.ndim != 2 or 0 in a.shape:
        raise ShapeError(f"expected a non-empty 2-D matrix, got shape {a.shape}")
    rows, cols = a.shape
    backend = choose_backend((rows, cols), options.products)
    if min(rows, cols) < EXACT_BELOW:
        return _exact(a, power, normalize, center)
    from grokspec import _core

    threads = threads or _core.default_threads()
    with blas_threads(threads, backend):
        return _estimated(slq.Gram(a, center, threads, backend), power, normalize, options)


def _estimated(g: slq.Gram, power: float, normalize: str, options: ApproxOptions) -> ApproxResult:
    """The estimate for `g`'s matrix, normalized as asked, with the rounding floor in its error."""
    a = g.a
    rows, cols = a.shape
    if not math.isfinite(g.total):
        raise NonFiniteError(f"the {a.dtype} matrix of shape {a.shape} contains NaN or infinity")
    nan = math.nan
    if g.total == 0:
        return ApproxResult(rows, cols, nan, nan, 0.0, 0.0, nan, nan, 0, 0)
    epsilon = float(np.finfo(a.dtype).eps)
    # The stopping rule's scale: ln K (the rank's K is not known yet; ln k bounds it).
    scale = math.log(cols if normalize == "cols" else g.k)
    estimate, products = slq.estimate(g, float(power), epsilon, (rows, cols), scale, options)
    k = {"dim": float(g.k), "cols": float(cols), "rank": round(estimate.rank), "none": None}[normalize]
    if k is None:
        entropy, error = estimate.nats, estimate.error
    elif k <= 1:
        entropy, error = nan, nan
    else:
        entropy, error = estimate.nats / math.log(k), estimate.error / math.log(k)
        if normalize == "rank":  # the uncertain K moves ln K too
            error += abs(estimate.nats) * estimate.rank_error / (k * math.log(k) ** 2)
    # The products run in the input's precision: a floor for its rounding.
    error += 4 * math.sqrt(max(rows, cols)) * epsilon * (1 + abs(entropy))
    sigma_max2 = estimate.top * g.total
    return ApproxResult(
        rows=rows,
        cols=cols,
        entropy=entropy,
        entropy_error=error,
        sigma_max=math.sqrt(sigma_max2),
        frobenius_norm=math.sqrt(g.total),
        stable_rank=g.total / sigma_max2 if sigma_max2 > 0 else nan,
        effective_rank=math.exp(estimate.nats),
        numerical_rank=round(estimate.rank),
        products=products,
    )


def _exact(a: np.ndarray, power: float, normalize: str, center: bool) -> ApproxResult:
    from grokspec import _core

    columns, errors = _core.spectral_batch([a], power=power, normalize=normalize, center=center, need_rank=True)
    if errors:
        raise errors[0][1]
    value = {key: columns[key][0] for key in columns}  # type: ignore[index]
    return ApproxResult(
        rows=int(value["rows"]),
        cols=int(value["cols"]),
        entropy=float(value["entropy"]),
        entropy_error=0.0,
        sigma_max=float(value["sigma_max"]),
        frobenius_norm=float(value["frobenius_norm"]),
        stable_rank=float(value["stable_rank"]),
        effective_rank=float(value["effective_rank"]),
        numerical_rank=int(value["numerical_rank"]),
        products=0,
    )


#: Where ``method="auto", allow_approx=True`` estimates instead of computing
#: exactly: a short side of at least this (below it the exact engine takes
#: about a second or less on two cores).
AUTO_APPROX_MIN = 2048


def approx_columns(
    matrices: list[np.ndarray],
    *,
    power: float,
    normalize: str,
    center: bool,
    threads: int | None = None,
    options: ApproxOptions | None = None,
) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
    """The engine's columns (``_core.spectral_batch``'s layout, plus
    ``entropy_error``) of each matrix by :func:`approx_entropy`, one at a
    time (the BLAS products are parallel); errors as ``(index, exception)``."""
    _check_options(power, normalize)
    count = len(matrices)
    columns: dict[str, Any] = {key: np.full(count, math.nan) for key in (*_FLOAT_COLUMNS, "entropy_error")}
    columns["numerical_rank"] = np.full(count, -1, dtype=np.int64)
    columns["rows"] = np.array([m.shape[0] if m.ndim == 2 else 0 for m in matrices], dtype=np.int64)
    columns["cols"] = np.array([m.shape[1] if m.ndim == 2 else 0 for m in matrices], dtype=np.int64)
    columns["method"] = ["failed"] * count
    errors: list[tuple[int, BaseException]] = []
    for i, matrix in enumerate(matrices):
        try:
            result = approx_entropy(matrix, power=power, normalize=normalize, center=center, options=options, threads=threads)
        except GrokspecError as error:
            errors.append((i, type(error)(f"matrix {i} of {count}: {error}") if count > 1 else error))
            continue
        for key in (*_FLOAT_COLUMNS, "entropy_error"):
            columns[key][i] = getattr(result, key)
        columns["numerical_rank"][i] = result.numerical_rank
        columns["method"][i] = "approx" if result.products else "exact"
    return columns, errors


_FLOAT_COLUMNS = ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank")


def spectral_columns(
    matrices: list[np.ndarray], *, power: float, normalize: str, center: bool, method: str, need_rank: bool, threads: int | None
) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
    """``method="approx"``: every matrix estimated; ``"auto"`` (with the
    user's leave to approximate): matrices whose short side is at least
    :data:`AUTO_APPROX_MIN` estimated, the others exact (``entropy_error``
    NaN). Columns and errors in the matrices' order."""
    from grokspec import _core

    if method == "approx":
        return approx_columns(matrices, power=power, normalize=normalize, center=center, threads=threads)
    large = [i for i, m in enumerate(matrices) if m.ndim == 2 and min(m.shape) >= AUTO_APPROX_MIN]
    small = [i for i in range(len(matrices)) if i not in set(large)]
    merged: dict[str, Any] = {}
    errors: list[tuple[int, BaseException]] = []
    parts: list[tuple[list[int], dict[str, Any], list[tuple[int, BaseException]]]] = []
    if small:
        exact, exact_errors = _core.spectral_batch(
            [matrices[i] for i in small],
            power=power,
            normalize=normalize,
            center=center,
            method=method,
            need_rank=need_rank,
            threads=threads,
        )
        parts.append((small, exact, exact_errors))
    if large:
        estimated, estimated_errors = approx_columns(
            [matrices[i] for i in large], power=power, normalize=normalize, center=center, threads=threads
        )
        parts.append((large, estimated, estimated_errors))
    for positions, columns, part_errors in parts:
        for key, values in columns.items():
            merged.setdefault(key, [math.nan if key != "method" else "failed"] * len(matrices))
            for position, value in zip(positions, list(values)):
                merged[key][position] = value
        errors.extend((positions[i], error) for i, error in part_errors)
    merged.setdefault("entropy_error", [math.nan] * len(matrices))
    for key in merged:
        if key != "method":
            merged[key] = np.asarray(merged[key])
    return merged, sorted(errors, key=lambda e: e[0])
