"""Opening one checkpoint, whatever its format, without trusting it.

A checkpoint exposes its tensors (name, shape, dtype), the step recorded
inside it (if any), and computes spectral statistics of chosen tensors:

- safetensors (single, or sharded through ``*.safetensors.index.json``):
  read by the Rust engine through a memory map; bf16/f16 decoded on the fly.
- PyTorch ``.pt/.pth/.bin`` and Lightning ``.ckpt``: ``torch.load`` with
  ``weights_only=True`` (no code runs) and ``mmap=True``; a file that needs
  arbitrary unpickling is refused unless the caller trusts it. The state dict
  is found at the top level or under ``state_dict``, ``model``,
  ``model_state_dict`` or ``module``.
- numpy ``.npz``: ``allow_pickle=False``.

Tensors become matrices by SPEC §5's rule (:func:`matrix_shape`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokspec import _core
from grokspec.errors import CheckpointError
from grokspec.scan import guards

__all__ = ["TensorInfo", "Checkpoint", "Source", "compute_batch", "open_checkpoint", "matrix_shape", "NESTED_KEYS", "STEP_KEYS"]

#: Where a state dict may sit inside a pickled checkpoint, in search order.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module")
#: Metadata keys that carry the step, in order of preference.
STEP_KEYS = ("step", "global_step", "epoch")
_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


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
        return self.dtype in ("float16", "bfloat16", "float32", "float64")


class Checkpoint:
    """The common face of every format."""

    path: Path
    #: (step, source) recorded inside the file, e.g. (1000, "metadata:global_step").
    metadata_step: tuple[int, str] | None = None

    def tensors(self) -> list[TensorInfo]:
        raise NotImplementedError

    def sources(self, selected: list[tuple[str, int, int]]) -> list[Source]:
        """The engine's inputs for `(name, rows, cols)` triples (see compute_batch)."""
        raise NotImplementedError

    def compute(self, selected: list[tuple[str, int, int]], **options: Any) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
        """Statistics (the engine's columns) for `(name, rows, cols)` triples."""
        return compute_batch(self.sources(selected), **options)

    def arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        """The named tensors as numpy float arrays (for a model forward pass)."""
        raise NotImplementedError


def _step_from(metadata: dict[str, Any]) -> tuple[int, str] | None:
    for key in STEP_KEYS:
        value = metadata.get(key)
        try:
            if value is not None and not isinstance(value, bool):
                number = float(value)
                if number >= 0 and number == int(number):
                    return int(number), f"metadata:{key}"
        except (TypeError, ValueError):
            continue
    return None


class SafetensorsCheckpoint(Checkpoint):
    """One or more safetensors files (shards) forming one checkpoint."""

    def __init__(self, path: Path, shards: list[Path]):
        self.path = path
        self.shards = shards
        self._index: dict[str, tuple[Path, TensorInfo]] = {}
        metadata: dict[str, str] = {}
        for shard in shards:
            tensors, shard_metadata = _core.safetensors_header(str(shard))
            metadata.update(shard_metadata)
            for name, dtype, shape in tensors:
                self._index[name] = (shard, TensorInfo(name, tuple(shape), _FLOAT_DTYPES.get(dtype, dtype.lower())))
        self.metadata_step = _step_from(metadata)

    def tensors(self) -> list[TensorInfo]:
        return [info for _, info in self._index.values()]

    def sources(self, selected):
        return [(str(self._index[name][0]), name, rows, cols) for name, rows, cols in selected]

    def arrays(self, names):
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
    """Tensors already in memory (torch pickles, npz), as numpy arrays."""

    def __init__(self, path: Path, arrays: dict[str, Any], metadata_step: tuple[int, str] | None):
        self.path = path
        self._arrays = arrays
        self.metadata_step = metadata_step

    def tensors(self) -> list[TensorInfo]:
        return [TensorInfo(name, tuple(a.shape), _dtype_name(a)) for name, a in self._arrays.items()]

    def _matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        value = self._arrays[name]
        if hasattr(value, "detach"):  # a torch tensor (possibly bf16, memory-mapped)
            import torch

            tensor = value.detach()
            if tensor.dtype not in (torch.float32, torch.float64):
                tensor = tensor.to(torch.float32)
            return tensor.reshape(rows, cols).numpy()
        array = np.asarray(value)
        return array.reshape(rows, cols)

    def sources(self, selected):
        return [self._matrix(name, rows, cols) for name, rows, cols in selected]

    def arrays(self, names):
        out = {}
        for name in names:
            value = self._arrays[name]
            if hasattr(value, "detach"):
                import torch

                out[name] = value.detach().to(torch.float32).numpy()
            else:
                out[name] = np.asarray(value, dtype=np.float32)
        return out


def _dtype_name(value: Any) -> str:
    dtype = str(getattr(value, "dtype", ""))
    return dtype.removeprefix("torch.")


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


def _merge(count: int, parts) -> tuple[dict[str, Any], list[tuple[int, BaseException]]]:
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


def _tensor_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(name, tensor) pairs of a state dict (nested dicts flattened with dots)."""
    import torch

    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensor_leaves(item, f"{prefix}.{key}" if prefix else str(key))


def _find_state_dict(obj: Any) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, (torch.Tensor, dict)) for v in inner.values()):
                return _find_state_dict(inner) if not any(isinstance(v, torch.Tensor) for v in inner.values()) else inner
            if isinstance(inner, torch.nn.Module):
                return inner.state_dict()
        return obj
    if isinstance(obj, torch.nn.Module):  # a whole pickled model (only with --trust-pickle)
        return obj.state_dict()
    raise CheckpointError(f"expected a state dict, found a {type(obj).__name__}")


def _torch_load(path: Path, weights_only: bool) -> Any:
    """torch.load on the CPU, memory-mapped when the file allows it (legacy
    non-zip files cannot be mapped and are read plainly)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def _needs_code(error: BaseException) -> bool:
    """Weights-only loading stopped at an object that would run code (as
    opposed to bytes that are not a pickle at all)."""
    text = str(error)
    return "GLOBAL" in text or "global" in text.lower() and "unsupported" in text.lower()


def _load_torch(path: Path, trust_pickle: bool) -> ArrayCheckpoint:
    guards.check_torch_zip(path)  # the sizes it declares, before anything is inflated
    import pickle

    try:
        obj = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        if not _needs_code(error):
            raise CheckpointError(f"{path.name} cannot be read as a PyTorch checkpoint: {_first_line(error)}") from error
        if not trust_pickle:
            raise CheckpointError(
                f"{path.name} needs more than weights-only unpickling ({_first_line(error)}); "
                "it was not loaded, because unpickling can run arbitrary code. "
                "Rerun with --trust-pickle only if you trust where the file came from."
            ) from error
        try:
            obj = _torch_load(path, weights_only=False)
        except Exception as inner:  # anything a trusted pickle raises is still just an unreadable checkpoint
            raise CheckpointError(f"{path.name} cannot be read as a PyTorch checkpoint: {_short(inner)}") from inner
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{path.name} cannot be read as a PyTorch checkpoint: {_short(error)}") from error
    state = _find_state_dict(obj)
    arrays = dict(_tensor_leaves(state))
    metadata = obj if isinstance(obj, dict) else {}
    return ArrayCheckpoint(path, arrays, _step_from(metadata))


def _first_line(error: BaseException) -> str:
    """The informative line of torch's long weights-only message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported" in line or "GLOBAL" in line:
            return line[:160]
    return (lines[0] if lines else type(error).__name__)[:160]


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _load_npz(path: Path) -> ArrayCheckpoint:
    guards.check_npz(path)  # the sizes it declares, before anything is inflated
    import zipfile

    try:
        # Our own handle, so that a failed parse does not leak the file.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path.name} cannot be read as a numpy .npz archive: {_short(error)}") from error
    metadata = {k: arrays.pop(k).item() for k in STEP_KEYS if k in arrays and arrays[k].ndim == 0}
    return ArrayCheckpoint(path, arrays, _step_from(metadata))


def _sharded_files(index: Path) -> list[Path]:
    guards.check_shard_index(index)  # JSON object, shards confined beside it, regular files
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted({index.parent / name for name in weight_map.values()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{index.name} is not a valid shard index: {_short(error)}") from error
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise CheckpointError(f"{index.name} lists shards that are missing: {', '.join(missing[:5])}")
    return shards


def open_checkpoint(path: Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Opens `path` by its format. Raises CheckpointError for anything unreadable."""
    guards.require_regular_file(path)  # a FIFO or device would block or never end
    name = path.name
    try:
        if name.endswith(".safetensors.index.json"):
            return SafetensorsCheckpoint(path, _sharded_files(path))
        if name.endswith(".safetensors"):
            return SafetensorsCheckpoint(path, [path])
        if name.endswith(".bin.index.json"):
            parts = [_load_torch(shard, trust_pickle) for shard in _sharded_files(path)]
            arrays = {k: v for part in parts for k, v in part._arrays.items()}
            return ArrayCheckpoint(path, arrays, next((p.metadata_step for p in parts if p.metadata_step), None))
        if name.endswith(".npz"):
            return _load_npz(path)
        if name.endswith((".pt", ".pth", ".bin", ".ckpt")):
            return _load_torch(path, trust_pickle)
    except CheckpointError:
        raise
    except _core.GrokspecError as error:
        raise CheckpointError(str(error)) from error
    raise CheckpointError(f"{name}: not a checkpoint format grokspec reads")
