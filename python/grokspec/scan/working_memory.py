"""The memory a matrix's computation needs, checked against the scan's budget.

A safetensors header may declare a 60000 x 60000 float32 tensor whose 14 GB
are a sparse hole on disk: reading it costs nothing, but the exact engine
would allocate its 29 GB float64 Gram matrix (a fuzzed checkpoint grew a scan
past 6 GB within 44 s). Every matrix is checked here before the engine sees
it, against the same budget that bounds what a file may declare to be
inflated (:func:`grokspec.scan.guards.memory_budget`); a matrix that does
not fit is a warning about that tensor, and the scan goes on.
"""

from __future__ import annotations

from grokspec.errors import CheckpointError
from grokspec.scan.guards import MEMORY_BUDGET_ENV, format_bytes, memory_budget

__all__ = ["check_working_memory", "working_memory"]

#: Columns of the estimate's widest float64 blocks (Krylov basis and images).
_APPROX_BLOCK_COLUMNS = 256
#: The exact route converts rows to float64 in blocks of about this many
#: values, and at least 256 rows (`block_rows` in rust/src/spectrum.rs).
_ROW_BLOCK_VALUES = 2**22


def working_memory(rows: int, cols: int, approx: bool) -> int:
    """The bytes the engine allocates for one ``rows x cols`` matrix: the
    exact route's float64 Gram matrix of the short side and its block of
    rows converted to float64 (at most ~32 MB); the estimate's float32 copy of the
    matrix and its blocks. Not counted: the exact route's SVD fallback, taken
    only when the Gram matrix's spectrum cannot be certified, which needs a
    float64 copy of the matrix — counting it would refuse, on a 16 GB laptop,
    the 128256 x 8192 embedding of a 70B model that the Gram route computes
    in 0.5 GB."""
    short = min(rows, cols)
    if approx:
        return 4 * rows * cols + 8 * short * _APPROX_BLOCK_COLUMNS
    long = max(rows, cols)
    block_rows = min(max(_ROW_BLOCK_VALUES // max(short, 1), 256), long)
    return 8 * short * short + 8 * block_rows * short


def check_working_memory(rows: int, cols: int, *, approx: bool) -> None:
    """Refuses a matrix whose computation would need more than the memory
    budget, before anything is allocated."""
    needed = working_memory(rows, cols, approx)
    budget = memory_budget()
    if needed > budget:
        route = "the estimate" if approx else "the exact computation"
        raise CheckpointError(
            f"its {rows}x{cols} matrix needs about {format_bytes(needed)} of memory for {route}, above the memory "
            f"budget of {format_bytes(budget)} (set {MEMORY_BUDGET_ENV} to raise it)"
        )
