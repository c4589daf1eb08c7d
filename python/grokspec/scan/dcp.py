"""Reading ``torch.distributed.checkpoint`` (DCP) folders without torch and without running code.

A DCP checkpoint is a folder, not a file: ``.metadata`` — a pickle of torch's
``Metadata`` saying, for each entry of the flattened state dict, a tensor's
dtype, size and chunks (or that the entry is a pickled object), where each
chunk's bytes lie (``storage_data``: file, offset, length) and where the entry
sat in the nested state dict that was saved (``planner_data``) — and
``*.distcp`` files holding every chunk as a ``torch.save`` archive at its
offset. Sharded training writes one chunk per rank and tensor. Written by
``torch.distributed.checkpoint.save`` (FSDP, FSDP2/DTensor), accelerate's
FSDP ``SHARDED_STATE_DICT`` (``pytorch_model_fsdp_0/`` beside
``optimizer_0/``), Lightning's FSDP/ModelParallel sharded checkpoints
(``epoch=E-step=S.ckpt/`` with ``meta.pt``), torchtitan (``step-N/``) and
OLMo-core (``stepN/model_and_optim/``).

:func:`load_dcp` gives back the state dict as it was saved — nested by
``planner_data`` — with each tensor a :class:`ChunkedTensor` (nothing read
until its matrix is asked for), small pickled objects (a step, a learning
rate) decoded by grokspec's own pickle reader, and Lightning's ``meta.pt``
(``global_step``, ``epoch``) merged in; the scan then treats it as any other
pickle's state dict. Every size the metadata declares is checked before
anything is allocated, every file it names must lie in the folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokspec.errors import CheckpointError
from grokspec.scan import guards
from grokspec.scan.embedded_torch import read_embedded
from grokspec.scan.safe_pickle import Opaque, UnreadablePickle, opaque_fields, safe_load
from grokspec.scan.torch_dtypes import TORCH_DTYPES
from grokspec.scan.torch_pickle import (
    TORCH_ALLOWLIST,
    LoadedPickle,
    TensorRef,
    TorchDtype,
    load_torch_file,
)

__all__ = ["DATA_SUFFIX", "METADATA_NAME", "ChunkedTensor", "checkpoint_files", "is_dcp_folder", "load_dcp"]

METADATA_NAME = ".metadata"
DATA_SUFFIX = ".distcp"
#: Lightning keeps the rest of its checkpoint (global_step, epoch, hyperparameters) beside the DCP files.
_LIGHTNING_META = "meta.pt"
#: Pickled objects up to this size are decoded (steps, learning rates); larger ones are not weights.
_SMALL_OBJECT = 1 << 20
_MAX_NESTING = 48


def is_dcp_folder(folder: Path) -> bool:
    """A folder holding a DCP checkpoint: ``.metadata`` and at least one ``.distcp`` file."""
    try:
        if not guards.is_regular_file(folder / METADATA_NAME):
            return False
        with os.scandir(folder) as entries:
            return any(e.name.endswith(DATA_SUFFIX) for e in entries)
    except OSError:
        return False


def checkpoint_files(folder: Path) -> tuple[Path, ...]:
    """Every file a DCP checkpoint is made of (its identity for the cache)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(DATA_SUFFIX) or n in (METADATA_NAME, _LIGHTNING_META))
    except OSError:
        return (folder / METADATA_NAME,)
    return tuple(folder / n for n in names)


@dataclass(frozen=True)
class Chunk:
    """One saved piece of a tensor: where it sits in the tensor, where its archive lies."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: Path
    start: int
    length: int


@dataclass(frozen=True)
class ChunkedTensor:
    """A tensor of a DCP checkpoint; its chunks are read and joined by :meth:`array`."""

    name: str
    shape: tuple[int, ...]
    #: numpy-style name: float32, bfloat16, ...
    dtype: str
    chunks: tuple[Chunk, ...]

    def array(self) -> np.ndarray:
        """The whole tensor; floats as float32 (float64 kept), as :meth:`TensorRef.array`."""
        out_dtype = np.float64 if self.dtype == "float64" else np.float32
        guards.check_declared_bytes(math.prod(self.shape) * np.dtype(out_dtype).itemsize, f"tensor {self.name}")
        if len(self.chunks) == 1:  # one rank saved it whole: no copy into a second array
            return _read_chunk(self.chunks[0], self.name)
        out: np.ndarray | None = None
        for chunk in self.chunks:
            piece = _read_chunk(chunk, self.name)
            if out is None:
                out = np.zeros(self.shape, dtype=piece.dtype if piece.dtype.kind not in "fc" else out_dtype)
            out[tuple(slice(o, o + s) for o, s in zip(chunk.offsets, chunk.sizes))] = piece
        return out if out is not None else np.zeros(self.shape, dtype=out_dtype)


def _read_item(file: Path, start: int, length: int, name: str) -> LoadedPickle:
    return read_embedded(file, start, length, name, " (DCP's safetensors serialization is not read)")


def _read_chunk(chunk: Chunk, name: str) -> np.ndarray:
    value = _read_item(chunk.file, chunk.start, chunk.length, name).value
    if not isinstance(value, TensorRef):
        raise CheckpointError(f"{chunk.file.name}: the chunk of {name} at {chunk.start} is not a tensor")
    if value.shape != chunk.sizes:
        raise CheckpointError(f"{chunk.file.name}: a chunk of {name} holds {value.shape}, the metadata says {chunk.sizes}")
    try:
        return value.array()
    except (UnreadablePickle, ValueError, OSError) as error:
        raise CheckpointError(f"{chunk.file.name}: the chunk of {name} at byte {chunk.start} cannot be read: {error}") from error


# --- the metadata ---------------------------------------------------------------------


def _fields(value: Any, kind: str, where: str) -> dict[str, Any]:
    if not isinstance(value, Opaque) or not value.qualname.endswith(kind):
        raise CheckpointError(f"{where}: expected a DCP {kind}, found {type(value).__name__}")
    return opaque_fields(value)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_NESTING:
        raise CheckpointError(f"{METADATA_NAME}: {what} is not a sequence of sizes")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise CheckpointError(f"{METADATA_NAME}: {what} holds something other than sizes: {str(value)[:80]}")
    return tuple(value)


@dataclass(frozen=True)
class _Location:
    file: str
    start: int
    length: int


def _locations(storage_data: Any, folder: Path) -> dict[tuple[str, tuple[int, ...] | None], _Location]:
    """(fqn, chunk offsets) -> where its bytes lie, each file confined to `folder`."""
    if not isinstance(storage_data, dict):
        raise CheckpointError(f"{METADATA_NAME}: its storage data is not a mapping")
    size_of: dict[str, int] = {}
    out = {}
    for index, info in storage_data.items():
        key = _fields(index, "MetadataIndex", METADATA_NAME)
        place = _fields(info, "_StorageInfo", METADATA_NAME)
        fqn, offset = key.get("fqn"), key.get("offset")
        file, start, length = place.get("relative_path"), place.get("offset"), place.get("length")
        if not isinstance(fqn, str) or not isinstance(file, str):
            raise CheckpointError(f"{METADATA_NAME}: a storage entry without a name or a file")
        if place.get("transform_descriptors"):
            raise CheckpointError(
                f"{METADATA_NAME}: {fqn} is stored through {place['transform_descriptors']} "
                "(a DCP storage extension grokspec does not read)"
            )
        if file not in size_of:
            path = guards.confined(folder, file, METADATA_NAME)
            size_of[file] = guards.require_regular_file(path).st_size
        (start, length) = _ints((start, length), f"the place of {fqn}")
        if start + length > size_of[file]:
            raise CheckpointError(f"{file} is truncated: {fqn} needs bytes {start}–{start + length}, it holds {size_of[file]}")
        out[(fqn, None if offset is None else _ints(offset, f"the offsets of {fqn}"))] = _Location(file, start, length)
    return out


def _dtype_of(properties: Any) -> Any:
    """The dtype of a TensorProperties: torch ≥ 2.1 pickles it as a tuple
    (dtype first), earlier versions as the dataclass's fields."""
    if not isinstance(properties, Opaque):
        return None
    if isinstance(properties.state, tuple) and properties.state:
        return properties.state[0]
    return opaque_fields(properties).get("dtype")


def _tensor(fqn: str, entry: dict[str, Any], locations: dict[Any, _Location], folder: Path) -> ChunkedTensor:
    dtype = _dtype_of(entry.get("properties"))
    if not isinstance(dtype, TorchDtype):
        raise CheckpointError(f"{METADATA_NAME}: {fqn} has no torch dtype")
    shape = _ints(entry.get("size"), f"the size of {fqn}")
    listed = entry.get("chunks")
    if not isinstance(listed, (list, tuple)):
        raise CheckpointError(f"{METADATA_NAME}: {fqn} has no list of chunks")
    chunks = []
    for chunk in listed:
        fields = _fields(chunk, "ChunkStorageMetadata", fqn)
        offsets, sizes = _ints(fields.get("offsets"), f"a chunk of {fqn}"), _ints(fields.get("sizes"), f"a chunk of {fqn}")
        if len(offsets) != len(shape) or len(sizes) != len(shape) or any(o + s > n for o, s, n in zip(offsets, sizes, shape)):
            raise CheckpointError(f"{METADATA_NAME}: a chunk of {fqn} ({offsets}, {sizes}) lies outside its shape {shape}")
        where = locations.get((fqn, offsets))
        if where is None:
            raise CheckpointError(f"{METADATA_NAME}: the chunk of {fqn} at {offsets} is stored nowhere")
        chunks.append(Chunk(offsets, sizes, folder / where.file, where.start, where.length))
    if sum(math.prod(c.sizes) for c in chunks) != math.prod(shape):
        raise CheckpointError(f"{METADATA_NAME}: the chunks of {fqn} do not make up its shape {shape}")
    return ChunkedTensor(fqn, shape, TORCH_DTYPES.get(dtype.name, dtype.name), tuple(chunks))


def _path_of(fqn: str, planner_data: Any) -> tuple[Any, ...]:
    """Where `fqn` sat in the saved state dict (planner_data), else the flat name."""
    path = planner_data.get(fqn) if isinstance(planner_data, dict) else None
    if isinstance(path, tuple) and 0 < len(path) <= _MAX_NESTING and all(isinstance(p, (str, int)) for p in path):
        return path
    return (fqn,)


def _place(tree: dict[Any, Any], path: tuple[Any, ...], value: Any, fqn: str) -> None:
    node = tree
    for part in path[:-1]:
        inner = node.setdefault(part, {})
        if not isinstance(inner, dict):  # a path that collides with a value: kept flat
            tree[fqn] = value
            return
        node = inner
    node[path[-1]] = value


def load_dcp(folder: Path) -> tuple[Any, frozenset[str]]:
    """The state dict a DCP folder holds (see the module docstring), and the
    code-execution names its pickles referred to (none was run)."""
    metadata_path = folder / METADATA_NAME
    size = guards.require_regular_file(metadata_path).st_size
    guards.check_declared_bytes(size, METADATA_NAME)
    try:
        metadata, suspicious = safe_load(metadata_path.read_bytes(), extra=TORCH_ALLOWLIST)
    except UnreadablePickle as error:
        raise CheckpointError(f"{METADATA_NAME} cannot be read as DCP metadata: {error}") from error
    fields = _fields(metadata, "Metadata", METADATA_NAME)
    entries = fields.get("state_dict_metadata")
    if not isinstance(entries, dict):
        raise CheckpointError(f"{METADATA_NAME}: no state_dict_metadata")
    locations = _locations(fields.get("storage_data"), folder)
    tree: dict[Any, Any] = {}
    names = set(suspicious)
    for fqn, entry in entries.items():
        if not isinstance(fqn, str) or not isinstance(entry, Opaque):
            raise CheckpointError(f"{METADATA_NAME}: an entry that is not a named storage")
        if entry.qualname.endswith("TensorStorageMetadata"):
            value: Any = _tensor(fqn, opaque_fields(entry), locations, folder)
        elif entry.qualname.endswith("BytesStorageMetadata"):
            value, found = _small_object(folder, locations.get((fqn, None)), fqn)
            names |= found
        else:
            raise CheckpointError(f"{METADATA_NAME}: {fqn} is a {entry.qualname}")
        _place(tree, _path_of(fqn, fields.get("planner_data")), value, fqn)
    meta = folder / _LIGHTNING_META
    if guards.is_regular_file(meta):
        extra = _lightning_meta(meta)
        names |= extra[1]
        for key, value in extra[0].items():
            tree.setdefault(key, value)
    return tree, frozenset(names)


def _small_object(folder: Path, where: _Location | None, fqn: str) -> tuple[Any, frozenset[str]]:
    """A pickled object saved beside the weights (a step, a data loader's state)
    and the code names it refers to; None when large or unreadable — it is not
    weights, and the step then comes from the folder's name."""
    if where is None or where.length > _SMALL_OBJECT:
        return None, frozenset()
    try:
        loaded = _read_item(folder / where.file, where.start, where.length, fqn)
    except CheckpointError:
        return None, frozenset()
    return loaded.value, loaded.suspicious


def _lightning_meta(path: Path) -> tuple[dict[Any, Any], frozenset[str]]:
    """The rest of a Lightning sharded checkpoint (global_step, epoch, ...)."""
    guards.check_torch_zip(path)
    try:
        loaded = load_torch_file(path)
    except (UnreadablePickle, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{path.name} cannot be read: {error}") from error
    return (loaded.value if isinstance(loaded.value, dict) else {}), loaded.suspicious
