"""8-bit float weights (FP8 checkpoints) decoded exactly, with their scales.

LLM checkpoints increasingly store weights as FP8 — ``float8_e4m3fn``
(safetensors ``F8_E4M3``) or ``float8_e5m2`` (``F8_E5M2``) — next to a scale
tensor: ``<name>_scale`` (compressed-tensors, Hugging Face FP8 configs) or
``<name>_scale_inv`` (DeepSeek-V3's block-wise layout; despite the name it is
multiplied in). The stored codes times the scale are the weights the model
computes with. Every FP8 value is exactly a float32, so decoding is a
256-entry table; the scale is applied in float32 as the models do.

A scale whose layout cannot be told (not per-tensor, per-row, per-column or
block-wise) is refused for that tensor rather than guessed: the entropy of
the unscaled codes would be a different matrix's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container
from functools import cache

import numpy as np

from grokspec.errors import CheckpointError
from grokspec.scan.torch_dtypes import FLOAT_DTYPES

__all__ = ["FLOAT8_DTYPES", "SCALE_SUFFIXES", "check_scale_dtype", "decode", "dequantize", "scale_name", "scale_names"]

#: numpy-style names of the FP8 dtypes grokspec decodes.
FLOAT8_DTYPES = ("float8_e4m3fn", "float8_e5m2")
#: Suffixes of the scale stored beside an FP8 tensor, in the order looked for.
SCALE_SUFFIXES = ("_scale_inv", "_scale")
#: Block edges of block-wise scales (DeepSeek-V3 and compressed-tensors use 128): powers of
#: two, so that more than one block along an axis fixes the edge uniquely.
_BLOCK_EDGES = (128, 64, 256, 32, 512, 16)


@cache
def _table(dtype: str) -> np.ndarray:
    """The float32 value of each of the 256 codes (IEEE-like: sign, exponent, mantissa)."""
    if dtype == "float8_e4m3fn":  # bias 7, no infinities, S.1111.111 is NaN
        exponent_bits, mantissa_bits, bias = 4, 3, 7
    elif dtype == "float8_e5m2":  # bias 15, IEEE specials
        exponent_bits, mantissa_bits, bias = 5, 2, 15
    else:
        raise ValueError(f"{dtype} is not an FP8 dtype grokspec decodes ({', '.join(FLOAT8_DTYPES)})")
    values = np.empty(256, dtype=np.float32)
    top = (1 << exponent_bits) - 1
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exponent = (code >> mantissa_bits) & top
        mantissa = code & ((1 << mantissa_bits) - 1)
        if exponent == 0:  # subnormal
            value = math.ldexp(mantissa / (1 << mantissa_bits), 1 - bias)
        elif dtype == "float8_e5m2" and exponent == top:
            value = math.inf if mantissa == 0 else math.nan
        elif dtype == "float8_e4m3fn" and exponent == top and mantissa == (1 << mantissa_bits) - 1:
            value = math.nan
        else:
            value = math.ldexp(1.0 + mantissa / (1 << mantissa_bits), exponent - bias)
        values[code] = sign * value
    values.setflags(write=False)
    return values


def decode(codes: np.ndarray, dtype: str) -> np.ndarray:
    """FP8 codes (uint8, any shape) as float32 values, exactly."""
    return _table(dtype)[np.asarray(codes, dtype=np.uint8)]


def scale_name(name: str, names: Container[str]) -> str | None:
    """The scale stored beside FP8 tensor `name`, if any."""
    return next((name + suffix for suffix in SCALE_SUFFIXES if name + suffix in names), None)


def scale_names(dtypes: dict[str, str]) -> set[str]:
    """Names (among `dtypes`: name -> dtype) that are the scales of FP8 tensors: not
    matrices of their own."""
    return {s for name, dtype in dtypes.items() if dtype in FLOAT8_DTYPES and (s := scale_name(name, dtypes)) is not None}


def check_scale_dtype(name: str, dtype: str) -> None:
    """Scales are read as floats of 16 bits and up; any other (an 8-bit exponent-only
    E8M0 scale of MX formats, an integer) is refused rather than read as numbers."""
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"the scale of {name} is stored as {dtype}, which grokspec does not read as a scale: not computed")


def _block_edge(length: int, blocks: int) -> int | None:
    """The block edge that cuts `length` into `blocks` blocks (the last one partial)."""
    return next((edge for edge in _BLOCK_EDGES if -(-length // edge) == blocks), None)


def dequantize(name: str, values: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """The decoded FP8 matrix `values` (rows × cols float32) times its scale:
    one number, one per row, one per column, or one per block. Raises
    CheckpointError for a scale of any other layout, or one that is not finite."""
    if scale is None:
        return values
    scale = np.asarray(scale, dtype=np.float32)
    if not np.all(np.isfinite(scale)):
        raise CheckpointError(f"the scale of {name} holds NaN or infinity: not computed")
    rows, cols = values.shape
    layouts: list[tuple[bool, Callable[[], np.ndarray]]] = [
        (scale.size == 1, lambda: values * scale.reshape(())),
        (scale.shape in ((rows,), (rows, 1)) and rows > 1, lambda: values * scale.reshape(rows, 1)),
        (scale.shape in ((cols,), (1, cols)) and cols > 1, lambda: values * scale.reshape(1, cols)),
    ]
    for matches, apply in layouts:
        if matches:
            return np.asarray(apply(), dtype=np.float32)
    if scale.ndim == 2:
        edges = (_block_edge(rows, scale.shape[0]), _block_edge(cols, scale.shape[1]))
        if edges[0] is not None and edges[1] is not None:
            for block_row in range(scale.shape[0]):  # one block row at a time: no full-size scale array
                values[block_row * edges[0] : (block_row + 1) * edges[0]] *= np.repeat(scale[block_row], edges[1])[:cols]
            return values
    raise CheckpointError(
        f"the scale of {name} has shape {tuple(scale.shape)}, which matches no FP8 scale layout grokspec knows "
        f"(per-tensor, per-row, per-column or block-wise for a {rows}x{cols} matrix): not computed"
    )
