"""The scan cache: results per checkpoint in ``cache.sqlite``.

Each checkpoint's results are stored under a key made of its files'
identity (absolute path, size, modification time) and every option that
changes the numbers, so a rescan computes only new or changed checkpoints,
and an interrupted scan resumes where it stopped (each checkpoint is
committed as soon as it is done). SQLite's write-ahead log and a busy
timeout let two scans of one directory run at once without corrupting
anything; at worst both compute the same checkpoint and the second write
replaces an identical value. In some windows SQLite answers "locked" (or
"locking protocol") at once instead of waiting — while a connection
switches the file to WAL, while the last one closing cleans up the log,
while another recovers it — so every statement is retried with backoff
until the same deadline as the busy timeout.

A cache is only ever a shortcut, so it never stops a scan: a damaged
``cache.sqlite`` (not a database, truncated, another schema) is moved aside
to ``cache.sqlite.damaged-<time>`` with a warning and rebuilt; an entry
that cannot be decoded is recomputed; a cache that fails while the scan
runs is dropped for the rest of it (warned once); a ``cache.sqlite`` that
is not a regular file is left alone and the scan runs without a cache.
``--no-cache`` never opens it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from grokspec.scan.guards import display_name

__all__ = ["ScanCache", "checkpoint_key"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
#: PRAGMA table_info of _SCHEMA: (name, type, notnull, pk).
_COLUMNS = [("key", "TEXT", 0, 1), ("value", "TEXT", 1, 0)]
_BUSY_TIMEOUT_S = 60.0
_COMPANIONS = ("-wal", "-shm", "-journal")
#: SQLite's primary result codes for "another connection is in the way":
#: SQLITE_BUSY, SQLITE_LOCKED, and SQLITE_PROTOCOL (a WAL lock race lost a
#: hundred times in a row, which a descheduled reader on a loaded machine can cause).
_TRANSIENT_CODES = frozenset({5, 6, 15})
_Result = TypeVar("_Result")


class _Damaged(Exception):
    """The file exists but is not a usable cache."""


def checkpoint_key(files: Iterable[Path], options: dict[str, Any]) -> str:
    identity = []
    for path in files:
        status = path.stat()
        identity.append([str(path.resolve()), status.st_size, status.st_mtime_ns])
    blob = json.dumps({"files": identity, "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()


class ScanCache:
    def __init__(self, path: Path | None):
        """`path=None` gives a cache that remembers nothing."""
        self._db: sqlite3.Connection | None = None
        #: What went wrong with the cache (the scan adds these to its warnings).
        self.warnings: list[str] = []
        self._undecodable = 0
        if path is not None:
            self._db = self._open(Path(path))

    def _open(self, path: Path) -> sqlite3.Connection | None:
        shown = display_name(str(path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for companion in (path, *(path.with_name(path.name + s) for s in _COMPANIONS)):
                if os.path.lexists(companion) and not stat.S_ISREG(os.stat(companion).st_mode):
                    raise OSError(f"{display_name(companion.name)} is not a regular file")
        except OSError as error:
            self.warnings.append(f"cache {shown} cannot be used ({error}); the scan ran without a cache")
            return None
        try:
            return _open_checked(path)
        except (_Damaged, sqlite3.DatabaseError) as error:
            if _transient(error):
                self.warnings.append(f"cache {shown} stayed locked by another scan; this scan ran without a cache")
                return None
            aside = _move_aside(path)
            self.warnings.append(
                f"cache {shown} was damaged ({error}); moved it to {display_name(aside.name)} and started a new one"
            )
        try:
            return _open_checked(path)
        except (_Damaged, sqlite3.Error, OSError) as error:
            self.warnings.append(f"cache {shown} cannot be rebuilt ({error}); the scan ran without a cache")
            return None

    def get(self, key: str) -> Any | None:
        if self._db is None:
            return None
        db = self._db
        try:
            row = _retrying(lambda: db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone())
        except sqlite3.Error as error:
            self._drop(error)
            return None
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except (TypeError, ValueError, RecursionError):
            self._undecodable += 1
            return None

    def put(self, key: str, value: Any) -> None:
        if self._db is None:
            return
        db, text = self._db, json.dumps(value)
        try:
            _retrying(lambda: db.execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", (key, text)))
        except sqlite3.Error as error:
            self._drop(error)

    def _drop(self, error: sqlite3.Error) -> None:
        """A cache that fails mid-scan is not used again by this scan."""
        self.warnings.append(f"the cache failed ({error}); the rest of the scan ran without it")
        self.close()

    def close(self) -> None:
        if self._undecodable:
            self.warnings.append(f"{self._undecodable} damaged cache entr{'y' if self._undecodable == 1 else 'ies'} recomputed")
            self._undecodable = 0
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __enter__(self) -> ScanCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _transient(error: BaseException) -> bool:
    """Whether `error` is another connection being in the way (worth waiting out),
    not damage. Python < 3.11 has no error codes on the exception: its message decides."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _TRANSIENT_CODES
    return any(word in str(error) for word in ("locked", "busy", "locking protocol"))


def _retrying(action: Callable[[], _Result]) -> _Result:
    """`action()`, retried with backoff while SQLite answers with a transient
    error, for as long as the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause = 0.01
    while True:
        try:
            return action()
        except sqlite3.OperationalError as error:
            if not _transient(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _open_checked(path: Path) -> sqlite3.Connection:
    """The cache opened and verified: SQLite's quick check passes and the
    results table has this version's columns."""
    db = _open_with_retries(path)
    try:
        check = _retrying(lambda: db.execute("PRAGMA quick_check").fetchone())
        if check is None or check[0] != "ok":
            raise _Damaged(f"integrity check: {check[0] if check else 'no answer'}")
        table = _retrying(lambda: db.execute("PRAGMA table_info(results)").fetchall())
        columns = [(r[1], r[2].upper(), r[3], r[5]) for r in table]
        if columns != _COLUMNS:
            raise _Damaged("its results table has another schema")
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: Path) -> Path:
    """Renames a damaged cache (and its log files) out of the way; another
    scan that got there first is fine."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    for suffix in ("", *_COMPANIONS):
        try:
            os.replace(path.with_name(path.name + suffix), aside.with_name(aside.name + suffix))
        except FileNotFoundError:
            continue
    return aside


def _open_with_retries(path: Path) -> sqlite3.Connection:
    """Open the cache in WAL mode, waiting out other scans that hold it."""

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
        except BaseException:
            db.close()  # a new connection is tried: this one may hold a stale view of the file
            raise
        return db

    return _retrying(connect)
