"""method="approx": the estimate, its interval, and how the library uses it.

Every number is checked against the exact engine (itself within 1e-6 of
float64 LAPACK, see test_spectral.py) or against LAPACK directly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from grokspec import NonFiniteError, ShapeError, approx, spectral_entropy, spectral_stats
from grokspec.approx import ApproxOptions, approx_entropy
from grokspec.bench.approx import SPECTRA, spectrum_matrix
from reference import reference_entropy

ACCURACY = 2e-3  # the bar for |ΔH̃|


@pytest.fixture(autouse=True)
def one_blas_thread():
    # An oversubscribed OpenBLAS spins (seconds instead of milliseconds on a busy runner).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.mark.parametrize("kind", list(SPECTRA))
def test_estimates_are_within_the_bar_and_inside_their_intervals(kind):
    a = spectrum_matrix(512, 512, kind)
    exact = spectral_entropy(a)
    held = 0
    for seed in range(8):
        result = approx_entropy(a, options=ApproxOptions(seed=seed))
        assert abs(result.entropy - exact) <= ACCURACY
        assert 0 < result.entropy_error < 0.01
        held += abs(result.entropy - exact) <= result.entropy_error
    assert held >= 7  # >= 95% over all kinds (asserted per kind with one miss allowed)


def test_rectangular_centred_and_every_normalization_against_lapack():
    rng = np.random.default_rng(3)
    a = (spectrum_matrix(700, 400, "power law σ∝i^-0.75", seed=1) + 0.01 * rng.standard_normal((700, 400))).astype(np.float32)
    for normalize in ("dim", "cols", "rank", "none"):
        for center in (False, True):
            result = approx_entropy(a, normalize=normalize, center=center)
            want = reference_entropy(a, normalize=normalize, center=center)
            scale = math.log(min(a.shape)) if normalize == "none" else 1.0
            assert abs(result.entropy - want) <= ACCURACY * scale, (normalize, center)
            assert abs(result.entropy - want) <= result.entropy_error, (normalize, center)
    wide = np.ascontiguousarray(a.T)
    assert abs(approx_entropy(wide).entropy - reference_entropy(wide)) <= ACCURACY


def test_power_one_and_the_statistics():
    a = spectrum_matrix(600, 512, "low rank + noise")
    result = approx_entropy(a, power=1)
    assert abs(result.entropy - reference_entropy(a, power=1)) <= result.entropy_error
    sigma = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    assert result.sigma_max == pytest.approx(sigma[0], rel=1e-4)
    assert result.frobenius_norm == pytest.approx(math.sqrt((sigma**2).sum()), rel=1e-6)
    assert result.numerical_rank == 512


def test_seeded_and_reproducible():
    a = spectrum_matrix(512, 512, "random (Gaussian)")
    first, again = approx_entropy(a, options=ApproxOptions(seed=5)), approx_entropy(a, options=ApproxOptions(seed=5))
    assert first == again
    assert approx_entropy(a, options=ApproxOptions(seed=6)).entropy != first.entropy


def test_refusals_and_edge_cases():
    a = np.ones((300, 300), dtype=np.float32)
    with pytest.raises(ValueError, match="power 1 or 2"):
        approx_entropy(a, power=3)
    with pytest.raises(ValueError, match="power 1 or 2"):
        spectral_entropy(a, method="approx", power=0.5)
    bad = a.copy()
    bad[1, 2] = np.nan
    with pytest.raises(NonFiniteError):
        spectral_entropy(bad, method="approx")
    with pytest.raises(ShapeError):
        approx_entropy(np.ones(5, dtype=np.float32))
    assert math.isnan(approx_entropy(np.zeros((300, 300), dtype=np.float32)).entropy)
    assert approx_entropy(a).entropy == pytest.approx(0.0, abs=1e-3)  # rank 1


def test_small_matrices_are_computed_exactly():
    a = np.random.default_rng(0).standard_normal((100, 80)).astype(np.float32)
    result = approx_entropy(a)
    assert result.entropy_error == 0.0 and result.products == 0
    assert abs(result.entropy - reference_entropy(a)) <= 1e-6


def test_library_face_reports_the_error_and_auto_needs_leave(monkeypatch):
    a = spectrum_matrix(512, 512, "spiky (5 spikes)")
    stats = spectral_stats(a, method="approx")
    assert stats.method == "approx" and 0 < stats.entropy_error < ACCURACY
    exact = spectral_stats(a)
    assert exact.method in ("svd", "gram") and math.isnan(exact.entropy_error)
    assert abs(stats.entropy - exact.entropy) <= stats.entropy_error
    monkeypatch.setattr(approx, "AUTO_APPROX_MIN", 512)
    assert math.isnan(spectral_stats(a).entropy_error)  # auto never approximates unasked
    mixed = spectral_stats([a, a[:100, :100]], allow_approx=True)
    assert [s.method for s in mixed] == ["approx", exact.method]
    assert mixed[0].entropy_error > 0 and math.isnan(mixed[1].entropy_error)
    batch = spectral_entropy([a, a], method="approx")
    assert batch.shape == (2,) and batch[0] == batch[1]


@pytest.mark.slow
def test_coverage_over_many_seeds_on_a_larger_matrix():
    a = spectrum_matrix(1536, 1536, "power law σ∝i^-0.75", seed=2)
    exact = spectral_entropy(a)
    results = [approx_entropy(a, options=ApproxOptions(seed=seed)) for seed in range(20)]
    assert max(abs(r.entropy - exact) for r in results) <= ACCURACY
    assert sum(abs(r.entropy - exact) <= r.entropy_error for r in results) >= 19


@pytest.mark.parametrize("shape", [(700, 400), (400, 700)])
def test_the_probes_first_product_rides_with_the_deflation_and_equals_a_real_one(shape):
    # The first Lanczos product is derived from the deflation's first product
    # (G z) and its Ritz images (G U): it must be (G/S)·Pz as a product computes it.
    from grokspec import slq

    rng = np.random.default_rng(3)
    spikes = rng.standard_normal((shape[0], 5)) @ (rng.standard_normal((5, shape[1])) * [[30], [20], [15], [10], [8]])
    a = rng.standard_normal(shape) + spikes  # five converged Ritz pairs to deflate
    g = slq.Gram(a, center=False)
    rng = np.random.default_rng(4)
    z = slq._rademacher(g.k, 6, rng)
    deflation, image = slq._deflate(g, ApproxOptions(deflate=16, oversample=8), rng, z)
    assert deflation.vectors.shape[1] > 0
    y, derived = slq._probes(deflation, z, image)
    # Rounding: the subtraction cancels the spikes, whose part of G z is the largest.
    np.testing.assert_allclose(derived, g @ y, rtol=0, atol=1e-12 * np.abs(image).max())
    assert np.abs(deflation.vectors.T @ y).max() < 1e-12


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_frobenius_norm_is_the_same_on_any_number_of_threads(threads):
    from grokspec import slq

    a = np.random.default_rng(8).standard_normal((2500, 300)).astype(np.float32)  # 3 blocks, the last short
    mean = a.mean(axis=0, dtype=np.float64)
    expected = float(((a.astype(np.float64) - mean) ** 2).sum())
    assert slq._frobenius_squared(a, mean, threads) == pytest.approx(expected, rel=1e-12)
    assert slq._frobenius_squared(a, None, threads) == pytest.approx(float((a.astype(np.float64) ** 2).sum()), rel=1e-12)


def test_the_speed_bench_compares_the_faster_exact_run_with_the_median_estimate():
    from grokspec.bench.approx import run_speed, speed_markdown

    (result,) = run_speed(((320, 300),), threads=1)
    assert result.seeds == 3
    assert result.speedup == pytest.approx(result.exact_seconds / result.approx_seconds)
    assert result.error <= ACCURACY and result.half_width > 0
    assert "| 320x300 |" in speed_markdown([result])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_frobenius_pass_matches_float64_numpy_in_every_layout(dtype):
    from grokspec import _core

    rng = np.random.default_rng(11)
    a = (rng.standard_normal((1500, 1300)) * 1e3).astype(dtype)
    views = [a, a.T, np.asfortranarray(a), a[::3, 1::2], a[:, ::-1], a[:1, :], a[:, :1]]
    for view in views:
        want = float(np.sum(np.asarray(view, dtype=np.float64) ** 2))
        for threads in (1, 2, 3):
            assert _core.frobenius_squared(view, threads=threads) == pytest.approx(want, rel=1e-12)
    assert _core.frobenius_squared(np.zeros((0, 4), dtype=dtype)) == 0.0
    with pytest.raises(ValueError, match="threads must be at least 1"):
        _core.frobenius_squared(a, threads=0)
    with pytest.raises(ShapeError, match="2-D"):
        _core.frobenius_squared(a[0])
