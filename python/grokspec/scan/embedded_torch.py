"""``torch.save`` archives stored inside another file, read in place.

DCP's ``.distcp`` files hold one ``torch.save`` archive per chunk at an
offset, and torch.export's ``.pt2`` archives hold pickled weights (and, from
older torch, the whole state dict) as members of their own zip. Both are read
through a view of the outer file's bytes: nothing is copied out, and the
inner archive's storages are addressed by their offset in the outer file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from grokspec.errors import CheckpointError
from grokspec.scan.safe_pickle import UnreadablePickle
from grokspec.scan.torch_pickle import LoadedPickle, load_torch_zip

__all__ = ["read_embedded"]


class _FileView(io.RawIOBase):
    """`length` bytes of an open file from `start` on, as a stream of their own."""

    def __init__(self, handle: io.BufferedReader, start: int, length: int) -> None:
        super().__init__()
        self._handle, self._start, self._length, self._position = handle, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._length - self._position))
        if count == 0:
            return 0
        self._handle.seek(self._start + self._position)
        data = self._handle.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def read_embedded(file: Path, start: int, length: int, name: str, not_an_archive: str = "") -> LoadedPickle:
    """The object `torch.save` wrote at `start` of `file` (tensors as TensorRef).
    `not_an_archive` is added to the error when those bytes are not a torch.save archive."""
    try:
        with open(file, "rb") as handle:
            handle.seek(start)
            if handle.read(4) != b"PK\x03\x04":
                what = f"{file.name}: the entry {name} at byte {start}"
                raise CheckpointError(f"{what} is not a torch.save archive{not_an_archive}")
            return load_torch_zip(file, io.BufferedReader(_FileView(handle, start, length)), start)
    except (UnreadablePickle, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{file.name}: the entry {name} cannot be read: {error}") from error
