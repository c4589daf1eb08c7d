"""Atomic file writes: a crash or Ctrl-C never leaves a half-written output.

Each write goes to a temporary file in the destination's directory, is
flushed and fsynced, and is then renamed over the destination (atomic on
POSIX and Windows for files on one filesystem).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_open", "write_text", "write_json"]


@contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path next to `destination`; on success it replaces
    `destination`, on error it is removed and `destination` is untouched."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(destination: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open()` for writing whose result appears only when the block succeeds."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with atomic_path(destination) as temporary:
        with open(temporary, mode.replace("x", "w"), **kwargs) as handle:
            yield handle


def write_text(destination: str | os.PathLike[str], text: str) -> None:
    with atomic_open(destination, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(destination: str | os.PathLike[str], data: Any) -> None:
    with atomic_open(destination, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, allow_nan=True)
        handle.write("\n")
