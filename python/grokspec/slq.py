"""The machinery of :mod:`grokspec.approx`: the Gram operator, the deflating
block Krylov space, the probes, and the control-variate estimate with its
interval (batched Lanczos with its quadrature rules is in
:mod:`grokspec.quadrature`; see :mod:`grokspec.approx` for the method and
why each piece is there)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grokspec.block_products import Backend, BlockProducts
from grokspec.intervals import regression_estimate
from grokspec.quadrature import Quadrature, lanczos

__all__ = ["ApproxOptions", "Deflation", "Estimate", "Gram", "estimate"]


@dataclass(frozen=True)
class ApproxOptions:
    #: Ritz vectors kept for the deflated part (the top of the spectrum).
    deflate: int = 48
    #: Extra Krylov block columns beyond ``deflate`` (oversampling).
    oversample: int = 16
    #: Block Krylov iterations for the deflation (each costs one product
    #: of ``G`` with a block of ``deflate + oversample`` columns).
    krylov_steps: int = 3
    #: A Ritz vector is deflated only if its bracket is narrower than this (nats).
    ritz_tolerance: float = 2e-5
    #: Hutchinson probes of the first batch (Rademacher vectors); None: 12
    #: for a short side of 2048 and more, up to 32 below (a probe's spread
    #: grows as 1/√k while the target does not shrink), 24 from 8192 (see
    #: ``_probe_count``).
    probes: int | None = None
    #: More probes are drawn (in batches) until the interval's half-width of
    #: the normalized entropy is below this, or ``max_probes`` are spent.
    target_error: float = 1e-3
    max_probes: int = 128
    #: Lanczos steps per probe, at most (None: 40 for power 2; 80 for power 1,
    #: whose √x converges slowly near 0: measured 3e-3 off at 40 steps, 3e-4 at 80).
    lanczos_steps: int | None = None
    #: Lanczos stops once the probes' Gauss and Gauss–Radau values are this
    #: close on average, as a fraction of ``target_error`` (half the gap
    #: enters the error bar). 1.0 rather than 0.5 saved 2 of 14 steps at
    #: 8192² (a Lanczos step is a narrow, memory-bound product: 0.17 s there).
    quadrature_share: float = 1.0
    #: Quantile of the interval (two-sided coverage).
    coverage: float = 0.95
    seed: int = 0
    #: Whose BLAS multiplies A by the blocks: "auto" (torch's MKL for
    #: matrices of 4096² and more where available, numpy's otherwise; see
    #: :mod:`grokspec.block_products`), "numpy" or "torch". The choice moves
    #: the estimate by float32 rounding only, well inside its interval.
    products: str = "auto"


class Gram:
    """``G/S`` of the short side of A (centred if asked), applied to blocks.

    The products run in A's dtype (float32 BLAS for float32 input), by
    `backend`'s BLAS; blocks are float64 outside."""

    def __init__(self, a: np.ndarray, center: bool, threads: int = 1, backend: Backend = "numpy"):
        self.a = np.ascontiguousarray(a)
        self.products = BlockProducts(self.a, backend, threads)
        self.tall = a.shape[0] >= a.shape[1]
        self.k = min(a.shape)
        self.mean = np.asarray(a.mean(axis=0, dtype=np.float64)) if center else None
        self.total = _frobenius_squared(self.a, self.mean, threads)
        self.scale = 1.0 / self.total if self.total > 0 else 1.0

    def _a(self, v: np.ndarray) -> np.ndarray:  # A_c v, v: (n, b)
        out = self.products.times(v.astype(self.a.dtype, copy=False)).astype(np.float64)
        if self.mean is not None:
            out -= self.mean @ v
        result: np.ndarray = out
        return result

    def _at(self, w: np.ndarray) -> np.ndarray:  # A_cᵀ w, w: (m, b)
        out = self.products.transposed_times(w.astype(self.a.dtype, copy=False)).astype(np.float64)
        if self.mean is not None:
            out -= np.outer(self.mean, w.sum(axis=0))
        result: np.ndarray = out
        return result

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        g = self._at(self._a(v)) if self.tall else self._a(self._at(v))
        return g * self.scale


def _frobenius_squared(a: np.ndarray, mean: np.ndarray | None, threads: int = 1) -> float:
    """‖A - 1μᵀ‖_F² in float64: one pass by the engine on `threads` threads
    (17 ms at 8192² float32 on two cores, where numpy's einsum on row blocks
    took 47–52 ms)."""
    from grokspec import _core

    total = _core.frobenius_squared(a, threads=threads)
    if mean is not None:
        total -= a.shape[0] * float(mean @ mean)
    return max(total, 0.0)


@dataclass(frozen=True)
class Deflation:
    """Ritz pairs of ``G/S`` from a block Krylov space."""

    #: Orthonormal Ritz vectors (k, d).
    vectors: np.ndarray
    #: ``(G/S)`` times them (k, d), from the Krylov images (no product).
    images: np.ndarray
    #: Ritz values θ_j = u_jᵀ(G/S)u_j, descending.
    values: np.ndarray
    #: ‖(G/S)u_j‖²: the second moments of the Ritz vectors' spectral measures.
    second_moments: np.ndarray
    products: int
    #: The largest Ritz value (σ_max²/S from below, deflated or not).
    top: float


def _orthonormal(block: np.ndarray, scale: float, against: list[np.ndarray]) -> np.ndarray:
    """An orthonormal basis of the part of `block` orthogonal to the bases
    `against`, without the directions below 1e-6·`scale` (rounding of the
    float32 products, or nothing at all: a low-rank matrix's Krylov block is
    rank-deficient). Two passes of projection and eigen-orthonormalization
    of the small Gram matrix: only matrix products (LAPACK's Householder QR
    of a 4096×64 block took seconds on a busy two-core machine)."""
    for _ in range(2):
        for b in against:
            block = block - b @ (b.T @ block)
        w, v = np.linalg.eigh(block.T @ block)
        keep = w > (1e-6 * scale) ** 2
        block = (block @ v[:, keep]) / np.sqrt(w[keep])
        scale = 1.0
    return block


def _deflate(g: Gram, options: ApproxOptions, rng: np.random.Generator, riders: np.ndarray) -> tuple[Deflation, np.ndarray]:
    """Randomized block Krylov [Ω, GΩ, G²Ω, ...] then Rayleigh–Ritz.

    `riders` (k, p) ride along in the first product, and ``(G/S)·riders``
    is returned with the deflation: the probes' first Lanczos product then
    costs nothing (see :func:`_probes`). The products are bound by memory
    bandwidth, so the extra columns are almost free: at 8192² this saves
    one of ~10 Lanczos products."""
    width = min(options.deflate + options.oversample, g.k)
    omega = rng.standard_normal((g.k, width))
    block = _orthonormal(omega, math.sqrt(g.k), [])
    basis: list[np.ndarray] = []
    images: list[np.ndarray] = []
    rider_images = np.zeros_like(riders)
    for step in range(options.krylov_steps):
        basis.append(block)
        if step == 0:
            both = g @ np.hstack([block, riders])
            images.append(both[:, : block.shape[1]])
            rider_images = both[:, block.shape[1] :]
        else:
            images.append(g @ block)
        if step + 1 == options.krylov_steps or sum(b.shape[1] for b in basis) + width > g.k:
            break
        block = _orthonormal(images[-1], float(np.linalg.norm(images[-1])), basis)
        if block.shape[1] == 0:  # the Krylov space is exhausted (low rank)
            break
    v = np.hstack(basis)  # (k, width·steps)
    gv = np.hstack(images)
    t = v.T @ gv
    theta, w = np.linalg.eigh((t + t.T) / 2)
    top = np.argsort(theta)[::-1][: min(options.deflate, len(theta))]
    gu = gv @ w[:, top]
    values, moments = np.clip(theta[top], 0.0, None), np.einsum("ij,ij->j", gu, gu)
    # Only converged Ritz vectors pay off: an unconverged one (a bulk
    # without a gap, as in a random matrix) widens the deflated bracket by
    # θ ln(‖Gu‖²/θ²) and is better left to the probes.
    safe = np.where(values > 0, values, 1.0)
    width = np.where(values > 0, values * np.log(np.maximum(moments, values**2) / safe**2), 0.0)
    keep = width <= options.ritz_tolerance
    deflation = Deflation(
        v @ w[:, top[keep]], gu[:, keep], values[keep], moments[keep], v.shape[1] + riders.shape[1], float(values[0])
    )
    return deflation, rider_images


def _probe_count(k: int, options: ApproxOptions) -> int:
    if options.probes is not None:
        if options.probes < 4:
            raise ValueError(f"probes must be at least 4 (the interval needs the spread), got {options.probes}")
        return options.probes
    if k >= 8192:
        # There the narrow products are bound by memory bandwidth: 24 columns
        # cost about what 12 do (8192² float32, 2 cores: 86 vs 98 ms), and
        # the smaller spread lets Lanczos stop steps earlier and spares a
        # second batch (median 1.52 -> 1.20 s per estimate). At 4096×11008
        # 12 stayed faster (0.52 vs 0.60 s).
        return 24
    return max(12, min(32, 24576 // k))


def _rademacher(k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    result: np.ndarray = rng.choice(np.array([-1.0, 1.0]), size=(k, count))
    return result


def _probes(deflation: Deflation, z: np.ndarray, image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Probes projected off the deflated vectors, ``y = Pz = z - U c`` (two
    passes, for orthogonality to the last bit), and, given ``image`` =
    ``(G/S) z``, their image ``(G/S) y = image - (G/S)U c`` without a product."""
    u = deflation.vectors
    c = u.T @ z
    y = z - u @ c
    again = u.T @ y
    y -= u @ again
    if image is None:
        return y, None
    result: np.ndarray = image - deflation.images @ (c + again)
    return y, result


@dataclass(frozen=True)
class Estimate:
    """H in nats, the half-width of its interval, and the rank estimate."""

    nats: float
    error: float
    rank: float
    rank_error: float
    #: σ_max²/S from below: the largest Ritz value seen.
    top: float


def _power2(d: Deflation, q: Quadrature, controls: list[np.ndarray], coverage: float) -> tuple[float, float]:
    """H = -Σ p ln p and its half-width, for power 2."""
    theta, m2 = d.values, d.second_moments
    positive = theta > 0
    safe = np.where(positive, theta, 1.0)
    low = np.where(positive, theta * np.log(safe), 0.0)  # Jensen
    high = np.where(positive, theta * np.log(np.maximum(m2, theta**2) / safe), 0.0)  # 2-node Radau
    mid, half = (q.gauss[0] + q.radau[0]) / 2, np.abs(q.radau[0] - q.gauss[0]) / 2
    tail, spread = regression_estimate(mid, controls, coverage)
    total = float((low + high).sum()) / 2 + tail
    return -total, float((high - low).sum()) / 2 + spread + float(half.mean())


def _power1(d: Deflation, q: Quadrature, controls: list[np.ndarray], coverage: float) -> tuple[float, float]:
    """H = ln F1 - F2/F1 with F1 = Σσ̃, F2 = Σσ̃ ln σ̃ (σ̃ = σ/‖A‖_F), and its
    half-width by the delta method."""
    theta, m2 = d.values, np.maximum(d.second_moments, d.values**2)
    positive = theta > 0
    safe_t, safe_m = np.where(positive, theta, 1.0), np.where(positive, m2, 1.0)
    radau_node, radau_weight = safe_m / safe_t, np.where(positive, theta**2 / safe_m, 0.0)
    one_gauss, one_radau = np.sqrt(theta), radau_weight * np.sqrt(radau_node)
    two_gauss = np.where(positive, np.sqrt(safe_t) * np.log(safe_t) / 2, 0.0)
    two_radau = radau_weight * np.sqrt(radau_node) * np.log(radau_node) / 2
    parts = []
    for i, (g_part, r_part) in enumerate(((one_gauss, one_radau), (two_gauss, two_radau))):
        mid = (q.gauss[i] + q.radau[i]) / 2
        tail, _ = regression_estimate(mid, controls, coverage)
        parts.append(
            (float((g_part + r_part).sum()) / 2 + tail, float(np.abs(g_part - r_part).sum()) / 2, mid, q.radau[i] - q.gauss[i])
        )
    (f1, f1_fixed, mid1, width1), (f2, f2_fixed, mid2, width2) = parts
    if not f1 > 0:
        return math.nan, math.nan
    grad1, grad2 = 1 / f1 + f2 / f1**2, -1 / f1
    _, spread = regression_estimate(grad1 * mid1 + grad2 * mid2, controls, coverage)
    fixed = abs(grad1) * (f1_fixed + float(np.abs(width1).mean()) / 2) + abs(grad2) * (
        f2_fixed + float(np.abs(width2).mean()) / 2
    )
    return math.log(f1) - f2 / f1, spread + fixed


def _rank(d: Deflation, q: Quadrature, threshold: float, controls: list[np.ndarray], coverage: float) -> tuple[float, float]:
    """#{λ/S > threshold}: the deflated Ritz values above it plus the probes'
    estimate of tr(P·1[G/S > threshold]·P) from their Gauss measures."""
    tail, spread = regression_estimate(q.above, controls, coverage)
    return float(np.count_nonzero(d.values > threshold)) + tail, spread


def estimate(
    g: Gram, power: float, epsilon: float, shape: tuple[int, int], scale: float, options: ApproxOptions
) -> tuple[Estimate, int]:
    """Deflation, then batches of probes until the interval's half-width
    (divided by `scale`, the normalization's ln K) is below the target."""
    rng = np.random.default_rng(options.seed)
    count = _probe_count(g.k, options)
    first = _rademacher(g.k, count, rng)
    # For power 1 the probes' first product is made, not derived: √x weighs
    # the smallest eigenvalues, and on a spectrum that falls below float32's
    # resolution (σ∝i^-1.5: λ from 1 to 1e-9) the derived product's
    # different rounding moved the estimate by 8e-4 (measured, 1024²).
    riders = first if power == 2.0 else first[:, :0]
    deflation, rider_images = _deflate(g, options, rng, riders)
    first_image = rider_images if power == 2.0 else None
    threshold = deflation.top * (max(shape) * epsilon) ** 2
    combine = _power2 if power == 2.0 else _power1
    quadrature: Quadrature | None = None

    def controls(q: Quadrature) -> list[np.ndarray]:
        return [q.first_moment - (1.0 - float(deflation.values.sum())), q.norms2 - (g.k - deflation.vectors.shape[1])]

    def good_enough(batch: Quadrature) -> bool:
        q = batch if quadrature is None else quadrature + batch
        return not combine(deflation, q, controls(q), options.coverage)[1] / scale > options.target_error

    while True:
        if quadrature is None:
            start, start_image = _probes(deflation, first, first_image)
        else:
            start, start_image = _probes(deflation, _rademacher(g.k, count, rng), None)
        tolerance = options.quadrature_share * options.target_error * scale
        max_steps = options.lanczos_steps or (40 if power == 2.0 else 80)
        batch = lanczos(g.__matmul__, start, start_image, power, threshold, tolerance, max_steps, good_enough)
        quadrature = batch if quadrature is None else quadrature + batch
        nats, error = combine(deflation, quadrature, controls(quadrature), options.coverage)
        done = quadrature.norms2.size
        if not error / scale > options.target_error or done >= options.max_probes:
            break
        # The spread shrinks as 1/√probes: ask for what the target needs.
        wanted = done * (error / scale / options.target_error) ** 2
        count = int(min(max(wanted - done, 4), options.max_probes - done))
    rank, rank_error = _rank(deflation, quadrature, threshold, controls(quadrature), options.coverage)
    estimate = Estimate(nats, error, min(max(rank, 1.0), float(g.k)), rank_error, max(deflation.top, quadrature.top))
    return estimate, deflation.products + quadrature.products
