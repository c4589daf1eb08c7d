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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ScanCache", "checkpoint_key"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


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
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute(_SCHEMA)

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
