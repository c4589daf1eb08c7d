"""Opening one checkpoint, whatever its format, without trusting it.

A checkpoint exposes its tensors (name, shape, dtype), the step recorded
inside it (if any), loss/accuracy values kept beside its weights, notes for
the report, and computes spectral statistics of chosen tensors:

- safetensors (single, or sharded through ``*.safetensors.index.json``):
  read by the Rust engine through a memory map; bf16/f16 decoded on the fly.
- PyTorch ``.pt/.pth/.bin`` (single, or sharded through
  ``*.bin.index.json``) and Lightning ``.ckpt``: read by grokspec's own
  pickle reader (:mod:`grokspec.scan.pickled`), which runs no code and needs
  neither torch nor the libraries whose classes a file names; training state
  is refused as :class:`TrainingStateFile`, a file holding many checkpoints
  opens one `entry` at a time.
- numpy ``.npz``: ``allow_pickle=False``.
- a ``torch.distributed.checkpoint`` folder (:mod:`grokspec.scan.dcp`):
  its metadata and chunks read by the same pickle reader.

Tensors become matrices by SPEC §5's rule (:func:`matrix_shape`).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from grokspec import _core
from grokspec.errors import CheckpointError
from grokspec.scan import dcp, float8, guards
from grokspec.scan.float8 import FLOAT8_DTYPES
from grokspec.scan.multi import MetricPoint
from grokspec.scan.pickled import PICKLE_SUFFIXES, STEP_KEYS, TrainingStateFile, read_pickle, step_from_metadata
from grokspec.scan.shard_index import check_shard_index, shard_notes
from grokspec.scan.statedict import NESTED_KEYS
from grokspec.scan.torch_dtypes import FLOAT_DTYPES, LAYOUT
from grokspec.scan.torch_pickle import TensorRef

__all__ = [
    "NESTED_KEYS",
    "STEP_KEYS",
    "Checkpoint",
    "Source",
    "TensorInfo",
    "TrainingStateFile",
    "compute_batch",
    "matrix_shape",
    "open_checkpoint",
]

_FLOAT_DTYPES = {
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}  # fmt: skip


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """SPEC §5: 2-D as is; 3-D (heads × a × b) as (heads·a) × b; 4-D and up
    (out, in, kh, kw, ...) as out × (in·kh·kw·...); fewer than 2-D: None.
    Each is a plain reinterpretation of row-major memory."""
    if len(shape) < 2:
        return None
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:
        return shape[0] * shape[1], shape[2]
    return shape[0], math.prod(shape[1:])


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    #: numpy-style name: float16, bfloat16, float32, float64, int64, ...
    dtype: str

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES or self.dtype in FLOAT8_DTYPES


class Checkpoint:
    """The common face of every format."""

    path: Path
    #: (step, source) recorded inside the file, e.g. (1000, "metadata:global_step").
    metadata_step: tuple[int, str] | None = None
    #: Loss/accuracy values kept in the file (a step of None: this checkpoint's).
    metrics: tuple[MetricPoint, ...] = ()
    #: What the report should say about the file (code it asked for, no tensors found).
    notes: tuple[str, ...] = ()

    def tensors(self) -> list[TensorInfo]:
        raise NotImplementedError

    def sources(self, selected: list[tuple[str, int, int]]) -> list[Source]:
        """The engine's inputs for `(name, rows, cols)` triples (see compute_batch)."""
        raise NotImplementedError

    def compute(
        self, selected: list[tuple[str, int, int]], **options: Any
    ) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
        """Statistics (the engine's columns) for `(name, rows, cols)` triples."""
        return compute_batch(self.sources(selected), **options)

    def arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        """The named tensors as numpy float arrays (for a model forward pass)."""
        raise NotImplementedError


class SafetensorsCheckpoint(Checkpoint):
    """One or more safetensors files (shards) forming one checkpoint."""

    def __init__(self, path: Path, shards: list[Path], weight_map: dict[str, str] | None = None):
        self.path = path
        self.shards = shards
        self._index: dict[str, tuple[Path, TensorInfo]] = {}
        metadata: dict[str, str] = {}
        contents: list[tuple[str, list[str]]] = []
        for shard in shards:
            tensors, shard_metadata = _core.safetensors_header(str(shard))
            metadata.update(shard_metadata)
            for name, dtype, shape in tensors:
                self._index[name] = (shard, TensorInfo(name, tuple(shape), _FLOAT_DTYPES.get(dtype, dtype.lower())))
            contents.append((shard.name, [name for name, _, _ in tensors]))
        self.metadata_step = step_from_metadata(metadata)
        self.notes = shard_notes(weight_map, contents) if weight_map is not None else ()

    def tensors(self) -> list[TensorInfo]:
        return [info for _, info in self._index.values()]

    def sources(self, selected: list[tuple[str, int, int]]) -> list[Source]:
        # FP8 weights are decoded here (the engine reads floats of 16 bits and up).
        return [
            self._float8(name, rows, cols)
            if self._index[name][1].dtype in FLOAT8_DTYPES
            else (str(self._index[name][0]), name, rows, cols)
            for name, rows, cols in selected
        ]

    def _stored(self, name: str) -> np.ndarray:
        """A tensor's stored elements, flat, through a memory map (header checked on open)."""
        shard, info = self._index[name]
        with open(shard, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            start, end = json.loads(handle.read(length))[name]["data_offsets"]
        code = np.dtype(LAYOUT[info.dtype][0])  # only FP8 weights and float scales come here
        count = (end - start) // code.itemsize
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        stored = np.memmap(shard, dtype=code, mode="r", offset=8 + length + start, shape=(count,))
        return (np.asarray(stored, dtype=np.uint32) << 16).view(np.float32) if info.dtype == "bfloat16" else stored

    def _float8(self, name: str, rows: int, cols: int) -> np.ndarray:
        guards.check_declared_bytes(rows * cols * 4, f"tensor {name} (FP8, decoded to float32)")  # 4x its bytes
        values = float8.decode(self._stored(name), self._index[name][1].dtype).reshape(rows, cols)
        scale = float8.scale_name(name, self._index)
        if scale is None:
            return values
        float8.check_scale_dtype(name, self._index[scale][1].dtype)
        scale_values = np.asarray(self._stored(scale), dtype=np.float32).reshape(self._index[scale][1].shape)
        return float8.dequantize(name, values, scale_values)

    def arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        import torch
        from safetensors import safe_open

        out: dict[str, np.ndarray] = {}
        for shard in {self._index[n][0] for n in names}:
            with safe_open(str(shard), framework="pt") as handle:
                for name in names:
                    if self._index[name][0] == shard:
                        out[name] = handle.get_tensor(name).to(torch.float32).numpy()
        return out


class ArrayCheckpoint(Checkpoint):
    """Tensors of pickles and npz files: TensorRef (read on demand), numpy
    arrays, or torch tensors (from a trusted load)."""

    def __init__(
        self,
        path: Path,
        arrays: dict[str, Any],
        metadata_step: tuple[int, str] | None,
        metrics: tuple[MetricPoint, ...] = (),
        notes: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self._arrays = arrays
        self.metadata_step = metadata_step
        self.metrics = metrics
        self.notes = notes

    def tensors(self) -> list[TensorInfo]:
        return [TensorInfo(name, tuple(int(n) for n in a.shape), _dtype_name(a)) for name, a in self._arrays.items()]

    def _float_array(self, name: str) -> np.ndarray:
        """float32 (float64 kept) whatever the stored float type."""
        value = self._arrays[name]
        if isinstance(value, (TensorRef, dcp.ChunkedTensor)):
            return value.array()
        if hasattr(value, "detach"):  # a torch tensor from a trusted load
            import torch

            tensor = value.detach()
            floats = tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.to(torch.float32)
            return cast(np.ndarray, floats.numpy())
        array = np.asarray(value)
        return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)

    def sources(self, selected: list[tuple[str, int, int]]) -> list[Source]:
        return [self._matrix(name, rows, cols) for name, rows, cols in selected]

    def _matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        matrix = np.ascontiguousarray(self._float_array(name).reshape(rows, cols))
        if _dtype_name(self._arrays[name]) not in FLOAT8_DTYPES:
            return matrix
        scale = float8.scale_name(name, self._arrays)  # FP8 codes decoded by _float_array; now their scale
        if scale is None:
            return matrix
        float8.check_scale_dtype(name, _dtype_name(self._arrays[scale]))
        return float8.dequantize(name, matrix, self._float_array(scale))

    def arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        return {name: self._float_array(name).astype(np.float32, copy=False) for name in names}


def _dtype_name(value: Any) -> str:
    if isinstance(value, TensorRef):
        return value.dtype
    return str(getattr(value, "dtype", "")).removeprefix("torch.")


#: An engine input: a safetensors tensor `(file, name, rows, cols)`, read by
#: Rust through a memory map, or a matrix already in memory.
Source = tuple[str, str, int, int] | np.ndarray


def compute_batch(sources: list[Source], **options: Any) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
    """Statistics of many matrices, possibly of many checkpoints, in one
    parallel batch per kind of source; columns and errors in `sources` order."""
    mapped = [i for i, s in enumerate(sources) if isinstance(s, tuple)]
    in_memory = [i for i, s in enumerate(sources) if not isinstance(s, tuple)]
    parts = []
    if mapped:
        columns, errors = _core.safetensors_spectral([sources[i] for i in mapped], **options)  # type: ignore[misc]
        parts.append((mapped, columns, errors))
    if in_memory:
        columns, errors = _core.spectral_batch([sources[i] for i in in_memory], **options)  # type: ignore[misc]
        parts.append((in_memory, columns, errors))
    return _merge(len(sources), parts)


def _merge(count: int, parts: list[tuple[list[int], Any, Any]]) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
    """Reassembles the columns of several engine calls into the caller's order."""
    merged: dict[str, Any] = {}
    errors: list[tuple[int, BaseException]] = []
    for positions, columns, part_errors in parts:
        for key, values in columns.items():
            if key not in merged:
                merged[key] = [None] * count
            for position, value in zip(positions, list(values)):
                merged[key][position] = value
        errors.extend((positions[i], e) for i, e in part_errors)
    for key in ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank"):
        if key in merged:
            merged[key] = np.array(merged[key], dtype=np.float64)
    return merged, sorted(errors, key=lambda e: e[0])


def _load_torch(path: Path, trust_pickle: bool, entry: int | None = None) -> ArrayCheckpoint:
    guards.check_torch_zip(path)  # the sizes it declares, before anything is inflated
    content = read_pickle(path, trust_pickle=trust_pickle, entry=entry)
    return ArrayCheckpoint(path, content.tensors, content.metadata_step, content.metrics, content.notes)


def _short(error: BaseException) -> str:
    """The first line of an error, shortened at a word (never cut mid-word)."""
    text = str(error).strip().splitlines()
    return textwrap.shorten(text[0] if text else type(error).__name__, 300, placeholder=" …")


def _load_npz(path: Path) -> ArrayCheckpoint:
    guards.check_npz(path)  # the sizes it declares, before anything is inflated
    import lzma
    import zipfile
    import zlib

    try:
        # Our own handle, so that a failed parse does not leak the file.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            members = list(data.files)
            # Members that are not .npy files come back as bytes: not arrays, not read.
            arrays = {name: value for name in members if isinstance(value := data[name], np.ndarray)}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as error:  # damaged compressed data
        raise CheckpointError(f"{path.name} cannot be read as a numpy .npz archive: {_short(error)}") from error
    if members and not arrays:
        shown = ", ".join(guards.display_name(m)[:60] for m in members[:3])
        raise CheckpointError(f"{path.name} is a zip archive without .npy arrays (it holds {shown}), not a numpy .npz archive")
    metadata = {k: arrays.pop(k).item() for k in STEP_KEYS if k in arrays and arrays[k].ndim == 0}
    return ArrayCheckpoint(path, arrays, step_from_metadata(metadata))


def open_checkpoint(path: Path, *, trust_pickle: bool = False, entry: int | None = None) -> Checkpoint:
    """Opens `path` by its format (`entry`: which checkpoint of a file that
    holds many). Raises CheckpointError for anything unreadable, and its
    subclass TrainingStateFile for a file of training state."""
    if path.is_dir():
        if not dcp.is_dcp_folder(path):
            raise CheckpointError(f"{path.name}: a folder that is not a torch.distributed checkpoint")
        content = read_pickle(path)
        return ArrayCheckpoint(path, content.tensors, content.metadata_step, content.metrics, content.notes)
    guards.require_regular_file(path)  # a FIFO or device would block or never end
    name = path.name
    try:
        if name.endswith(".safetensors.index.json"):
            index = check_shard_index(path)
            return SafetensorsCheckpoint(path, index.shards, index.weight_map)
        if name.endswith(".safetensors"):
            return SafetensorsCheckpoint(path, [path])
        if name.endswith(".bin.index.json"):
            index = check_shard_index(path)
            parts = [_load_torch(shard, trust_pickle) for shard in index.shards]
            arrays = {k: v for part in parts for k, v in part._arrays.items()}
            contents = [(part.path.name, part._arrays) for part in parts]
            notes = tuple(note for part in parts for note in part.notes) + shard_notes(index.weight_map, contents)
            return ArrayCheckpoint(path, arrays, next((p.metadata_step for p in parts if p.metadata_step), None), notes=notes)
        if name.endswith(".npz"):
            return _load_npz(path)
        if name.endswith(PICKLE_SUFFIXES):
            return _load_torch(path, trust_pickle, entry)
    except CheckpointError:
        raise
    except _core.GrokspecError as error:
        raise CheckpointError(str(error)) from error
    raise CheckpointError(f"{name}: not a checkpoint format grokspec reads")
