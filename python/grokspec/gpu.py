"""Spectral statistics of torch tensors computed on their own device.

A CUDA tensor is not copied to the host: matrices of one shape are stacked,
upcast to float64 and scaled by their largest entry on the device, and the
eigenvalues of their Gram matrices (the short side) come from one batched
``torch.linalg.eigvalsh``. Only the ``k`` eigenvalues of each matrix travel
to the host, where the statistics are computed exactly as the Rust engine
computes them (SPEC §1).

Accuracy. The float64 Gram route perturbs each squared singular value by at
most ``delta = (m + n)·eps64·‖A‖_F²`` (the rounding of the Gram product plus
the backward error of the symmetric eigensolver). ``method="auto"`` turns
that into a bound on the entropy error (:func:`entropy_error_bound`, the
Rust engine's rule) and recomputes, by float64 ``torch.linalg.svdvals`` on
the device, every matrix whose bound exceeds :data:`ENTROPY_TOLERANCE` (the bar) or
whose numerical rank the Gram route cannot decide. So the SPEC's
``|ΔH̃| <= 1e-6`` holds for every method but ``"gram"`` forced by the user.

Every function also runs on CPU tensors (``device="cpu"``), which is how the
tests check this module on machines without a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from grokspec.batching import split_batch
from grokspec.errors import DTypeError, NonFiniteError, ShapeError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENTROPY_TOLERANCE",
    "device_spectra",
    "entropy_error_bound",
    "is_device_input",
    "singular_values",
    "spectral_columns",
    "stats_columns",
]

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
#: Largest entropy error (normalized) that ``method="auto"`` accepts from
#: the Gram route before it recomputes by SVD: the SPEC's bar. The bound is
#: a worst case (measured errors on an H100 were ~1e-14 where it said
#: 3e-7), so a tighter tolerance only sent 8192² and 4096×11008 matrices to
#: the 10× slower float64 SVD for nothing.
ENTROPY_TOLERANCE = 1e-6
#: Float64 bytes of one stacked chunk (inputs + Gram), to bound device memory.
CHUNK_BYTES = 2 * 2**30


@dataclass(frozen=True)
class DeviceSpectrum:
    """The squared singular values of one matrix, descending, on the host."""

    rows: int
    cols: int
    #: Descending squared singular values (float64, length min(rows, cols)).
    squares: np.ndarray
    #: Machine epsilon of the input's dtype (float32 for narrower floats).
    epsilon: float
    #: ``"gram"`` or ``"svd"``: how the values were computed.
    method: str


def is_device_input(x: object) -> bool:
    """True for a torch tensor on a non-CPU device, or a non-empty sequence
    of them (the inputs that :func:`spectral_columns` should handle)."""
    if isinstance(x, (list, tuple)):
        return bool(x) and all(_is_device_tensor(item) for item in x)
    return _is_device_tensor(x)


def _is_device_tensor(x: object) -> bool:
    # Checked by name so that this module never imports torch for numpy input.
    if not (type(x).__module__.startswith("torch") and hasattr(x, "device")):
        return False
    # A meta tensor has no data anywhere: the host path refuses it clearly.
    return str(getattr(x.device, "type", "cpu")) not in ("cpu", "meta")


def _as_matrices(x: Any) -> tuple[list[torch.Tensor], bool]:
    """A tensor, a 3-D stack or a sequence as a list of 2-D tensors, and
    whether it was a batch (the same rules as the host path)."""
    return split_batch(x, _checked_dtype, lambda t: list(t.unbind(0)))


def _checked_dtype(x: Any) -> torch.Tensor:
    tensor = x.detach()
    if tensor.is_complex() or not tensor.is_floating_point():
        raise DTypeError(f"expected a floating-point tensor, got dtype {_dtype_name(tensor)} (shape {tuple(tensor.shape)})")
    if 0 in tensor.shape:
        raise ShapeError(f"expected a matrix with no empty axis, got shape {tuple(tensor.shape)}")
    return tensor  # type: ignore[no-any-return]


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _epsilon(tensor: torch.Tensor) -> float:
    import torch

    return EPS64 if tensor.dtype == torch.float64 else EPS32


def _groups(matrices: list[torch.Tensor]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(matrices):
        groups.setdefault((int(m.shape[0]), int(m.shape[1])), []).append(i)
    return groups


def _chunks(indices: list[int], rows: int, cols: int) -> list[list[int]]:
    k = min(rows, cols)
    per = max(1, CHUNK_BYTES // (8 * (rows * cols + k * k)))
    return [indices[i : i + per] for i in range(0, len(indices), per)]


def _stack(matrices: list[torch.Tensor], indices: list[int], center: bool) -> torch.Tensor:
    """The chosen matrices as one float64 stack, centred if asked."""
    import torch

    a = torch.stack([matrices[i].to(torch.float64) for i in indices])  # (b, m, n)
    if center:
        a = a - a.mean(dim=1, keepdim=True)
    return a


def device_spectra(
    matrices: list[torch.Tensor], *, method: str, center: bool, power: float, normalize: str
) -> list[DeviceSpectrum | BaseException]:
    """The squared singular values of every matrix, computed where it lives;
    an exception in place of a matrix that cannot be analysed."""
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be 'auto', 'gram' or 'svd' on a device, got {method!r}")
    out: list[DeviceSpectrum | BaseException] = [ValueError("not computed")] * len(matrices)
    for (rows, cols), indices in _groups(matrices).items():
        for chunk in _chunks(indices, rows, cols):
            for i, result in zip(chunk, _chunk_spectra(matrices, chunk, rows, cols, method, center, power, normalize)):
                out[i] = result
    return out


def _chunk_spectra(
    matrices: list[torch.Tensor], chunk: list[int], rows: int, cols: int, method: str, center: bool, power: float, normalize: str
) -> list[DeviceSpectrum | BaseException]:
    import torch

    a = _stack(matrices, chunk, center)
    finite = torch.isfinite(a).flatten(1).all(dim=1).tolist()
    scale = a.abs().flatten(1).amax(dim=1)
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
    a = a / scale[:, None, None]
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))  # non-finite matrices are reported below
    if method == "svd":
        squares = torch.linalg.svdvals(a) ** 2
        chosen = ["svd"] * len(chunk)
    else:
        gram = a.mT @ a if rows >= cols else a @ a.mT  # (b, k, k)
        squares = torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0.0)
        chosen = ["gram"] * len(chunk)
        if method == "auto":
            frob2 = (a * a).sum(dim=(1, 2))
            host = squares.cpu().numpy()
            redo = [
                j
                for j, i in enumerate(chunk)
                if not _gram_is_enough(
                    host[j], float(frob2[j]) * (rows + cols) * EPS64, rows, cols, _epsilon(matrices[i]), power, normalize
                )
            ]
            if redo:
                squares[redo] = torch.linalg.svdvals(a[redo]) ** 2
                for j in redo:
                    chosen[j] = "svd"
    values = (squares * (scale**2)[:, None]).cpu().numpy()
    results: list[DeviceSpectrum | BaseException] = []
    for j, i in enumerate(chunk):
        if not finite[j]:
            results.append(
                NonFiniteError(f"the {_dtype_name(matrices[i])} matrix of shape ({rows}, {cols}) contains NaN or infinity")
            )
        else:
            results.append(DeviceSpectrum(rows, cols, values[j], _epsilon(matrices[i]), chosen[j]))
    return results


def _gram_is_enough(
    squares: np.ndarray, delta: float, rows: int, cols: int, epsilon: float, power: float, normalize: str
) -> bool:
    """Whether the Gram eigenvalues, each within `delta`, meet the accuracy
    bar: the entropy bound, and a numerical rank that `delta` cannot flip."""
    k = {"dim": min(rows, cols), "cols": cols}.get(normalize, 0)
    sigma_max = math.sqrt(max(float(squares[0]), 0.0))
    threshold = (sigma_max * max(rows, cols) * epsilon) ** 2
    if normalize == "rank" and np.any(np.abs(squares - threshold) <= delta):
        return False
    if normalize == "rank":
        k = int(np.count_nonzero(squares > threshold))
    scale = math.log(k) if k > 1 else 1.0
    return entropy_error_bound(squares, delta, power) / scale <= ENTROPY_TOLERANCE


def entropy_error_bound(squares: np.ndarray, delta: float, power: float) -> float:
    """An upper bound on ``|H(true) - H(computed)|`` in nats when each
    squared singular value may be off by ``delta`` (absolute) — the Rust
    engine's rule: each probability moves by at most ``t_i``, and ``-x ln x``
    by at most ``-t ln t`` (its modulus of continuity for ``t <= 1/e``)."""
    lam = np.clip(np.asarray(squares, dtype=np.float64), 0.0, None)
    half = power / 2.0
    low = np.clip(lam - delta, 0.0, None) ** half
    high = (lam + delta) ** half
    total = float((lam**half).sum())
    low_total = float(low.sum())
    if low_total <= 0.0 or total <= 0.0:
        return math.inf
    t = ((high - low) + (lam**half / total) * float((high - low).sum())) / low_total
    if np.any(t > math.exp(-1.0)):
        return math.inf
    t = t[t > 0]
    return float(-(t * np.log(t)).sum())


def stats_columns(
    spectra: list[DeviceSpectrum | BaseException], *, power: float, normalize: str
) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
    """The engine's columns (``_core.spectral_batch``'s layout) from spectra."""
    count = len(spectra)
    nan = float("nan")
    columns: dict[str, Any] = {
        key: np.full(count, nan) for key in ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank")
    }
    columns["numerical_rank"] = np.full(count, -1, dtype=np.int64)
    columns["rows"] = np.zeros(count, dtype=np.int64)
    columns["cols"] = np.zeros(count, dtype=np.int64)
    columns["method"] = ["failed"] * count
    errors: list[tuple[int, BaseException]] = []
    for i, spectrum in enumerate(spectra):
        if isinstance(spectrum, BaseException):
            errors.append((i, type(spectrum)(f"matrix {i} of {count}: {spectrum}") if count > 1 else spectrum))
            continue
        for key, value in _stats(spectrum, power, normalize).items():
            columns[key][i] = value
        columns["method"][i] = spectrum.method
    return columns, errors


def _stats(s: DeviceSpectrum, power: float, normalize: str) -> dict[str, float]:
    """SPEC §1's statistics of one spectrum (the Rust engine's ``stats``)."""
    lam = np.clip(s.squares, 0.0, None)
    sigma = np.sqrt(lam)
    sigma_max = float(sigma[0])
    squares = float(lam.sum())
    rank = int(np.count_nonzero(sigma > sigma_max * max(s.rows, s.cols) * s.epsilon))
    weights = lam if power == 2.0 else sigma if power == 1.0 else sigma**power
    total = float(weights.sum())
    nats = nan = float("nan")
    if total > 0.0 and math.isfinite(total):
        p = weights / total
        p = p[p > 0]
        nats = float(-(p * np.log(p)).sum())
    k = {"dim": len(lam), "cols": s.cols, "rank": rank}.get(normalize)
    entropy = nats if k is None else (nan if k <= 1 else nats / math.log(k))
    return {
        "entropy": entropy,
        "sigma_max": sigma_max,
        "frobenius_norm": math.sqrt(squares),
        "stable_rank": squares / (sigma_max * sigma_max) if sigma_max > 0 else nan,
        "effective_rank": math.exp(nats),
        "numerical_rank": rank,
        "rows": s.rows,
        "cols": s.cols,
    }


def spectral_columns(
    x: Any, *, power: float, normalize: str, center: bool, method: str
) -> tuple[dict[str, Any], list[tuple[int, BaseException]], bool]:
    """The engine's columns for a device tensor (or stack, or sequence), the
    errors, and whether the input was a batch."""
    if normalize not in ("dim", "cols", "rank", "none"):
        raise ValueError(f"normalize must be 'dim', 'cols', 'rank' or 'none', got {normalize!r}")
    if not power > 0 or not math.isfinite(power):
        raise ValueError(f"power must be a positive finite number, got {power}")
    matrices, batch = _as_matrices(x)
    spectra = device_spectra(matrices, method=method, center=center, power=power, normalize=normalize)
    columns, errors = stats_columns(spectra, power=power, normalize=normalize)
    return columns, errors, batch


def singular_values(x: Any, *, method: str = "auto") -> tuple[list[np.ndarray], bool]:
    """Descending float64 singular values of each matrix, computed on its
    device (``auto`` takes the Gram route when ``|Δσ| <= 1e-5·σ_max`` is
    guaranteed, the SVD otherwise), and whether the input was a batch."""
    matrices, batch = _as_matrices(x)
    spectra = device_spectra(matrices, method=method, center=False, power=2.0, normalize="dim")
    out: list[np.ndarray] = []
    for i, s in enumerate(spectra):
        if isinstance(s, BaseException):
            raise type(s)(f"matrix {i} of {len(spectra)}: {s}") if batch else s
        if method == "auto" and s.method == "gram":
            delta = float(s.squares.sum()) * (s.rows + s.cols) * EPS64
            if math.sqrt(delta) > 1e-5 * math.sqrt(max(float(s.squares[0]), 0.0)):
                redo = device_spectra([matrices[i]], method="svd", center=False, power=2.0, normalize="dim")[0]
                assert not isinstance(redo, BaseException)
                s = redo
        out.append(np.sqrt(np.clip(s.squares, 0.0, None)))
    return out, batch
