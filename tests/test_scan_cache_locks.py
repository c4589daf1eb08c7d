"""The scan cache shared by scans that run at once: SQLite's "locked" answers
are waited out, never taken for damage and never lose an entry."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from grokspec.scan import cache as cache_module
from grokspec.scan.cache import ScanCache

_OPEN_AND_WRITE = """
import sys
import time
from pathlib import Path
from grokspec.scan.cache import ScanCache
path, worker, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # all workers begin together
for i in range(100):
    with ScanCache(path) as cache:
        cache.put(f"{worker}-{i}", [worker, i])
        got = cache.get(f"{worker}-{i}")
        warnings = list(cache.warnings)
    if got != [worker, i] or warnings:
        sys.exit(f"entry {i}: read back {got!r}; cache warnings: {warnings}")
"""


def test_cache_opened_by_many_processes_at_once(tmp_path):
    # Several scans opening and closing one cache meet SQLite's windows that
    # answer "locked" at once (the switch to WAL, the last connection cleaning
    # up the log): every worker must still store and read back every entry,
    # with no warning.
    path, start = tmp_path / "cache.sqlite", time.time() + 3.0
    command = [sys.executable, "-c", _OPEN_AND_WRITE, str(path)]
    workers = [subprocess.Popen([*command, str(w), str(start)], stderr=subprocess.PIPE, text=True) for w in range(8)]
    # Every worker is waited for before anything is asserted, so a failure
    # leaves no process running into the next test.
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 8, errors
    with ScanCache(path) as cache:
        assert all(cache.get(f"{w}-{i}") == [str(w), i] for w in range(8) for i in range(100))
        assert cache.warnings == []
    assert sorted(p.name for p in tmp_path.iterdir() if "damaged" in p.name) == []


def _locked_error(tmp_path) -> sqlite3.OperationalError:
    """A real "database is locked" from SQLite: a second connection that will
    not wait, while the first holds the file in exclusive locking mode."""
    path = tmp_path / "held.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("CREATE TABLE t (x)")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            other.execute("SELECT * FROM t").fetchall()
    finally:
        other.close()
        holder.close()
    return caught.value


def test_locked_and_busy_are_transient_damage_and_mistakes_are_not(tmp_path):
    assert cache_module._transient(_locked_error(tmp_path))
    not_a_database = tmp_path / "text.sqlite"
    not_a_database.write_text("this is not a database, " * 100)
    db = sqlite3.connect(not_a_database)
    with pytest.raises(sqlite3.DatabaseError) as damaged:
        db.execute("SELECT * FROM sqlite_master").fetchall()
    with pytest.raises(sqlite3.OperationalError) as mistake:
        sqlite3.connect(":memory:").execute("SELECT * FROM missing")
    db.close()
    assert not cache_module._transient(damaged.value)
    assert not cache_module._transient(mistake.value)


def test_transient_errors_are_retried_until_the_action_succeeds(tmp_path):
    locked, calls = _locked_error(tmp_path), []

    def action() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise locked
        return "done"

    assert cache_module._retrying(action) == "done"
    assert len(calls) == 4
    assert calls[-1] - calls[0] >= 0.01 + 0.02 + 0.04  # it backed off between tries


def test_other_errors_are_raised_at_once_and_a_lock_that_stays_gives_up(tmp_path, monkeypatch):
    calls = []

    def mistake() -> None:
        calls.append(1)
        sqlite3.connect(":memory:").execute("SELECT * FROM missing")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        cache_module._retrying(mistake)
    assert calls == [1]

    locked = _locked_error(tmp_path)
    monkeypatch.setattr(cache_module, "_BUSY_TIMEOUT_S", 0.2)

    def always_locked() -> None:
        raise locked

    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        cache_module._retrying(always_locked)
    assert 0.2 <= time.monotonic() - started < 5.0


def test_a_cache_held_by_another_scan_is_waited_for_then_used(tmp_path):
    # Another process holds the cache exclusively for a second; a scan opening
    # it meanwhile waits, then stores and reads its entries, and nothing is
    # moved aside as damaged.
    path = tmp_path / "cache.sqlite"
    with ScanCache(path) as cache:
        cache.put("first", 1)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_FOR_A_SECOND, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    with ScanCache(path) as cache:
        cache.put("second", 2)
        assert (cache.get("first"), cache.get("second")) == (1, 2)
        assert cache.warnings == []
    holder.communicate(timeout=60)
    assert holder.returncode == 0
    assert not [p for p in tmp_path.iterdir() if "damaged" in p.name]


_HOLD_FOR_A_SECOND = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
db.execute("COMMIT")
print("holding", flush=True)
time.sleep(1.0)
db.close()
"""
