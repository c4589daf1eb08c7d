"""Where a scan group's matrices are computed: the exact engine batch, the
approximation (``--approx``), locally or on a Ray cluster (``--ray``).

:func:`compute_local` takes the engine inputs of a group (safetensors
tensor references read through a memory map, or matrices in memory) and
returns the engine's columns in their order (:mod:`grokspec.scan.executors`
chooses between it and the Ray cluster); with ``approx`` the columns
also hold ``entropy_error`` and :func:`weight_metrics` adds it to the rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from grokspec.scan.formats import Source, compute_batch
from grokspec.scan.halfs import read_widened
from grokspec.scan.options import ScanOptions

__all__ = ["APPROX_METRICS", "compute_local", "merge_columns", "read_matrix", "weight_metrics"]

#: The per-matrix rows that only an approximate scan records.
APPROX_METRICS = ("entropy_error",)
_WEIGHT_METRICS = ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank", "numerical_rank")
_SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.uint16}

Columns = dict[str, Any]
Errors = list[tuple[int, BaseException]]


def weight_metrics(options: ScanOptions) -> tuple[str, ...]:
    """The metric rows each matrix gets (SPEC §1, plus the error bar of --approx)."""
    return _WEIGHT_METRICS + (APPROX_METRICS if options.approx else ())


def compute_local(sources: list[Source], options: ScanOptions) -> tuple[Columns, Errors]:
    """In this process: the engine's parallel batch, or the approximation one
    matrix at a time (each read just before it is estimated, so memory holds
    one matrix)."""
    if not options.approx:
        return compute_batch(
            sources,
            power=options.power,
            normalize=options.normalize,
            method=options.method,
            need_rank=True,
            threads=options.threads,
        )
    from grokspec.approx import approx_columns

    parts: list[tuple[list[int], Columns, Errors]] = []
    for i, source in enumerate(sources):
        try:
            matrix = read_matrix(source)
        except (OSError, ValueError, KeyError) as error:
            parts.append(([i], {}, [(0, ValueError(f"cannot read the tensor: {error}"))]))
            continue
        columns, errors = approx_columns(
            [matrix], power=options.power, normalize=options.normalize, center=False, threads=options.threads
        )
        parts.append(([i], columns, errors))
        del matrix
    return merge_columns(len(sources), parts)


def read_matrix(source: Source) -> np.ndarray:
    """One engine input as a float32/float64 numpy matrix: a safetensors
    tensor ``(file, name, rows, cols)`` read from its file (bf16 and f16
    widened to float32 exactly, a block at a time), or the matrix itself."""
    if not isinstance(source, tuple):
        array = np.asarray(source)
        return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)
    path, name, rows, cols = source
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        entry = json.loads(handle.read(length))[name]
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise ValueError(f"tensor {name} has dtype {entry['dtype']}, not a float")
    start, end = entry["data_offsets"]
    count = rows * cols
    if end - start != count * np.dtype(dtype).itemsize:
        raise ValueError(f"tensor {name} holds {end - start} bytes, not the {rows}x{cols} its header says")
    if dtype in (np.uint16, np.float16):  # bf16 (the high half of a float32) and f16, a block at a time
        return read_widened(Path(path), 8 + length + start, count, dtype == np.uint16).reshape(rows, cols)
    return np.array(np.memmap(path, dtype=dtype, mode="r", offset=8 + length + start, shape=(rows, cols)))


def merge_columns(count: int, parts: list[tuple[list[int], Columns, Errors]]) -> tuple[Columns, Errors]:
    """Reassembles the columns of several computations (each on `positions`)
    into one set in the caller's order; errors renumbered likewise."""
    merged: Columns = {}
    errors: Errors = []
    for positions, columns, part_errors in parts:
        for key, values in columns.items():
            if key not in merged:
                merged[key] = ["failed" if key == "method" else math.nan] * count
            for position, value in zip(positions, list(values)):
                merged[key][position] = value
        errors.extend((positions[i], error) for i, error in part_errors)
    for key in list(merged):
        if key != "method":
            merged[key] = np.asarray(merged[key], dtype=np.int64 if key in ("numerical_rank", "rows", "cols") else np.float64)
    return merged, sorted(errors, key=lambda e: e[0])
