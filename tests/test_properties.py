"""Property tests of the spectral entropy (hypothesis) against its definition."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from grokspec import spectral_entropy
from reference import reference_entropy

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def matrices(draw, dtype=np.float64, max_dim: int = 40):
    rows, cols = draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))
    return draw(arrays(dtype, (rows, cols), elements=finite.map(dtype)))


@st.composite
def nonzero_matrices(draw, dtype=np.float64, max_dim: int = 40):
    x = draw(matrices(dtype, max_dim))
    if not np.any(x):
        x = x.copy()
        x.flat[0] = 1.0
    return x


@st.composite
def gaussian_matrices(draw):
    """Dense matrices of varied shape, scale and rank from a seeded generator."""
    rows, cols = draw(st.integers(2, 60)), draw(st.integers(2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rank = draw(st.integers(1, min(rows, cols)))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e6]))
    rng = np.random.default_rng(seed)
    return scale * (rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols)))


def close(a: float, b: float, tol: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= tol


@given(gaussian_matrices(), st.sampled_from([1, 2]), st.sampled_from(["dim", "cols"]))
def test_matches_the_float64_reference(x, power, normalize):
    got = spectral_entropy(x, power=power, normalize=normalize)
    assert close(got, reference_entropy(x, power=power, normalize=normalize), 1e-6)


@given(nonzero_matrices(), st.sampled_from([1, 2]))
def test_invariant_under_transpose(x, power):
    assert close(spectral_entropy(x, power=power), spectral_entropy(x.T, power=power), 1e-9)


@given(nonzero_matrices(), st.integers(0, 2**32 - 1))
def test_invariant_under_row_and_column_permutations(x, seed):
    rng = np.random.default_rng(seed)
    permuted = x[rng.permutation(x.shape[0])][:, rng.permutation(x.shape[1])]
    assert close(spectral_entropy(x), spectral_entropy(permuted), 1e-9)


@given(nonzero_matrices(), st.floats(min_value=1e-3, max_value=1e3))
def test_invariant_under_positive_scaling(x, c):
    assert close(spectral_entropy(x), spectral_entropy(c * x), 1e-9)


@given(nonzero_matrices(), st.sampled_from([1, 2]), st.sampled_from(["dim", "cols", "rank"]))
def test_normalized_entropy_lies_in_the_unit_interval(x, power, normalize):
    h = spectral_entropy(x, power=power, normalize=normalize)
    assert np.isnan(h) or -1e-12 <= h <= 1 + 1e-12


@given(
    arrays(np.float64, st.integers(2, 40), elements=st.floats(0.1, 10)),
    arrays(np.float64, st.integers(2, 40), elements=st.floats(0.1, 10)),
    st.sampled_from(["auto", "svd", "gram"]),
)
def test_rank_one_matrices_have_zero_entropy(u, v, method):
    h = spectral_entropy(np.outer(u, v), method=method)
    assert abs(h) <= 1e-9


@given(st.integers(2, 64), st.integers(0, 2**32 - 1), st.sampled_from([1, 2]))
def test_orthogonal_matrices_have_entropy_one(n, seed, power):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    assert abs(spectral_entropy(q, power=power) - 1.0) <= 1e-9


@given(st.lists(nonzero_matrices(np.float32, max_dim=12), min_size=1, max_size=8))
def test_batch_equals_one_by_one(mats):
    batch = spectral_entropy(mats)
    singles = np.array([spectral_entropy(m) for m in mats])
    assert np.allclose(batch, singles, rtol=0, atol=1e-12, equal_nan=True)
