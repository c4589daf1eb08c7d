"""The engine's narrow float32 products (``_core.narrow_product``, the
approximate entropy's Lanczos steps): ``A V`` and ``Aᵀ W`` against float64
numpy with the bound of blocked float32 summation, the refusals, and
``BlockProducts`` taking them exactly where they are meant to run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from grokspec import _core
from grokspec.block_products import NARROW_WIDEST, BlockProducts

EPS32 = float(np.finfo(np.float32).eps)


def _bound(a: np.ndarray, v: np.ndarray, terms: int) -> np.ndarray:
    """Blocked summation in float32 (chunks of 512 or panels of 192 terms): error ≤ (chunk + terms/chunk + 2)·eps·Σ|a||v|."""
    size: np.ndarray = np.abs(a.astype(np.float64)) @ np.abs(v.astype(np.float64))
    return (512 + terms // 192 + 2) * EPS32 * size


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 5), (7, 1100), (200, 3), (301, 700)])
@pytest.mark.parametrize("width", [1, 8, 13, 24])
def test_both_products_match_float64_numpy(rows, cols, width):
    rng = np.random.default_rng(rows * 1000 + cols + width)
    a = rng.standard_normal((rows, cols), dtype=np.float32)
    v = rng.standard_normal((cols, width), dtype=np.float32)
    w = rng.standard_normal((rows, width), dtype=np.float32)
    forward = _core.narrow_product(a, v, threads=2)
    backward = _core.narrow_product(a, w, transposed=True, threads=2)
    assert forward.dtype == np.float32 and forward.shape == (rows, width)
    assert backward.dtype == np.float32 and backward.shape == (cols, width)
    exact_forward = a.astype(np.float64) @ v.astype(np.float64)
    exact_backward = a.T.astype(np.float64) @ w.astype(np.float64)
    assert np.all(np.abs(forward - exact_forward) <= _bound(a, v, cols))
    assert np.all(np.abs(backward - exact_backward) <= _bound(a.T, w, rows))


def test_rows_sliced_from_a_larger_matrix_and_any_block_layout():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((90, 70), dtype=np.float32)
    a = big[::3, 5:60]  # rows 3 * 70 apart, 55 contiguous values each
    v = np.asfortranarray(rng.standard_normal((55, 24), dtype=np.float32))
    w = rng.standard_normal((24, 30), dtype=np.float32).T  # a transposed view
    np.testing.assert_allclose(_core.narrow_product(a, v), a.astype(np.float64) @ v, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_core.narrow_product(a, w, transposed=True), a.T.astype(np.float64) @ w, rtol=1e-5, atol=1e-4)


def test_one_and_two_threads_give_the_same_bits():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((500, 900), dtype=np.float32)
    v = rng.standard_normal((900, 24), dtype=np.float32)
    w = rng.standard_normal((500, 24), dtype=np.float32)
    assert np.array_equal(_core.narrow_product(a, v, threads=1), _core.narrow_product(a, v, threads=2))
    assert np.array_equal(
        _core.narrow_product(a, w, transposed=True, threads=1), _core.narrow_product(a, w, transposed=True, threads=2)
    )


def test_refusals_name_the_problem():
    a = np.ones((6, 4), dtype=np.float32)
    with pytest.raises(_core.DTypeError, match="float32"):
        _core.narrow_product(a.astype(np.float64), np.ones((4, 2)))
    with pytest.raises(_core.ShapeError, match="contiguous rows"):
        _core.narrow_product(np.asfortranarray(a), np.ones((4, 2), dtype=np.float32))
    with pytest.raises(_core.ShapeError, match="block of 4 rows and 1 to 24 columns"):
        _core.narrow_product(a, np.ones((4, NARROW_WIDEST + 1), dtype=np.float32))
    with pytest.raises(_core.ShapeError, match="block of 6 rows"):
        _core.narrow_product(a, np.ones((4, 2), dtype=np.float32), transposed=True)
    with pytest.raises(_core.ShapeError, match="block of 4 rows"):
        _core.narrow_product(a, np.ones((4, 0), dtype=np.float32))
    unaligned = np.frombuffer(bytes(1 + 24 * 4), dtype=np.float32, count=24, offset=1).reshape(6, 4)
    assert not unaligned.flags.aligned
    with pytest.raises(_core.ShapeError, match="aligned"):
        _core.narrow_product(unaligned, np.ones((4, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        _core.narrow_product([[1.0]], np.ones((1, 1), dtype=np.float32))


def test_block_products_take_the_engine_for_narrow_float32_blocks_only():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 200), dtype=np.float32)
    products = BlockProducts(a, "numpy", threads=2)
    assert products.uses_engine == (_core.isa() != "portable")
    assert not BlockProducts(a.astype(np.float64), "numpy").uses_engine
    assert not BlockProducts(np.asfortranarray(a), "numpy").uses_engine
    for width in (NARROW_WIDEST, NARROW_WIDEST + 8):  # the engine, then numpy's BLAS
        v = rng.standard_normal((200, width), dtype=np.float32)
        w = rng.standard_normal((300, width), dtype=np.float32)
        np.testing.assert_allclose(products.times(v), a.astype(np.float64) @ v, rtol=1e-4, atol=2e-3)
        np.testing.assert_allclose(products.transposed_times(w), a.T.astype(np.float64) @ w, rtol=1e-4, atol=2e-3)


def test_the_portable_path_multiplies_too_but_leaves_the_estimate_to_blas():
    script = (
        "import numpy as np\n"
        "from grokspec import _core\n"
        "from grokspec.block_products import BlockProducts\n"
        "a = np.arange(35, dtype=np.float32).reshape(7, 5) / 7\n"
        "v = np.ones((5, 3), dtype=np.float32)\n"
        "assert _core.isa() == 'portable'\n"
        "assert not BlockProducts(a, 'numpy').uses_engine\n"
        "assert np.allclose(_core.narrow_product(a, v), a @ v, rtol=1e-6)\n"
        "assert np.allclose(_core.narrow_product(a, a, transposed=True), a.T @ a, rtol=1e-6)\n"
    )
    env = {**os.environ, "GROKSPEC_ISA": "portable"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
