"""Whose BLAS multiplies the approximation's blocks (grokspec.block_products):
the choice, the products themselves against float64 numpy, the estimate
by either backend against the exact engine, and the thread settings put
back afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from grokspec import block_products, spectral_entropy
from grokspec.approx import ApproxOptions, approx_entropy
from grokspec.bench.approx import spectrum_matrix
from grokspec.block_products import BlockProducts, blas_threads, choose_backend

torch = pytest.importorskip("torch")


def test_small_matrices_and_forced_choices():
    assert choose_backend((2048, 2048), "auto") == "numpy"
    assert choose_backend((4095, 4096), "auto") == "numpy"
    assert choose_backend((64, 64), "torch") == "torch"
    assert choose_backend((8192, 8192), "numpy") == "numpy"
    with pytest.raises(ValueError, match="products must be one of auto, numpy, torch, got 'mkl'"):
        choose_backend((64, 64), "mkl")


def test_large_matrices_use_torch_where_its_blas_is_mkl_on_an_intel_cpu(monkeypatch):
    monkeypatch.setattr(block_products, "is_intel", lambda: True)
    want = "torch" if torch.backends.mkl.is_available() else "numpy"
    assert choose_backend((4096, 4096), "auto") == want
    assert choose_backend((32000, 4096), "auto") == want


def test_large_matrices_stay_with_numpy_on_other_cpus(monkeypatch):
    # MKL's products were slower than OpenBLAS's on an AMD EPYC.
    monkeypatch.setattr(block_products, "is_intel", lambda: False)
    assert choose_backend((8192, 8192), "auto") == "numpy"
    assert choose_backend((64, 64), "torch") == "torch"


def test_large_matrices_stay_with_numpy_without_threadpoolctl(monkeypatch):
    monkeypatch.setattr(block_products, "_can_limit_numpy", lambda: False)
    assert choose_backend((8192, 8192), "auto") == "numpy"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_backends_multiply_like_float64_numpy(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 200)).astype(dtype)
    v = rng.standard_normal((200, 7)).astype(dtype)
    r = rng.standard_normal((5, 300)).astype(dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    for backend in ("numpy", "torch"):
        products = BlockProducts(a, backend)
        np.testing.assert_allclose(products.times(v), a.astype(np.float64) @ v, rtol=tolerance, atol=tolerance * 20)
        np.testing.assert_allclose(products.rows_times(r), r.astype(np.float64) @ a, rtol=tolerance, atol=tolerance * 20)
        assert products.times(v).dtype == dtype


def test_a_read_only_memory_map_is_multiplied_without_a_warning(tmp_path):
    # pytest turns warnings into errors here: torch's "not writable" warning would fail this.
    rng = np.random.default_rng(1)
    path = tmp_path / "a.npy"
    np.save(path, rng.standard_normal((256, 128)).astype(np.float32))
    mapped = np.load(path, mmap_mode="r")
    assert not mapped.flags.writeable
    v = rng.standard_normal((128, 3)).astype(np.float32)
    np.testing.assert_allclose(BlockProducts(mapped, "torch").times(v), np.asarray(mapped) @ v, rtol=1e-5, atol=1e-4)


def test_the_estimate_by_torch_agrees_with_the_exact_engine_and_is_reproducible():
    a = spectrum_matrix(768, 640, "power law σ∝i^-0.75")
    exact = spectral_entropy(a)
    by_torch = approx_entropy(a, options=ApproxOptions(seed=3, products="torch"), threads=2)
    by_numpy = approx_entropy(a, options=ApproxOptions(seed=3, products="numpy"), threads=2)
    assert by_torch.products > 0
    assert abs(by_torch.entropy - exact) <= by_torch.entropy_error <= 2e-3
    # Same probes, different float32 rounding: far closer than the interval.
    assert abs(by_torch.entropy - by_numpy.entropy) < 1e-2 * by_torch.entropy_error
    again = approx_entropy(a, options=ApproxOptions(seed=3, products="torch"), threads=2)
    assert again.entropy == by_torch.entropy


def test_a_bad_products_choice_is_refused_even_for_a_small_matrix():
    with pytest.raises(ValueError, match="products must be one of"):
        approx_entropy(np.ones((8, 8), dtype=np.float32), options=ApproxOptions(products="gpu"))


def test_thread_settings_are_put_back():
    from threadpoolctl import threadpool_info

    def numpy_threads() -> list[int]:
        return [int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"]

    torch_before, numpy_before = torch.get_num_threads(), numpy_threads()
    with blas_threads(1, "torch"):
        assert torch.get_num_threads() == 1
        assert set(numpy_threads()) == {1}
    assert torch.get_num_threads() == torch_before
    assert numpy_threads() == numpy_before
    with pytest.raises(RuntimeError), blas_threads(1, "torch"):
        raise RuntimeError("an estimate that fails")
    assert torch.get_num_threads() == torch_before


def test_a_torch_that_fails_to_import_leaves_the_products_to_numpy(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "torch":
            raise OSError("libcudnn.so.9: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    assert choose_backend((8192, 8192), "auto") == "numpy"
    with pytest.raises(ValueError, match="products='torch' needs torch, which cannot be imported here"):
        choose_backend((64, 64), "torch")


def test_the_choice_is_described_for_benchmark_tables(monkeypatch):
    from grokspec.block_products import describe_choice

    monkeypatch.setattr(block_products, "is_intel", lambda: True)
    want = "torch's MKL from 4096² elements" if torch.backends.mkl.is_available() else "numpy's BLAS"
    assert describe_choice().startswith(want)
    monkeypatch.setattr(block_products, "_can_limit_numpy", lambda: False)
    assert describe_choice() == "numpy's BLAS"
