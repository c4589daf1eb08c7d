"""The Python API of SPEC §2 against float64 LAPACK, with its edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import grokspec
from grokspec import (
    DTypeError,
    GrokspecError,
    NonFiniteError,
    ShapeError,
    representation_entropy,
    singular_values,
    spectral_entropy,
    spectral_stats,
)
from reference import reference_entropy, reference_singular_values, with_singular_values

# The accuracy bar of SPEC §2 for every exact method, on the normalized H̃.
ENTROPY_TOL = 1e-6
METHODS = ["auto", "svd", "gram"]
NORMALIZE = ["dim", "cols", "rank", "none"]


def assert_entropy_close(got: float, want: float, x: np.ndarray, normalize: str, context=()) -> None:
    """|ΔH̃| <= 1e-6; in nats ("none") the same relative precision, 1e-6 * ln K."""
    if np.isnan(want):
        assert np.isnan(got), context
        return
    tol = ENTROPY_TOL * (np.log(max(min(x.shape), 2)) if normalize == "none" else 1.0)
    assert abs(got - want) <= tol, (*context, got, want, abs(got - want))


def random_matrix(rows: int, cols: int, dtype=np.float64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(dtype)


def ill_conditioned(rows: int, cols: int, condition: float, dtype=np.float64, seed: int = 0) -> np.ndarray:
    k = min(rows, cols)
    sigma = np.logspace(0, -np.log10(condition), k)
    return with_singular_values(rows, cols, sigma, seed).astype(dtype)


def rank_deficient(rows: int, cols: int, rank: int, dtype=np.float64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))).astype(dtype)


SHAPES = [(1, 1), (1, 9), (9, 1), (2, 2), (17, 5), (5, 17), (64, 64), (300, 120), (120, 300), (700, 700)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_entropy_matches_lapack_on_random_matrices(shape, method, dtype):
    x = random_matrix(*shape, dtype=dtype, seed=shape[0] * 1000 + shape[1])
    for power in (1, 2):
        for normalize in NORMALIZE:
            got = spectral_entropy(x, power=power, normalize=normalize, method=method)
            want = reference_entropy(x, power=power, normalize=normalize)
            assert_entropy_close(got, want, x, normalize, (power, normalize))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "case",
    [
        ("cond1e4", lambda d: ill_conditioned(200, 150, 1e4, d, seed=1)),
        ("cond1e8", lambda d: ill_conditioned(200, 150, 1e8, d, seed=2)),
        ("cond1e8_wide", lambda d: ill_conditioned(90, 260, 1e8, d, seed=3)),
        ("rank5", lambda d: rank_deficient(150, 120, 5, d, seed=4)),
        ("rank60_square", lambda d: rank_deficient(128, 128, 60, d, seed=5)),
    ],
    ids=lambda c: c[0],
)
def test_entropy_matches_lapack_on_hard_matrices(case, method, dtype):
    x = case[1](dtype)
    for power in (1, 2):
        for normalize in ("dim", "cols", "none"):
            got = spectral_entropy(x, power=power, normalize=normalize, method=method)
            want = reference_entropy(x, power=power, normalize=normalize)
            assert_entropy_close(got, want, x, normalize, (power, normalize))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_normalization_counts_the_numerical_rank(dtype):
    x = rank_deficient(150, 120, 7, dtype, seed=8)
    stats = spectral_stats(x, normalize="rank")
    assert stats.numerical_rank == 7
    assert abs(stats.entropy - reference_entropy(x, normalize="rank")) <= ENTROPY_TOL


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2048, 4096])
def test_large_square_matrices_meet_the_bar(n, dtype):
    # The two-stage eigensolver path (n >= 512, band 64 from 3072) on real sizes.
    x = random_matrix(n, n, dtype=dtype, seed=n)
    got = spectral_entropy(x)
    want = reference_entropy(x)
    assert abs(got - want) <= ENTROPY_TOL
    sigma = singular_values(x, method="gram")
    assert np.max(np.abs(sigma - reference_singular_values(x))) <= 1e-5 * sigma[0]


@pytest.mark.slow
def test_large_ill_conditioned_float32_meets_the_bar():
    x = ill_conditioned(1024, 1024, 1e8, np.float32, seed=3)
    for power in (1, 2):
        assert abs(spectral_entropy(x, power=power) - reference_entropy(x, power=power)) <= ENTROPY_TOL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(1, 1), (40, 13), (13, 40), (256, 256)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_singular_values_match_lapack(shape, method):
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-5)):
        x = random_matrix(*shape, dtype=dtype, seed=7)
        got = singular_values(x, method=method)
        want = reference_singular_values(x)
        assert got.dtype == np.float64
        assert got.shape == (min(shape),)
        assert np.all(np.diff(got) <= 0), "descending"
        assert np.max(np.abs(got - want)) <= tol * want[0]


def test_auto_singular_values_of_float64_are_exact_to_machine_precision():
    x = ill_conditioned(120, 80, 1e10, np.float64, seed=2)
    got = singular_values(x)
    want = reference_singular_values(x)
    assert np.max(np.abs(got - want)) <= 1e-13 * want[0]


def test_representation_entropy_is_the_papers_quantity():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((512, 128)).astype(np.float32)
    # Eigenvalues of Z^T Z / N, normalized by ln d.
    eigenvalues = np.linalg.eigvalsh(z.astype(np.float64).T @ z.astype(np.float64) / 512)
    p = np.clip(eigenvalues, 0, None) / eigenvalues.clip(0).sum()
    p = p[p > 0]
    want = float(-(p * np.log(p)).sum() / np.log(128))
    assert abs(representation_entropy(z) - want) <= ENTROPY_TOL
    assert representation_entropy(z) == spectral_entropy(z, power=2, normalize="cols")
    # Fewer probe inputs than features: K stays d (the covariance's dimension).
    small = z[:64]
    assert abs(representation_entropy(small) - reference_entropy(small, normalize="cols")) <= ENTROPY_TOL
    assert abs(representation_entropy(z, center=True) - reference_entropy(z, normalize="cols", center=True)) <= ENTROPY_TOL
    with pytest.raises(ShapeError):
        representation_entropy(np.stack([z, z]))


@pytest.mark.parametrize("shape", [(50, 20), (20, 50)])
def test_centering_subtracts_column_means(shape):
    x = random_matrix(*shape, seed=2) + 5.0
    got = spectral_entropy(x, center=True)
    assert abs(got - reference_entropy(x, center=True)) <= ENTROPY_TOL
    assert abs(got - reference_entropy(x)) > 1e-3, "centring must change this matrix's entropy"


# --- batches ---------------------------------------------------------------


def test_batch_of_stacked_matrices_equals_one_by_one():
    stack = np.random.default_rng(0).standard_normal((16, 64, 24)).astype(np.float32)
    batch = spectral_entropy(stack)
    assert isinstance(batch, np.ndarray) and batch.shape == (16,)
    singles = np.array([spectral_entropy(m) for m in stack])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-12)


def test_batch_of_mixed_shapes_and_dtypes():
    rng = np.random.default_rng(1)
    mats = [
        rng.standard_normal((30, 10)).astype(np.float32),
        rng.standard_normal((5, 80)),
        rng.standard_normal((700, 600)).astype(np.float32),
        rng.standard_normal((1, 1)),
    ]
    got = spectral_entropy(mats, power=1, normalize="cols")
    want = [reference_entropy(m, power=1, normalize="cols") for m in mats]
    np.testing.assert_allclose(got[:3], want[:3], atol=ENTROPY_TOL, rtol=0)
    assert np.isnan(got[3]) and np.isnan(want[3])
    stats = spectral_stats(mats)
    assert [(s.rows, s.cols) for s in stats] == [m.shape for m in mats]
    values = singular_values(mats)
    assert [v.shape[0] for v in values] == [min(m.shape) for m in mats]


def test_batch_error_names_the_failing_matrix():
    good = np.ones((4, 3))
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"matrix 1 of 3.*NaN or infinity.*\[1, 2\]"):
        spectral_entropy([good, bad, good])


# --- statistics ------------------------------------------------------------


def test_stats_are_consistent_with_their_definitions():
    x = ill_conditioned(90, 60, 1e3, seed=4)
    s = spectral_stats(x, power=1, normalize="none")
    sigma = reference_singular_values(x)
    assert dataclasses.is_dataclass(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.entropy = 0.0  # type: ignore[misc]
    assert s.sigma_max == pytest.approx(sigma[0], rel=1e-12)
    assert s.frobenius_norm == pytest.approx(np.linalg.norm(x), rel=1e-12)
    assert s.stable_rank == pytest.approx(np.linalg.norm(x) ** 2 / sigma[0] ** 2, rel=1e-12)
    assert s.effective_rank == pytest.approx(np.exp(reference_entropy(x, power=1, normalize="none")), rel=1e-9)
    assert s.numerical_rank == 60
    assert (s.power, s.normalize, s.rows, s.cols) == (1.0, "none", 90, 60)
    assert s.method in ("svd", "gram")


# --- edge cases of SPEC §1 ---------------------------------------------------


def test_k_equal_one_gives_nan_normalized_and_zero_in_nats():
    for x in (np.array([[3.0]]), np.ones((1, 7)), np.ones((7, 1))):
        assert np.isnan(spectral_entropy(x))
        assert spectral_entropy(x, normalize="none") == 0.0
    # "cols" with a single column: K = n = 1.
    assert np.isnan(spectral_entropy(np.ones((7, 1)), normalize="cols"))


@pytest.mark.parametrize("method", METHODS)
def test_constant_matrix_has_zero_entropy(method):
    # Found by hypothesis: the SVD returns singular values down to 1e-178 here,
    # whose squares underflow against the total (once gave NaN).
    assert spectral_entropy(np.ones((13, 16)), method=method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_zero_matrix_gives_nan(normalize):
    assert np.isnan(spectral_entropy(np.zeros((5, 4)), normalize=normalize))
    assert np.isnan(spectral_stats(np.zeros((5, 4))).stable_rank)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_non_finite_input_raises(bad, dtype):
    x = np.ones((4, 4), dtype=dtype)
    x[2, 3] = bad
    with pytest.raises(NonFiniteError, match=r"NaN or infinity"):
        spectral_entropy(x)
    with pytest.raises(NonFiniteError):
        singular_values(x)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4, 5)])
def test_wrong_number_of_dimensions_raises_shape_error(shape):
    with pytest.raises(ShapeError, match=r"2-D|3-D"):
        spectral_entropy(np.ones(shape))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty_axis_raises_shape_error(shape):
    with pytest.raises(ShapeError, match=r"empty axis.*\(" + str(shape[0])):
        spectral_entropy(np.ones(shape))


def test_empty_batches_raise_shape_error():
    with pytest.raises(ShapeError):
        spectral_entropy([])
    with pytest.raises(ShapeError):
        spectral_entropy(np.ones((0, 3, 3)))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, object])
def test_non_real_float_dtypes_raise_dtype_error(dtype):
    with pytest.raises(DTypeError, match="dtype"):
        spectral_entropy(np.ones((3, 3), dtype=dtype))


def test_wrong_python_types_raise_type_error():
    with pytest.raises(TypeError):
        spectral_entropy([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError):
        spectral_entropy("matrix")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        spectral_entropy(np.ones((3, 3)), threads="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        spectral_entropy(np.ones((3, 3)), power="2")  # type: ignore[arg-type]


def test_bad_option_values_raise_value_error():
    x = np.ones((3, 3))
    with pytest.raises(ValueError, match="normalize"):
        spectral_entropy(x, normalize="rows")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        spectral_entropy(x, method="qr")  # type: ignore[arg-type]
    for power in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="power"):
            spectral_entropy(x, power=power)
    with pytest.raises(ValueError, match="threads"):
        spectral_entropy(x, threads=0)


def test_errors_share_one_root():
    for cls in (ShapeError, DTypeError, NonFiniteError, grokspec.CheckpointError):
        assert issubclass(cls, GrokspecError)
    assert GrokspecError.__module__ == "grokspec"


def test_a_panic_in_the_engine_becomes_a_grokspec_error():
    from grokspec import _core

    with pytest.raises(GrokspecError, match=r"internal error.*deliberate test panic"):
        _core._panic_inside_engine()
    # The engine still works afterwards.
    assert spectral_entropy(np.eye(3)) == pytest.approx(1.0)


# --- memory layouts ----------------------------------------------------------


def test_any_strides_give_the_same_result():
    base = random_matrix(60, 40, seed=9)
    want = reference_entropy(base)
    views = {
        "c": np.ascontiguousarray(base),
        "fortran": np.asfortranarray(base),
        "transposed": np.ascontiguousarray(base.T).T,
        "negative": np.ascontiguousarray(base[::-1, ::-1])[::-1, ::-1],
        "stepped": np.repeat(np.repeat(base, 2, axis=0), 3, axis=1)[::2, ::3],
    }
    for name, view in views.items():
        assert np.array_equal(view, base)
        assert abs(spectral_entropy(view) - want) <= ENTROPY_TOL, name


@pytest.mark.parametrize("shape", [(700, 550), (550, 700)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("center", [False, True])
def test_row_and_column_major_agree_past_one_copy_tile(shape, dtype, center):
    # Row-major data with 512 columns or more is copied into column-major
    # blocks 64 columns at a time: 550 are eight whole tiles and a partial one.
    # The tall C-ordered and the wide Fortran-ordered views take that copy
    # (a wide matrix is read as its transpose); the other two do not.
    base = random_matrix(*shape, seed=11).astype(dtype)
    want = reference_entropy(base.astype(np.float64), center=center)
    for view in (np.ascontiguousarray(base), np.asfortranarray(base)):
        assert abs(spectral_entropy(view, center=center, method="gram") - want) <= ENTROPY_TOL


def test_non_native_byte_order_and_float16_are_accepted():
    base = random_matrix(20, 10, seed=1)
    swapped = base.astype(">f8")
    assert abs(spectral_entropy(swapped) - reference_entropy(base)) <= ENTROPY_TOL
    half = base.astype(np.float16)
    assert abs(spectral_entropy(half) - reference_entropy(half.astype(np.float32))) <= ENTROPY_TOL


def test_input_arrays_are_not_modified():
    x = random_matrix(30, 20, seed=3)
    copy = x.copy()
    spectral_entropy(x, center=True)
    singular_values(x)
    assert np.array_equal(x, copy)
