"""Members of a zip archive (torch.save, torch.export), read without trusting
what the archive declares: a member read whole may not inflate past a bound,
and a member addressed in place must be stored uncompressed and lie inside
the file."""

from __future__ import annotations

import lzma
import struct
import zipfile
import zlib
from typing import BinaryIO

from grokspec.scan.safe_pickle import UnreadablePickle

__all__ = ["check_inflated", "member_offset", "read_member"]

#: A compressed member read whole may inflate this many times its archive, up to this many bytes.
_INFLATE_RATIO = 64
_INFLATE_LIMIT = 4 * 2**30


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member read whole; damage (a bad CRC or header, an unknown compression, the
    encryption flag) is an UnreadablePickle."""
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError, EOFError, OSError) as error:
        raise UnreadablePickle(f"{info.filename} is damaged: {error}") from error


def check_inflated(info: zipfile.ZipInfo, size: int) -> None:
    """A member that is read whole (data.pkl, byteorder) may not inflate to
    more than the archive could plausibly hold: torch stores them uncompressed."""
    limit = size if info.compress_type == zipfile.ZIP_STORED else min(size * _INFLATE_RATIO, _INFLATE_LIMIT)
    if info.file_size > limit:
        raise UnreadablePickle(f"{info.filename} declares {info.file_size} bytes, more than the archive of {size} bytes can hold")


def member_offset(raw: BinaryIO, info: zipfile.ZipInfo, size: int) -> int:
    """Where a stored (uncompressed) member's bytes begin in the file; torch
    never compresses storages, and a compressed one is refused rather than inflated."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnreadablePickle(f"{info.filename} is compressed; torch.save never compresses storages")
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise UnreadablePickle(f"{info.filename}: bad zip entry header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = int(info.header_offset) + 30 + int(name_length) + int(extra_length)
    if start + info.file_size > size:
        raise UnreadablePickle(f"{info.filename} reaches past the end of the file")
    return start
