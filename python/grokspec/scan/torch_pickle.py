"""Reading ``torch.save`` files without torch and without running code.

Both of torch's formats are read with :class:`~grokspec.scan.safe_pickle.SafeUnpickler`:

- the zip format (torch ≥ 1.6): ``<prefix>/data.pkl`` refers to storages
  ``<prefix>/data/<key>`` by persistent id; ``<prefix>/byteorder`` says how
  their bytes are ordered;
- the legacy format (``_use_new_zipfile_serialization=False`` and torch
  < 1.6): a magic-number pickle, a protocol pickle, a system-info pickle
  (byte order), the object pickle, the list of storage keys, then each
  storage as an 8-byte element count followed by its bytes.

Tensors come back as :class:`TensorRef`: where their bytes lie in the file,
dtype, shape and strides — nothing is read until a matrix is asked for, and
every declared size is checked against the bytes present first.
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from grokspec.scan.float8 import FLOAT8_DTYPES, decode
from grokspec.scan.halfs import read_widened
from grokspec.scan.safe_pickle import MAX_NDIM, Constructor, Opaque, UnreadablePickle, safe_load
from grokspec.scan.torch_dtypes import FLOAT_DTYPES, LAYOUT, STORAGE_DTYPES, TORCH_DTYPES
from grokspec.scan.zip_members import check_inflated, member_offset, read_member

__all__ = [
    "TORCH_ALLOWLIST",
    "LoadedPickle",
    "Storage",
    "TensorRef",
    "TorchDtype",
    "load_torch_file",
    "load_torch_zip",
    "tensor_ref",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _Sealed:
    """Objects a pickle can reach must not be changed by its BUILD opcode:
    slots (no __dict__ to update) and a __setstate__ that refuses."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnreadablePickle(f"a pickle may not change a {type(self).__name__}")


@dataclass(frozen=True, slots=True)
class StorageType(_Sealed):
    """A legacy storage class named by a pickle (torch.FloatStorage, ...)."""

    dtype: str


@dataclass(frozen=True, slots=True)
class TorchDtype(_Sealed):
    """A torch dtype named by a pickle (torch.float32, ...)."""

    name: str


class Storage(_Sealed):
    """`nbytes` bytes of `path` from `offset` on (set later for legacy files),
    holding elements of `dtype`."""

    __slots__ = ("big_endian", "dtype", "nbytes", "offset", "path")

    def __init__(self, path: Path, dtype: str, nbytes: int, offset: int | None, big_endian: bool) -> None:
        self.path, self.dtype, self.nbytes, self.offset, self.big_endian = path, dtype, nbytes, offset, big_endian

    def read(self, start: int, length: int) -> bytes:
        if self.offset is None:
            raise UnreadablePickle("a storage's bytes were never found in the file")
        if start < 0 or start + length > self.nbytes:
            raise UnreadablePickle("a tensor reaches past the end of its storage")
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start)
            data = handle.read(length)
        if len(data) != length:
            raise UnreadablePickle(f"{self.path.name} is truncated: a storage needs {length} bytes, {len(data)} remain")
        return data


@dataclass(frozen=True, slots=True)
class TensorRef(_Sealed):
    """A tensor as torch.save described it; its bytes are read by :meth:`array`."""

    storage: Storage
    #: In elements of `dtype`.
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str

    def array(self) -> np.ndarray:
        """The tensor as numpy: floats as float32/float64 (bfloat16 and float16
        widen exactly to float32), other dtypes as they are."""
        code, itemsize = LAYOUT[self.dtype]
        numpy_dtype = np.dtype(code).newbyteorder(">") if self.storage.big_endian and itemsize > 1 else np.dtype(code)
        if math.prod(self.shape) == 0:
            floats = self.dtype in FLOAT_DTYPES or self.dtype in FLOAT8_DTYPES
            return np.zeros(self.shape, dtype=np.float32 if floats else numpy_dtype.newbyteorder("="))
        if self.dtype in ("bfloat16", "float16") and self.stride == _row_major(self.shape) and self.storage.offset is not None:
            start, count = self.storage.offset + self.offset * itemsize, math.prod(self.shape)  # bounds checked by _tensor
            half = read_widened(self.storage.path, start, count, self.dtype == "bfloat16", self.storage.big_endian)
            return half.reshape(self.shape)  # a block at a time: never the bytes, a copy and the result at once
        span = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        base = np.frombuffer(self.storage.read(self.offset * itemsize, span * itemsize), dtype=numpy_dtype)
        view = np.lib.stride_tricks.as_strided(base, self.shape, tuple(s * itemsize for s in self.stride), writeable=False)
        values = np.ascontiguousarray(view).astype(numpy_dtype.newbyteorder("="), copy=False)
        if self.dtype == "bfloat16":  # the upper half of a float32
            return (values.astype(np.uint32) << 16).view(np.float32)
        if self.dtype == "float16":
            return values.astype(np.float32)
        if self.dtype in FLOAT8_DTYPES:  # FP8 codes: exact float32 values (their scale is the checkpoint's)
            return decode(values, self.dtype)
        return values


@dataclass(frozen=True)
class LoadedPickle:
    value: Any
    #: Code-execution primitives the pickle referred to (none was run).
    suspicious: frozenset[str]
    #: "zip" or "legacy".
    container: str


def _row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UnreadablePickle(f"bad {what}: {value!r}")
    return value


def tensor_ref(storage: Any, storage_offset: Any, size: Any, stride: Any, dtype: str | None = None) -> TensorRef:
    """A tensor over `storage` (elements of `dtype`, else the storage's own), its
    shape, strides and offset checked against the bytes the storage holds."""
    if not isinstance(storage, Storage):
        raise UnreadablePickle("a tensor without a storage")
    if (
        not isinstance(size, (tuple, list))
        or not isinstance(stride, (tuple, list))
        or len(size) != len(stride)
        or len(size) > MAX_NDIM
    ):
        raise UnreadablePickle("a tensor with a bad shape or stride")
    shape = tuple(_int(n, "tensor size") for n in size)
    strides = tuple(_int(s, "tensor stride") for s in stride)
    element = dtype or storage.dtype
    if element not in LAYOUT:
        raise UnreadablePickle(f"tensor dtype {element} is not read")
    offset = _int(storage_offset, "storage offset")
    if math.prod(shape) > 0:
        end = (offset + 1 + sum((n - 1) * s for n, s in zip(shape, strides))) * LAYOUT[element][1]
        if end > storage.nbytes:
            raise UnreadablePickle(f"a tensor of shape {shape} needs {end} bytes of a storage holding {storage.nbytes}")
    return TensorRef(storage, offset, shape, strides, element)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> TensorRef:
    return tensor_ref(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any, storage_offset: Any, size: Any, stride: Any, grad: Any, hooks: Any, dtype: Any, *rest: Any
) -> TensorRef:
    if not isinstance(dtype, TorchDtype):
        raise UnreadablePickle("_rebuild_tensor_v3 without a dtype")
    return tensor_ref(storage, storage_offset, size, stride, TORCH_DTYPES[dtype.name])


def _first(data: Any, *rest: Any) -> Any:
    """Parameters and device copies are their data."""
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
    """A tensor subclass or a tensor with attributes: rebuilt as a plain tensor."""
    known = isinstance(func, Constructor) and func.function in _REBUILDERS
    if not known and not (isinstance(func, type) and issubclass(func, Opaque)):
        raise UnreadablePickle("_rebuild_from_type_v2 of an unknown function")
    if not isinstance(args, tuple):
        raise UnreadablePickle("_rebuild_from_type_v2 without arguments")
    return func(*args)


def _size(dims: Any = ()) -> tuple[int, ...]:
    if not isinstance(dims, (tuple, list)):
        raise UnreadablePickle("torch.Size of a non-sequence")
    return tuple(_int(n, "size") for n in dims)


def _text(*args: Any) -> str:
    """torch.device('cuda', 0) and layouts: kept as their text."""
    return ":".join(str(a) for a in args if isinstance(a, (str, int)))


_REBUILDERS: dict[Any, str] = {
    _rebuild_tensor: "_rebuild_tensor",
    _rebuild_tensor_v3: "_rebuild_tensor_v3",
    _first: "_rebuild_parameter",
    _rebuild_from_type: "_rebuild_from_type_v2",
}


def _torch_allowlist() -> dict[str, Any]:
    names: dict[str, Any] = {
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _first,
        "torch._utils._rebuild_parameter_with_state": _first,
        "torch._utils._rebuild_device_tensor_from_numpy": _first,
        "torch._utils._rebuild_device_tensor_from_cpu_tensor": _first,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
        "torch.nn.parameter.Parameter": _first,
        "torch.Size": _size,
        "torch.device": _text,
        "torch.serialization._get_layout": _text,
    }
    for name, dtype in STORAGE_DTYPES.items():
        names[f"torch.{name}"] = names[f"torch.storage.{name}"] = names[f"torch.cuda.{name}"] = StorageType(dtype)
    for name in TORCH_DTYPES:
        names[f"torch.{name}"] = TorchDtype(name)
    return names


#: The names torch.save pickles use, mapped to grokspec's data constructors.
TORCH_ALLOWLIST = _torch_allowlist()


def _storage_of(pid: Any) -> tuple[StorageType, str, int, Any]:
    """(type, key, numel, view) of a storage persistent id; anything else is refused."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
        raise UnreadablePickle(f"unknown persistent id {str(pid)[:60]}")
    storage_type, key = pid[1], pid[2]
    if not isinstance(storage_type, StorageType):
        raise UnreadablePickle(f"unknown storage type {storage_type!r}")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    return storage_type, str(key), _int(pid[4], "storage size"), pid[5] if len(pid) == 6 else None


def load_torch_file(path: Path) -> LoadedPickle:
    """The object `torch.save` wrote to `path`, with tensors as :class:`TensorRef`."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as error:  # an end record claiming several disks
        raise UnreadablePickle(f"a damaged zip archive: {error}") from error
    if is_zip:
        with open(path, "rb") as raw:
            return load_torch_zip(path, raw)
    return _load_legacy(path)


def load_torch_zip(path: Path, raw: BinaryIO, base: int = 0) -> LoadedPickle:
    """A torch.save zip archive read from `raw`: the file `path` itself, or a
    view of the archive stored inside it from byte `base` on (DCP's items)."""
    try:
        size = raw.seek(0, 2)
        raw.seek(0)
        archive = zipfile.ZipFile(raw)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:  # a damaged directory
        raise UnreadablePickle(f"not a readable zip archive: {error}") from error
    with archive:
        records = {info.filename: info for info in archive.infolist()}
        pickles = sorted(name for name in records if name.endswith("/data.pkl") and name.count("/") == 1)
        if not pickles:
            raise UnreadablePickle("a zip archive without data.pkl (not a torch.save file)")
        prefix = pickles[0][: -len("data.pkl")]
        check_inflated(records[pickles[0]], size)
        byteorder = records.get(f"{prefix}byteorder")
        order = "little"
        if byteorder is not None:
            check_inflated(byteorder, size)
            order = read_member(archive, byteorder).decode("ascii", "replace").strip()
        storages: dict[str, Storage] = {}

        def persistent(pid: Any) -> Storage:
            storage_type, key, numel, _ = _storage_of(pid)
            if key not in storages:
                nbytes = numel * LAYOUT.get(storage_type.dtype, ("", 1))[1]
                info = records.get(f"{prefix}data/{key}")
                if info is None and nbytes:
                    raise UnreadablePickle(f"storage {key} is missing from the archive")
                if info is not None and info.file_size < nbytes:
                    raise UnreadablePickle(f"storage {key} declares {nbytes} bytes, the archive holds {info.file_size}")
                offset = base + member_offset(raw, info, size) if info is not None else 0
                storages[key] = Storage(path, storage_type.dtype, nbytes, offset, order == "big")
            return storages[key]

        value, suspicious = safe_load(read_member(archive, records[pickles[0]]), extra=TORCH_ALLOWLIST, persistent=persistent)
    return LoadedPickle(value, suspicious, "zip")


def _load_legacy(path: Path) -> LoadedPickle:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        magic, _ = safe_load(handle)
        if magic != _LEGACY_MAGIC:
            raise UnreadablePickle("neither a torch zip archive nor a legacy torch file (no magic number)")
        protocol, _ = safe_load(handle)
        if protocol != _LEGACY_PROTOCOL:
            raise UnreadablePickle(f"legacy torch protocol {protocol!r} is not read")
        info, _ = safe_load(handle)
        big = isinstance(info, dict) and info.get("little_endian") is False
        roots: dict[str, Storage] = {}
        views: list[tuple[Storage, str, int]] = []
        value, suspicious = safe_load(handle, extra=TORCH_ALLOWLIST, persistent=_legacy_persistent(path, big, roots, views))
        keys, _ = safe_load(handle)
        if not isinstance(keys, list):
            raise UnreadablePickle("legacy torch file without its list of storages")
        _place_legacy_storages(handle, [str(k) for k in keys], roots, size, big)
    for view, root_key, start in views:
        root = roots[root_key]
        if root.offset is None or start + view.nbytes > root.nbytes:
            raise UnreadablePickle("a storage view reaches outside its storage")
        view.offset = root.offset + start
    return LoadedPickle(value, suspicious, "legacy")


def _legacy_persistent(
    path: Path, big: bool, roots: dict[str, Storage], views: list[tuple[Storage, str, int]]
) -> Callable[[Any], Any]:
    def persistent(pid: Any) -> Storage:
        storage_type, key, numel, view = _storage_of(pid)
        itemsize = LAYOUT.get(storage_type.dtype, ("", 1))[1]
        if key not in roots:
            roots[key] = Storage(path, storage_type.dtype, numel * itemsize, None, big)
        if view is None:
            return roots[key]
        if not isinstance(view, tuple) or len(view) != 3:
            raise UnreadablePickle("bad legacy storage view")
        storage = Storage(path, storage_type.dtype, _int(view[2], "view size") * itemsize, None, big)
        views.append((storage, key, _int(view[1], "view offset") * itemsize))
        return storage

    return persistent


def _place_legacy_storages(handle: BinaryIO, keys: list[str], roots: dict[str, Storage], size: int, big: bool) -> None:
    """Each storage: an 8-byte element count, then its bytes, in `keys` order."""
    offset = handle.tell()
    for key in keys:
        if key not in roots:
            raise UnreadablePickle(f"legacy storage {key} is listed but never used")
        storage = roots[key]
        handle.seek(offset)
        header = handle.read(8)
        if len(header) != 8:
            raise UnreadablePickle("legacy torch file is truncated before a storage")
        (count,) = struct.unpack(">q" if big else "<q", header)
        itemsize = LAYOUT.get(storage.dtype, ("", 1))[1]
        if count * itemsize != storage.nbytes:
            raise UnreadablePickle(f"legacy storage {key} declares {storage.nbytes} bytes but its header says {count * itemsize}")
        storage.offset = offset + 8
        offset += 8 + storage.nbytes
        if offset > size:
            raise UnreadablePickle(f"legacy storage {key} reaches past the end of the file")
