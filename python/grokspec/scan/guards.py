"""Checks that run before a scan opens, decompresses or allocates anything.

A checkpoint directory may hold anything: named pipes that block a reader
forever, symlinks to devices, archives whose few kilobytes inflate to
gigabytes, shard indexes that point outside the scanned tree. Every check
here raises :class:`~grokspec.errors.CheckpointError` with one line that
names the file and the reason, so the scan records a warning and goes on.

- :func:`require_regular_file`: only regular files are read (a FIFO, a
  device, a socket or a folder with a checkpoint's name is refused).
- :func:`memory_budget`: the most bytes one checkpoint may declare to be
  inflated or allocated — half the machine's memory, or
  ``GROKSPEC_MEMORY_BUDGET`` (bytes, or with a K/M/G/T suffix).
- :func:`check_npz`, :func:`check_torch_zip`: the sizes an archive declares
  are checked against the file and the budget before anything is inflated.
- :func:`confined`: a file name taken from an index (a shard index, see
  :mod:`grokspec.scan.shard_index`, or a DCP's metadata) must lie beside it
  (no absolute paths, no ``..``, no NUL).
- :func:`display_name`: a file name as it can be printed (bytes that are
  not UTF-8 and control characters escaped).
"""

from __future__ import annotations

import math
import os
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from grokspec.errors import CheckpointError

__all__ = [
    "INDEX_SIZE_LIMIT",
    "MEMORY_BUDGET_ENV",
    "ZIP_MEMBER_LIMIT",
    "check_declared_bytes",
    "check_npz",
    "check_torch_zip",
    "confined",
    "display_name",
    "format_bytes",
    "is_regular_file",
    "is_small_regular_file",
    "json_kind",
    "memory_budget",
    "parse_size",
    "require_regular_file",
]

MEMORY_BUDGET_ENV = "GROKSPEC_MEMORY_BUDGET"
#: A shard index is a small JSON file (Hugging Face's largest are ~100 KB).
INDEX_SIZE_LIMIT = 64 * 2**20
#: Members of one archive; numpy and torch write one per array or storage.
ZIP_MEMBER_LIMIT = 1_000_000
#: Folder levels searched below a scanned folder. Checkpoint trees are a few
#: levels deep; os.walk and Path.rglob recurse, and a hostile tree ~1,000
#: levels deep ended a scan with a RecursionError.
MAX_FOLDER_DEPTH = 64
_SUFFIXES = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


# --- sizes -------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'1073741824', '512M', '4G', '1.5T' -> bytes (binary multiples)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, suffix = (cleaned[:-1], cleaned[-1]) if cleaned and cleaned[-1] in _SUFFIXES else (cleaned, "")
    try:
        value = float(number) * _SUFFIXES[suffix]
    except ValueError:
        raise ValueError(f"{MEMORY_BUDGET_ENV}={text!r} is not a size (examples: 8G, 512M, 1073741824)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{MEMORY_BUDGET_ENV}={text!r} must be a positive size")
    return int(value)


def memory_budget() -> int:
    """The most bytes one checkpoint may ask to inflate or allocate."""
    configured = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if configured:
        return parse_size(configured)
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest machine
        physical = 8 * 2**30
    return max(physical // 2, 2**28)


def format_bytes(count: int) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def check_declared_bytes(declared: int, what: str, *, available: int | None = None) -> None:
    """Refuses a declared size larger than the bytes the file holds
    (`available`) or than the memory budget."""
    if available is not None and declared > available:
        raise CheckpointError(
            f"{what} declares {format_bytes(declared)} but holds only {format_bytes(available)} (truncated or lying)"
        )
    budget = memory_budget()
    if declared > budget:
        raise CheckpointError(
            f"{what} declares {format_bytes(declared)} to decompress, above the memory budget of {format_bytes(budget)} "
            f"(set {MEMORY_BUDGET_ENV} to raise it)"
        )


# --- names and files -----------------------------------------------------------------


def display_name(text: str) -> str:
    """`text` as it can be printed and written to any output: bytes that were
    not UTF-8 (held as lone surrogates) as \\xNN, control characters escaped."""
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that os.fsdecode could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def require_regular_file(path: Path) -> os.stat_result:
    """The file's status if it is a regular file (symlinks followed);
    otherwise CheckpointError naming what it is."""
    name = display_name(path.name)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{name} does not exist (deleted after it was found, or a dangling link)") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise CheckpointError(f"cannot read {name}: {reason}") from None
    if not stat.S_ISREG(status.st_mode):
        raise CheckpointError(f"{name} is {_kind(status.st_mode)}, not a regular file; only regular files are read")
    return status


def is_regular_file(path: Path) -> bool:
    """Whether `path` is a regular file (symlinks followed; never blocks)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def walk_within(top: Path, max_depth: int) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` of `top` (links to folders not followed), subfolders in name order and
    none entered `max_depth` levels down: a hostile tree can be neither deep nor a loop.
    Callers may prune the yielded subfolder list further, as with ``os.walk``."""
    for root, dirs, files in os.walk(top):
        here = Path(root)
        if len(here.relative_to(top).parts) >= max_depth:
            dirs.clear()
        dirs.sort()
        yield here, dirs, files


def first_bytes(path: Path, count: int) -> bytes:
    """The first `count` bytes of a regular file (symlinks followed); b"" for anything
    else or an unreadable file — a FIFO is never opened, so this never blocks."""
    if not is_regular_file(path):
        return b""
    try:
        with open(path, "rb") as handle:
            return handle.read(count)
    except OSError:
        return b""


def is_small_regular_file(path: Path, limit: int = INDEX_SIZE_LIMIT) -> bool:
    """Whether `path` is a regular file of at most `limit` bytes (never blocks)."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size <= limit


# --- archives --------------------------------------------------------------------------


def _is_zip(handle: IO[bytes], name: str, kind: str) -> bool:
    """Whether `handle` holds a zip archive. zipfile.is_zipfile raises (not
    answers False) for an end record that claims several disks: that is a
    damaged archive, named as one."""
    try:
        return zipfile.is_zipfile(handle)
    except (zipfile.BadZipFile, ValueError, EOFError, struct.error) as error:
        raise CheckpointError(f"{name} is a damaged {kind}: {error}") from None


def _open_zip(handle: IO[bytes], name: str, kind: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
        raise CheckpointError(f"{name} is a damaged {kind}: {error}") from None


def _check_member(info: zipfile.ZipInfo, file_size: int, name: str) -> None:
    """What every member of an archive must satisfy before it is read."""
    where = f"{name}: member {display_name(info.filename)[:80]}"
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise CheckpointError(f"{where} uses an unsupported compression (method {info.compress_type})")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise CheckpointError(f"{where} is stored uncompressed but declares two different sizes (damaged)")
    if info.header_offset < 0:  # zipfile subtracts the bytes it thinks precede the archive
        raise CheckpointError(f"{where} starts before the archive does (damaged)")
    if info.header_offset + info.compress_size > file_size:
        raise CheckpointError(f"{where} reaches past the end of the file (truncated)")


def _check_local_header(handle: IO[bytes], info: zipfile.ZipInfo, file_size: int, name: str) -> None:
    """The member's own header agrees with the archive's directory (zipfile
    would raise BadZipFile or UnicodeDecodeError on reading it otherwise)."""
    handle.seek(info.header_offset)
    header = handle.read(30)
    where = f"{name}: member {display_name(info.filename)[:80]}"
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointError(f"{where} has a damaged header")
    name_length, extra_length = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    if handle.read(name_length) != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace"):
        raise CheckpointError(f"{where}: its header and the archive's directory disagree (damaged)")
    if info.header_offset + 30 + name_length + extra_length + info.compress_size > file_size:
        raise CheckpointError(f"{where} reaches past the end of the file (truncated)")


def _members(archive: zipfile.ZipFile, handle: IO[bytes], file_size: int, name: str) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > ZIP_MEMBER_LIMIT:
        raise CheckpointError(f"{name} holds {len(members):,} archive members, more than the {ZIP_MEMBER_LIMIT:,} allowed")
    for info in members:
        _check_member(info, file_size, name)
        _check_local_header(handle, info, file_size, name)
    return members


def _read_npy_header(member: IO[bytes], version: tuple[int, int]) -> tuple[tuple[int, ...], bool, Any]:
    """numpy's own header reader, for every header version (1.0, 2.0, 3.0)."""
    import importlib

    try:
        module = importlib.import_module("numpy.lib._format_impl")  # numpy >= 2
    except ImportError:  # numpy 1.x
        module = importlib.import_module("numpy.lib.format")
    result: tuple[tuple[int, ...], bool, Any] = module._read_array_header(member, version)
    return result


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> tuple[int, int]:
    """(declared array bytes, header bytes) of one .npy member, read
    without inflating more than its header."""
    import numpy as np

    where = f"{name}: array {display_name(info.filename)[:80]}"
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            shape, _, dtype = _read_npy_header(member, version)
            header = member.tell()
    except CheckpointError:
        raise
    except Exception as error:  # numpy and zlib raise many types for a damaged header
        raise CheckpointError(f"{where} has a damaged .npy header: {str(error)[:160]}") from None
    if dtype.hasobject:
        raise CheckpointError(f"{where} holds Python objects (a pickle); it is not loaded, because unpickling can run code")
    return math.prod(shape) * dtype.itemsize, header


def check_npz(path: Path) -> None:
    """A numpy .npz archive: a zip whose members declare sizes that fit the
    file and, together, the memory budget."""
    status = require_regular_file(path)
    name = display_name(path.name)
    with open(path, "rb") as handle:
        start = handle.read(6)
        handle.seek(0)
        if not _is_zip(handle, name, ".npz archive"):
            if start == b"\x93NUMPY":
                raise CheckpointError(f"{name} is a single .npy array, not an .npz archive (renamed?)")
            raise CheckpointError(f"{name} is not an .npz archive (no zip directory found)")
        with _open_zip(handle, name, ".npz archive") as archive:
            total = 0
            for info in _members(archive, handle, status.st_size, name):
                total += info.file_size
                if not info.filename.endswith(".npy"):
                    continue
                declared, header = _npy_header(archive, info, name)
                where = f"{name}: array {display_name(info.filename)[:80]}"
                check_declared_bytes(declared, where, available=info.file_size - header)
            check_declared_bytes(total, name)


def check_torch_zip(path: Path) -> None:
    """A zip-format torch file: members inside the file, and what must be
    inflated (compressed members) within the memory budget. Legacy (non-zip)
    files are left to the pickle reader, which checks each storage's size."""
    status = require_regular_file(path)
    name = display_name(path.name)
    with open(path, "rb") as handle:
        if not _is_zip(handle, name, "zip archive"):
            return
        with _open_zip(handle, name, "zip archive") as archive:
            members = _members(archive, handle, status.st_size, name)
    inflated = sum(info.file_size for info in members if info.compress_type != zipfile.ZIP_STORED)
    check_declared_bytes(inflated, name)


# --- shard indexes -------------------------------------------------------------------------


def confined(base: Path, entry: object, index_name: str) -> Path:
    """`base / entry` for a file name taken from an index, refusing names that
    could reach outside `base` (absolute, `..`, NUL, not a string)."""
    if not isinstance(entry, str):
        raise CheckpointError(f"{index_name}: a weight_map entry is not a file name (found {json_kind(entry)})")
    if not entry or "\x00" in entry:
        raise CheckpointError(f"{index_name}: the shard name {_shown(entry)!r} is empty or holds a NUL byte")
    if os.path.isabs(entry) or PureWindowsPath(entry).anchor:
        raise CheckpointError(f"{index_name}: the shard {_shown(entry)!r} is an absolute path; shards must lie beside the index")
    if ".." in PurePosixPath(entry.replace("\\", "/")).parts:
        raise CheckpointError(f"{index_name}: the shard {_shown(entry)!r} climbs out of the index's folder ('..')")
    return base / entry


def _shown(entry: str) -> str:
    """A shard name as a message shows it, made only then (escaping every name of a 1M-entry index took 73 s)."""
    return display_name(entry)[:80]


def json_kind(value: object) -> str:
    """How a JSON value is called in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")
