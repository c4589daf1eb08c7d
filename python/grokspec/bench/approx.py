"""``grokspec bench --approx``: the approximate entropy's accuracy and speed.

Accuracy: for each kind of spectrum that weight matrices show — a random
(Marchenko–Pastur) bulk, low rank plus noise, power laws (heavy-tailed, as
trained weights are) and a few huge spikes — a matrix with exactly those
singular values is estimated with many seeds; the table gives the largest
``|ΔH̃|`` against the exact engine (itself within 1e-6 of float64 LAPACK),
the mean reported half-width and how often the interval held the exact
value. Speed: the exact engine and the estimate on the same matrices, same
threads, one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "SPECTRA",
    "AccuracyResult",
    "SpeedResult",
    "accuracy_markdown",
    "run_accuracy",
    "run_speed",
    "spectrum_matrix",
    "speed_markdown",
    "speed_matrix",
]


def _random(k: int, rng: np.random.Generator) -> np.ndarray | None:
    return None  # a Gaussian matrix itself


def _low_rank(k: int, rng: np.random.Generator) -> np.ndarray:
    s = 0.05 * rng.uniform(0.5, 1.5, k)
    s[:20] += np.linspace(10, 1, 20)
    return s


def _power_law(alpha: float) -> Callable[[int, np.random.Generator], np.ndarray]:
    def spectrum(k: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(1, k + 1, dtype=np.float64) ** -alpha

    return spectrum


def _spiky(k: int, rng: np.random.Generator) -> np.ndarray:
    s = rng.uniform(0.5, 1.0, k)
    s[:5] = [300.0, 200.0, 100.0, 50.0, 20.0]
    return s


#: Singular-value profiles (None: a Gaussian matrix).
SPECTRA: dict[str, Callable[[int, np.random.Generator], np.ndarray | None]] = {
    "random (Gaussian)": _random,
    "low rank + noise": _low_rank,
    "power law σ∝i^-0.75": _power_law(0.75),
    "power law σ∝i^-1.5": _power_law(1.5),
    "spiky (5 spikes)": _spiky,
}


def spectrum_matrix(rows: int, cols: int, kind: str, seed: int = 0) -> np.ndarray:
    """A float32 matrix of the given spectrum kind (random orthogonal factors)."""
    rng = np.random.default_rng(seed)
    k = min(rows, cols)
    sigma = SPECTRA[kind](k, rng)
    if sigma is None:
        gaussian: np.ndarray = rng.standard_normal((rows, cols), dtype=np.float32)
        return gaussian
    u, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, k)))
    matrix: np.ndarray = ((u * np.sort(sigma)[::-1]) @ v.T).astype(np.float32)
    return matrix


@dataclass(frozen=True)
class AccuracyResult:
    kind: str
    shape: str
    power: float
    seeds: int
    exact: float
    #: max |H̃(estimate) − H̃(exact)| over the seeds.
    max_error: float
    #: Mean reported half-width (entropy_error).
    mean_half_width: float
    #: Fraction of seeds whose interval held the exact value.
    coverage: float
    seconds: float


@dataclass(frozen=True)
class SpeedResult:
    shape: str
    #: The spectrum: a power law (orthogonal factors up to 4096²), else noise plus power-law spikes.
    kind: str
    #: The faster of two exact runs.
    exact_seconds: float
    #: The median of the estimates' times over `seeds` seeds (seeds do
    #: different numbers of Lanczos steps).
    approx_seconds: float
    speedup: float
    #: The largest |ΔH̃| over the seeds, and the mean reported half-width.
    error: float
    half_width: float
    threads: int
    seeds: int = 3


def run_accuracy(
    size: tuple[int, int] = (1024, 1024),
    seeds: int = 20,
    powers: tuple[float, ...] = (2.0, 1.0),
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[AccuracyResult]:
    from grokspec.spectral import spectral_entropy

    out = []
    for kind in SPECTRA:
        a = spectrum_matrix(*size, kind)
        for power in powers:
            if progress:
                progress(f"accuracy: {kind}, power {power:g}")
            exact = float(spectral_entropy(a, power=power, threads=threads))
            errors, widths, held = [], [], 0
            start = time.perf_counter()
            for seed in range(seeds):
                stats = _approx(a, power, seed, threads)
                errors.append(abs(stats.entropy - exact))
                widths.append(stats.entropy_error)
                held += errors[-1] <= stats.entropy_error
            seconds = (time.perf_counter() - start) / seeds
            out.append(
                AccuracyResult(
                    kind, f"{size[0]}x{size[1]}", power, seeds, exact, max(errors), float(np.mean(widths)), held / seeds, seconds
                )
            )
    return out


def _approx(a: np.ndarray, power: float, seed: int, threads: int | None) -> _Row:
    from grokspec.approx import ApproxOptions, approx_columns

    columns, errors = approx_columns(
        [a], power=power, normalize="dim", center=False, threads=threads, options=ApproxOptions(seed=seed)
    )
    if errors:
        raise errors[0][1]
    return _Row(float(columns["entropy"][0]), float(columns["entropy_error"][0]))


@dataclass(frozen=True)
class _Row:
    entropy: float
    entropy_error: float


def run_speed(
    shapes: tuple[tuple[int, int], ...] = ((4096, 4096), (4096, 11008), (8192, 8192)),
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SpeedResult]:
    """Two exact runs and one estimate for each of three seeds per shape:
    the faster exact run against the median estimate (conservative for the
    estimate on a machine whose speed drifts between runs)."""
    from grokspec import _core
    from grokspec.spectral import spectral_entropy

    threads = threads or _core.default_threads()
    out = []
    for rows, cols in shapes:
        kind, a = speed_matrix(rows, cols)
        exact_times = []
        for attempt in range(2):
            if progress:
                progress(f"speed: {rows}x{cols} exact, run {attempt + 1} of 2")
            start = time.perf_counter()
            exact = float(spectral_entropy(a, threads=threads))
            exact_times.append(time.perf_counter() - start)
        if progress:
            progress(f"speed: {rows}x{cols} approx")
        _approx(a, 2.0, 0, threads)  # warm-up (BLAS threads, allocations)
        approx_times, rows_seen = [], []
        for seed in range(1, 4):
            start = time.perf_counter()
            rows_seen.append(_approx(a, 2.0, seed, threads))
            approx_times.append(time.perf_counter() - start)
        exact_seconds, approx_seconds = min(exact_times), float(np.median(approx_times))
        out.append(
            SpeedResult(
                f"{rows}x{cols}",
                kind,
                exact_seconds,
                approx_seconds,
                exact_seconds / approx_seconds,
                max(abs(row.entropy - exact) for row in rows_seen),
                float(np.mean([row.entropy_error for row in rows_seen])),
                threads,
                len(rows_seen),
            )
        )
    return out


def speed_matrix(rows: int, cols: int) -> tuple[str, np.ndarray]:
    """The speed table's matrix of a shape and its spectrum's name: a power law
    up to 4096 (orthogonal factors of a larger size take minutes to make),
    noise with a power-law top above."""
    if max(rows, cols) <= 4096:
        kind = "power law σ∝i^-0.75"
        return kind, spectrum_matrix(rows, cols, kind)
    return "noise + 32 power-law spikes", _gaussian_like(rows, cols)


def _gaussian_like(rows: int, cols: int) -> np.ndarray:
    """A large matrix with a power-law top over a noise bulk (the shape of
    trained weights) without the cost of orthogonal factors of that size."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, cols), dtype=np.float32)
    spikes = 32
    left = rng.standard_normal((rows, spikes), dtype=np.float32) / np.float32(np.sqrt(rows))
    right = rng.standard_normal((spikes, cols), dtype=np.float32) / np.float32(np.sqrt(cols))
    strength = (4 * (np.sqrt(rows) + np.sqrt(cols)) * np.arange(1, spikes + 1) ** -0.7).astype(np.float32)
    a += (left * strength) @ right
    return a


def accuracy_markdown(results: list[AccuracyResult]) -> str:
    lines = [
        "| spectrum | shape | power | exact H̃ | max abs error | mean reported ± | interval held | time per estimate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.kind} | {r.shape} | {r.power:g} | {r.exact:.4f} | {r.max_error:.1e} | {r.mean_half_width:.1e} | "
            f"{r.coverage:.0%} of {r.seeds} | {r.seconds:.2f} s |"
        )
    return "\n".join(lines)


def speed_markdown(results: list[SpeedResult]) -> str:
    lines = [
        "| matrix (float32) | spectrum | exact engine (best of 2) | approx (median of 3 seeds) | speedup "
        "| max abs error | mean reported ± |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        times = f"{r.exact_seconds:.2f} s | {r.approx_seconds:.2f} s | {r.speedup:.1f}×"
        lines.append(f"| {r.shape} | {r.kind} | {times} | {r.error:.1e} | {r.half_width:.1e} |")
    return "\n".join(lines)


def as_records(results: list[AccuracyResult] | list[SpeedResult]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]
