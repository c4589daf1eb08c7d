"""Type stub of grokspec's Rust engine (checked by `python -m mypy.stubtest grokspec._core`)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "GrokspecError",
    "ShapeError",
    "DTypeError",
    "NonFiniteError",
    "CheckpointError",
    "singular_values_batch",
    "spectral_batch",
    "default_threads",
    "isa",
    "safetensors_header",
    "safetensors_spectral",
    "_panic_inside_engine",
    "__version__",
]

__version__: str
NARROW_WIDEST: int

class GrokspecError(Exception): ...
class ShapeError(GrokspecError): ...
class DTypeError(GrokspecError): ...
class NonFiniteError(GrokspecError): ...
class CheckpointError(GrokspecError): ...

def singular_values_batch(
    arrays: Sequence[npt.NDArray[np.floating]],
    *,
    method: str = "auto",
    threads: int | None = None,
) -> tuple[list[npt.NDArray[np.float64] | None], list[tuple[int, BaseException]]]: ...
def spectral_batch(
    arrays: Sequence[npt.NDArray[np.floating]],
    *,
    power: float = 2.0,
    normalize: str = "dim",
    center: bool = False,
    method: str = "auto",
    need_rank: bool = False,
    threads: int | None = None,
) -> tuple[dict[str, object], list[tuple[int, BaseException]]]: ...
def frobenius_squared(array: np.ndarray, *, threads: int | None = None) -> float: ...
def narrow_product(a: np.ndarray, v: np.ndarray, *, transposed: bool = False, threads: int | None = None) -> np.ndarray: ...
def default_threads() -> int: ...
def isa() -> str: ...
def safetensors_header(path: str) -> tuple[list[tuple[str, str, list[int]]], dict[str, str]]: ...
def safetensors_spectral(
    tensors: Sequence[tuple[str, str, int, int]],
    *,
    power: float = 2.0,
    normalize: str = "dim",
    center: bool = False,
    method: str = "auto",
    need_rank: bool = False,
    threads: int | None = None,
) -> tuple[dict[str, object], list[tuple[int, BaseException]]]: ...
def _panic_inside_engine() -> None: ...
