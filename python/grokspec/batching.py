"""One rule for what counts as a batch, shared by the host and the device
paths: a 2-D matrix is one matrix; a 3-D stack or a sequence of 2-D
matrices is a batch. Each path supplies its own conversion."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from grokspec.errors import ShapeError

__all__ = ["split_batch"]


class _Shaped(Protocol):
    @property
    def ndim(self) -> int: ...

    @property
    def shape(self) -> Sequence[int]: ...


M = TypeVar("M", bound=_Shaped)


def split_batch(x: Any, convert: Callable[[Any], M], unstack: Callable[[M], list[M]]) -> tuple[list[M], bool]:
    """The 2-D matrices of `x` (each through `convert`) and whether `x` was a
    batch. ShapeError, naming the matrix, for anything else."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ShapeError("expected at least one matrix, got an empty sequence")
        matrices = [convert(item) for item in x]
        for i, m in enumerate(matrices):
            if m.ndim != 2:
                raise ShapeError(f"matrix {i} of {len(matrices)}: expected a 2-D matrix, got shape {tuple(m.shape)}")
        return matrices, True
    array = convert(x)
    if array.ndim == 2:
        return [array], False
    if array.ndim == 3:
        if array.shape[0] == 0:
            raise ShapeError(f"expected at least one matrix, got shape {tuple(array.shape)}")
        return unstack(array), True
    raise ShapeError(f"expected a 2-D matrix or a 3-D stack of matrices, got shape {tuple(array.shape)}")
