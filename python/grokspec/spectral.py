"""The library face: singular values and spectral entropy of matrices.

Inputs are numpy arrays or torch tensors (float16, bfloat16, float32,
float64; any strides; any device) — one 2-D matrix, a 3-D stack, or a
sequence of matrices whose shapes may differ. Torch never enters Rust: a
CPU tensor is handed over as a numpy view; CUDA tensors are computed on
their device by :mod:`grokspec.gpu` (float64 Gram eigenvalues, same bar). The
engine works in float64 and releases the GIL while it computes.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from grokspec import _core
from grokspec.batching import split_batch
from grokspec.errors import DTypeError, ShapeError
from grokspec.events import REPRESENTATION_THRESHOLD
from grokspec.gpu import is_device_input

Normalize = Literal["dim", "cols", "rank", "none"]
Method = Literal["auto", "svd", "gram", "approx"]

__all__ = [
    "SpectralStats",
    "singular_values",
    "spectral_entropy",
    "spectral_stats",
    "representation_entropy",
    "REPRESENTATION_THRESHOLD",
]


@dataclass(frozen=True)
class SpectralStats:
    """Every statistic of one matrix from one decomposition (SPEC §1)."""

    rows: int
    cols: int
    sigma_max: float
    frobenius_norm: float
    #: ``frobenius_norm**2 / sigma_max**2``.
    stable_rank: float
    #: The spectral entropy, normalized as asked (``normalize``).
    entropy: float
    #: ``exp(H)`` with H the entropy in nats.
    effective_rank: float
    #: ``#{sigma_i > sigma_max * max(rows, cols) * eps(dtype)}``.
    numerical_rank: int
    #: The entropy's definition: ``w_i = sigma_i ** power``.
    power: float
    normalize: str
    #: How the singular values were computed: ``"svd"``, ``"gram"`` or ``"approx"``.
    method: str
    #: Half-width of the ~95% interval of ``entropy`` for ``method="approx"``
    #: (grokspec.approx); NaN for the exact methods.
    entropy_error: float = math.nan


def _is_torch_tensor(x: object) -> bool:
    # Checked by name so that `import grokspec` never imports torch.
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _tensor_to_numpy(x: Any) -> np.ndarray:
    import torch

    tensor = x.detach()
    if tensor.device.type == "meta":
        raise ValueError(f"a tensor on the meta device has no data to compute with (shape {tuple(tensor.shape)})")
    if tensor.layout != torch.strided:  # sparse COO/CSR/...: densify explicitly, it may not fit
        layout = str(tensor.layout).removeprefix("torch.")
        raise TypeError(f"expected a dense tensor, got layout {layout}; call .to_dense() first")
    if tensor.is_complex() or not tensor.is_floating_point():
        raise DTypeError(
            f"expected a floating-point tensor, got dtype {str(tensor.dtype).removeprefix('torch.')} "
            f"(shape {tuple(tensor.shape)})"
        )
    if tensor.dtype not in (torch.float32, torch.float64):
        # bfloat16 / float16 / float8: float32 holds every such value exactly.
        tensor = tensor.to(torch.float32)
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    array: np.ndarray = tensor.numpy()
    return array


def _as_float_array(x: Any) -> np.ndarray:
    """One array-like as a numpy float32/float64 array (no copy when possible)."""
    if _is_torch_tensor(x):
        return _tensor_to_numpy(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")
    if isinstance(x, np.ma.MaskedArray):  # refused rather than silently computed on the masked values
        raise TypeError("a masked array's mask would be ignored; pass x.filled(value) or x.data explicitly")
    kind = x.dtype.kind
    if kind != "f":
        raise DTypeError(f"expected floating-point data, got dtype {x.dtype} (shape {x.shape})")
    if x.dtype == np.float16:
        return x.astype(np.float32)
    if x.dtype not in (np.float32, np.float64):
        # longdouble and friends: float64 is what the engine computes in.
        return x.astype(np.float64)
    if not x.dtype.isnative:
        return x.astype(x.dtype.newbyteorder("="))
    return x


def _as_matrices(x: Any) -> tuple[list[np.ndarray], bool]:
    """Normalizes input into a list of 2-D arrays and whether it was a batch."""
    return split_batch(x, _as_float_array, list)


#: The most threads one call may ask for (far more than any machine's cores;
#: beyond it the engine would spend its time creating threads).
MAX_THREADS = 1024


def _check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    count = operator.index(threads)
    if not 1 <= count <= MAX_THREADS:
        raise ValueError(f"threads must lie between 1 and {MAX_THREADS}, got {count}")
    return count


def _check_power(power: float) -> float:
    if isinstance(power, (bool, np.bool_)) or not isinstance(power, numbers.Real):  # numpy scalars too
        raise TypeError(f"power must be a number, got {type(power).__name__}")
    return float(power)


def _raise_first(errors: list[tuple[int, BaseException]]) -> None:
    if errors:
        raise errors[0][1]


def singular_values(x: Any, *, method: Method = "auto", threads: int | None = None) -> np.ndarray | list[np.ndarray]:
    """Singular values of a matrix, descending, as float64.

    ``method="auto"`` uses the Gram route for float32-or-narrower inputs when
    its error bound guarantees ``|Δσ| <= 1e-5·σ_max``, the SVD otherwise
    (always for float64). A batch returns a list of arrays.
    """
    if is_device_input(x):
        from grokspec import gpu

        device_values, batch = gpu.singular_values(x, method=method)
        return device_values if batch else device_values[0]
    matrices, batch = _as_matrices(x)
    values, errors = _core.singular_values_batch(matrices, method=method, threads=_check_threads(threads))
    _raise_first(errors)
    computed = [v for v in values if v is not None]  # None only where an error was raised above
    return computed if batch else computed[0]


def _spectral_columns(
    x: Any,
    *,
    power: float,
    normalize: str,
    center: bool,
    method: str,
    need_rank: bool,
    threads: int | None,
    allow_approx: bool = False,
) -> tuple[dict[str, Any], bool]:
    if method == "approx" or (method == "auto" and allow_approx and not is_device_input(x)):
        from grokspec import approx

        matrices, batch = _as_matrices(x)
        power = _check_power(power)
        columns, errors = approx.spectral_columns(
            matrices,
            power=power,
            normalize=normalize,
            center=bool(center),
            method=method,
            need_rank=need_rank,
            threads=_check_threads(threads),
        )
        _raise_first(errors)
        return columns, batch
    if is_device_input(x):  # CUDA tensors are computed on their device (grokspec.gpu)
        from grokspec import gpu

        columns, errors, batch = gpu.spectral_columns(
            x, power=_check_power(power), normalize=normalize, center=bool(center), method=method
        )
        _raise_first(errors)
        return columns, batch
    matrices, batch = _as_matrices(x)
    columns, errors = _core.spectral_batch(
        matrices,
        power=_check_power(power),
        normalize=normalize,
        center=bool(center),
        method=method,
        need_rank=need_rank,
        threads=_check_threads(threads),
    )
    _raise_first(errors)
    return columns, batch


@overload
def spectral_entropy(
    x: np.ndarray | Any,
    *,
    power: float = ...,
    normalize: Normalize = ...,
    center: bool = ...,
    method: Method = ...,
    threads: int | None = ...,
    allow_approx: bool = ...,
) -> float | np.ndarray: ...
@overload
def spectral_entropy(
    x: Sequence[Any],
    *,
    power: float = ...,
    normalize: Normalize = ...,
    center: bool = ...,
    method: Method = ...,
    threads: int | None = ...,
    allow_approx: bool = ...,
) -> np.ndarray: ...
def spectral_entropy(
    x: Any,
    *,
    power: float = 2,
    normalize: Normalize = "dim",
    center: bool = False,
    method: Method = "auto",
    threads: int | None = None,
    allow_approx: bool = False,
) -> float | np.ndarray:
    """Normalized spectral entropy of a matrix (a float) or of each matrix of
    a batch (a float64 array), computed in parallel across matrices.

    ``p_i = σ_i**power / Σ σ_j**power``, ``H = -Σ p_i ln p_i``, divided by
    ``ln K``: ``K = min(m, n)`` for ``normalize="dim"``, ``n`` for
    ``"cols"``, the numerical rank for ``"rank"``; ``"none"`` gives nats.
    ``K = 1`` and the zero matrix give NaN. Accurate to 1e-6 against a
    float64 LAPACK reference for the exact methods (``"auto"``, ``"svd"``,
    ``"gram"``). ``method="approx"`` estimates it (power 1 or 2 only; see
    grokspec.approx and docs/APPROX.md; ``spectral_stats`` reports the
    interval as ``entropy_error``); ``method="auto"`` estimates only when
    ``allow_approx=True``, and then only matrices whose short side is at
    least 2048.
    """
    columns, batch = _spectral_columns(
        x,
        power=power,
        normalize=normalize,
        center=center,
        method=method,
        need_rank=False,
        threads=threads,
        allow_approx=allow_approx,
    )
    entropy = columns["entropy"]
    return entropy if batch else float(entropy[0])


def spectral_stats(
    x: Any,
    *,
    power: float = 2,
    normalize: Normalize = "dim",
    center: bool = False,
    method: Method = "auto",
    threads: int | None = None,
    allow_approx: bool = False,
) -> SpectralStats | list[SpectralStats]:
    """Every statistic of SPEC §1 (σ_max, Frobenius norm, stable rank,
    entropy, effective rank, numerical rank) from one decomposition per
    matrix: a record for a matrix, a list of records for a batch."""
    columns, batch = _spectral_columns(
        x,
        power=power,
        normalize=normalize,
        center=center,
        method=method,
        need_rank=True,
        threads=threads,
        allow_approx=allow_approx,
    )
    records = [
        SpectralStats(
            rows=int(columns["rows"][i]),
            cols=int(columns["cols"][i]),
            sigma_max=float(columns["sigma_max"][i]),
            frobenius_norm=float(columns["frobenius_norm"][i]),
            stable_rank=float(columns["stable_rank"][i]),
            entropy=float(columns["entropy"][i]),
            effective_rank=float(columns["effective_rank"][i]),
            numerical_rank=int(columns["numerical_rank"][i]),
            power=float(power),
            normalize=normalize,
            method=columns["method"][i],
            entropy_error=float(columns["entropy_error"][i]) if "entropy_error" in columns else math.nan,
        )
        for i in range(len(columns["entropy"]))
    ]
    return records if batch else records[0]


def representation_entropy(z: Any, *, center: bool = False, threads: int | None = None) -> float:
    """The paper's order parameter H̃ of a representation matrix ``z``
    (N probe inputs × d features): the entropy of the eigenvalues of
    ``zᵀz / N`` normalized by ``ln d`` — ``spectral_entropy(z, power=2,
    normalize="cols")``. Uncentred by default, as in the paper."""
    matrices, batch = _as_matrices(z)
    if batch:
        raise ShapeError(f"expected one N x d representation matrix, got {len(matrices)} matrices")
    value = spectral_entropy(matrices[0], power=2, normalize="cols", center=center, threads=threads)
    assert isinstance(value, float)
    return value
