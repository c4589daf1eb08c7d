"""Half-precision tensors (bfloat16, float16) read and widened to float32 a block at a time.

bfloat16 is the upper half of a float32 and float16 converts exactly, so the
widened matrix holds the stored values. Done in one expression, the largest
matrix of a 7B model (262 MB of bf16, 524 MB as float32) would hold the bytes
read, a uint32 copy and the result at once (1.3 GB); a block at a time, it
holds the result and one block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["BLOCK_ELEMENTS", "read_widened", "widen_into"]

#: Elements read and widened at a time (8 MB of halfs).
BLOCK_ELEMENTS = 1 << 22


def widen_into(halfs: np.ndarray, out: np.ndarray, bfloat16: bool) -> None:
    """`halfs` (bf16 bits as 16-bit unsigned integers, or float16; any byte
    order) widened into the float32 array `out` of the same size."""
    if bfloat16:
        np.left_shift(halfs.reshape(out.shape), np.uint32(16), out=out.view(np.uint32))
    else:
        out[...] = halfs.reshape(out.shape)


def read_widened(path: Path, offset: int, count: int, bfloat16: bool, big_endian: bool = False) -> np.ndarray:
    """`count` contiguous halfs of `path` from byte `offset`, as a flat float32 array."""
    out = np.empty(count, dtype=np.float32)
    stored = np.dtype((">" if big_endian else "<") + ("u2" if bfloat16 else "f2"))
    with open(path, "rb") as handle:
        handle.seek(offset)
        for start in range(0, count, BLOCK_ELEMENTS):
            size = min(BLOCK_ELEMENTS, count - start)
            raw = handle.read(size * 2)
            if len(raw) != size * 2:
                raise ValueError(f"{path.name} is truncated: {count * 2} bytes of halfs needed from {offset}")
            widen_into(np.frombuffer(raw, dtype=stored), out[start : start + size], bfloat16)
    return out
