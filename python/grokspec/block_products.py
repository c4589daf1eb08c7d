"""Which BLAS multiplies a large matrix by the approximation's narrow blocks.

The estimate of :mod:`grokspec.approx` spends ~75% of its time in a dozen
products ``A V`` and ``Wᵀ A`` (V, W with 24–88 columns). numpy's BLAS
(OpenBLAS in the PyPI wheels) takes ~40% longer over them than the MKL
inside torch's x86 wheels: 8192² float32, 24 columns, 2 threads, ~40 ms per
product against ~28 ms (docs/APPROX.md, "The products by MKL"). torch is a
dependency of grokspec's scan and training already (the library face needs
numpy alone), so the products use its BLAS where torch is installed, its BLAS
is MKL, and the matrix is large enough for it to pay: below 4096² the rest of
the estimate (float64 work in numpy) weighs more and the whole estimate was
slower (2048²: 0.21 s against 0.17 s). On an AMD CPU MKL does not take its
fast kernels, and the products were slower than numpy's (2-core AMD EPYC,
8192²: 1.67 s per estimate against 1.22 s), so "auto" keeps numpy there.

While torch multiplies, numpy's BLAS is held to one thread: its idle
threads spin for a while after each call and took the cores from MKL's
(with both at two threads the estimate was no faster than with numpy alone);
so torch is chosen only where threadpoolctl can hold numpy's BLAS. The first
such estimate in a process imports torch (~2 s on the development machine).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from grokspec import _core
from grokspec.cpu import is_intel

__all__ = [
    "BACKENDS",
    "NARROW_WIDEST",
    "TORCH_FROM_ELEMENTS",
    "BlockProducts",
    "blas_threads",
    "choose_backend",
    "describe_choice",
]

Backend = Literal["numpy", "torch"]

#: The choices ``ApproxOptions.products`` accepts ("auto": :func:`choose_backend`).
BACKENDS = ("auto", "numpy", "torch")

#: "auto" multiplies with torch's MKL from this many elements (4096²) up.
TORCH_FROM_ELEMENTS = 4096 * 4096


def choose_backend(shape: tuple[int, int], requested: str) -> Backend:
    """The backend for a matrix of `shape`: the one asked for, or ("auto")
    torch where its BLAS is MKL, the CPU is Intel's and the matrix has at
    least :data:`TORCH_FROM_ELEMENTS` elements, numpy otherwise."""
    if requested not in BACKENDS:
        raise ValueError(f"products must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "torch" and _torch() is None:
        raise ValueError("products='torch' needs torch, which cannot be imported here")
    if requested != "auto":
        return "torch" if requested == "torch" else "numpy"
    if shape[0] * shape[1] < TORCH_FROM_ELEMENTS:
        return "numpy"
    return "torch" if is_intel() and _torch_has_mkl() and _can_limit_numpy() else "numpy"


def describe_choice() -> str:
    """What "auto" picks on this machine, for benchmark tables."""
    if choose_backend((4096, 4096), "auto") == "torch":
        return "torch's MKL from 4096² elements, numpy's BLAS below"
    return "numpy's BLAS"


def _torch() -> Any:
    """The torch module, or None where it is not installed (the face needs numpy alone) or broken."""
    try:
        import torch
    except (ImportError, OSError, RuntimeError):
        return None
    return torch


def _torch_has_mkl() -> bool:
    torch = _torch()
    return torch is not None and bool(torch.backends.mkl.is_available())


def _can_limit_numpy() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # then numpy's spinning threads would eat torch's gain
        return False
    return True


#: The widest block the engine's own ``A V`` and ``Aᵀ W`` take (``_core.narrow_product``).
NARROW_WIDEST: int = _core.NARROW_WIDEST


class BlockProducts:
    """``A V`` and ``R A`` for one matrix A (float32 or float64, C order) in
    A's precision, by the chosen backend; results are numpy arrays.

    With numpy's BLAS, ``A V`` and ``Aᵀ W`` of a float32 matrix and a block
    of at most :data:`NARROW_WIDEST` columns (each Lanczos step's products)
    are the engine's: OpenBLAS ran ``A V`` at ~60% of its rate on ``R A``
    (8192², 24 columns, 2 threads, AMD EPYC AVX2: 36 ms against 24 for the
    engine's kernel, which streams A in place; see
    ``rust/src/narrow_product.rs``). Not where the kernels' path is portable
    (no AVX2), nor with torch's MKL, against which it was not measured."""

    def __init__(self, a: np.ndarray, backend: Backend, threads: int = 1):
        self.a = a
        self.threads = threads
        #: Whether narrow blocks go to the engine's kernels (see the class's docstring).
        self.uses_engine = (
            backend == "numpy"
            and a.dtype == np.float32
            and bool(a.flags.c_contiguous and a.flags.aligned)
            and _core.isa() != "portable"
        )
        self._tensor: Any = None
        if backend == "torch":
            import torch

            with warnings.catch_warnings():
                # A memory-mapped matrix is read-only; torch warns because it
                # could write through the view. It never does here.
                warnings.simplefilter("ignore", UserWarning)
                self._tensor = torch.from_numpy(a)

    def times(self, v: np.ndarray) -> np.ndarray:
        """``A v`` for v of shape (n, b), already in A's dtype."""
        if self._narrow(v):
            return _core.narrow_product(self.a, v, threads=self.threads)
        if self._tensor is None:
            result: np.ndarray = self.a @ v
            return result
        import torch

        return np.asarray((self._tensor @ torch.from_numpy(np.ascontiguousarray(v))).numpy())

    def _narrow(self, block: np.ndarray) -> bool:
        """Whether the engine multiplies A by `block`."""
        return self.uses_engine and block.shape[1] <= NARROW_WIDEST

    def transposed_times(self, w: np.ndarray) -> np.ndarray:
        """``Aᵀ w`` for w of shape (m, b), already in A's dtype: the engine's
        kernel where ``A v`` is the engine's (then a Lanczos step calls no
        BLAS, whose threads spin after each call and slowed the engine's
        ``A v`` by half), else ``(wᵀA)ᵀ``, which OpenBLAS streams faster from
        the row-major matrix than the transposed operand of ``Aᵀw`` (8192²
        float32, 24 columns, 2 threads: G v in 85 instead of 93 ms)."""
        if self._narrow(w):
            return _core.narrow_product(self.a, w, transposed=True, threads=self.threads)
        result: np.ndarray = self.rows_times(np.ascontiguousarray(w.T)).T
        return result

    def rows_times(self, rows: np.ndarray) -> np.ndarray:
        """``R A`` for R of shape (b, m), C order, already in A's dtype."""
        if self._tensor is None:
            result: np.ndarray = rows @ self.a
            return result
        import torch

        return np.asarray((torch.from_numpy(rows) @ self._tensor).numpy())


@contextmanager
def blas_threads(threads: int, backend: Backend) -> Iterator[None]:
    """numpy's BLAS at `threads` (an oversubscribed OpenBLAS spins: on a busy
    2-core machine a 512×64 QR took 0.9 s with 2 threads against 4 ms with 1),
    or at one while torch multiplies (the module's docstring says why), and
    torch's intra-op threads at `threads`; both put back afterwards. numpy's
    limit needs threadpoolctl (without it numpy keeps its own setting)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a forced torch backend without threadpoolctl: numpy keeps its setting
        limits = None
    else:
        limits = threadpool_limits(limits=1 if backend == "torch" else threads, user_api="blas")
    previous = None
    if backend == "torch":
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if previous is not None:
            import torch

            torch.set_num_threads(previous)
        if limits is not None:
            limits.restore_original_limits()
