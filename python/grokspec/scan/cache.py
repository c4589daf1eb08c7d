"""The scan cache: results per checkpoint in ``cache.sqlite``.

Each checkpoint's results are stored under a key made of its files'
identity (absolute path, size, modification time) and every option that
changes the numbers, so a rescan computes only new or changed checkpoints,
and an interrupted scan resumes where it stopped (each checkpoint is
committed as soon as it is done). SQLite's write-ahead log and a busy
timeout let two scans of one directory run at once without corrupting
anything; at worst both compute the same checkpoint and the second write
replaces an identical value.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ScanCache", "checkpoint_key"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_BUSY_TIMEOUT_S = 60.0


def checkpoint_key(files: Iterable[Path], options: dict[str, Any]) -> str:
    identity = []
    for path in files:
        stat = path.stat()
        identity.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    blob = json.dumps({"files": identity, "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ScanCache:
    def __init__(self, path: Path | None):
        """`path=None` gives a cache that remembers nothing."""
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = _open_with_retries(path)

    def get(self, key: str) -> Any | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> ScanCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_with_retries(path: Path) -> sqlite3.Connection:
    """Open the cache in WAL mode, waiting out other scans that hold it.

    SQLite answers the switch to WAL (and the recovery of a log another
    process is closing) with "database is locked" at once, without waiting
    for its busy timeout, so opening is retried with backoff until the
    same deadline.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause = 0.01
    while True:
        db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            return db
        except sqlite3.OperationalError as error:
            db.close()
            transient = "locked" in str(error) or "busy" in str(error)
            if not transient or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
