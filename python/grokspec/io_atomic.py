"""Atomic file writes: a crash or Ctrl-C never leaves a half-written output.

Each write goes to a temporary file in the destination's directory, is
flushed and fsynced, and is then renamed over the destination (atomic on
POSIX and Windows for files on one filesystem); the directory is fsynced
too, so the rename itself survives a power cut.

The temporary file is created with mode 0666 minus the umask, like any
file the user's programs create (``tempfile.mkstemp`` would make it 0600,
and every output private whatever the umask); a destination that already
exists keeps its permission bits.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "create_temporary", "write_json", "write_text"]

_ATTEMPTS = 100


def create_temporary(directory: Path, prefix: str) -> Path:
    """A new, empty file in `directory` with a unique hidden name, its mode
    0666 minus the umask (applied by the kernel at creation)."""
    for _ in range(_ATTEMPTS):
        candidate = directory / f".{prefix}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"cannot create a temporary file in {directory}")


def _fsync_directory(directory: Path) -> None:
    """Makes a rename durable; some systems cannot open a directory, which is fine."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path next to `destination`; on success it replaces
    `destination`, on error it is removed and `destination` is untouched."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = create_temporary(destination.parent, destination.name)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(destination).st_mode))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(destination.parent)


@contextmanager
def atomic_open(destination: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open()` for writing whose result appears only when the block succeeds."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with atomic_path(destination) as temporary, open(temporary, mode.replace("x", "w"), **kwargs) as handle:
        yield handle


def write_text(destination: str | os.PathLike[str], text: str) -> None:
    with atomic_open(destination, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(destination: str | os.PathLike[str], data: Any) -> None:
    with atomic_open(destination, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, allow_nan=True)
        handle.write("\n")
