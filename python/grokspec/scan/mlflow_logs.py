"""Metrics that MLflow logged for a run whose checkpoints Lightning saved.

Lightning's ``MLFlowLogger`` puts ``ModelCheckpoint``'s files in
``<save_dir>/<experiment id>/<run id>/checkpoints/``. Where the metrics are
depends on MLflow's tracking store:

- the **file store** (``file:./mlruns``, MLflow's default before 3.x and
  still used with ``MLFLOW_ALLOW_FILE_STORE=true``): in the run's own folder,
  one file per metric under ``metrics/`` (a key with ``/`` in it nests
  folders), one line per logged value, ``<timestamp ms> <value> <step>``
  (MLflow before 1.0 wrote no step);
- a **database** (``sqlite:///mlflow.db``, MLflow 3's default): rows
  ``(key, value, timestamp, run_uuid, step, is_nan)`` of its ``metrics``
  table; grokspec looks for a file ``mlflow.db`` in the run's folder and
  the three above it (Lightning's ``default_root_dir``, where the database
  usually is, may lie above the folder scanned) and reads the rows of the
  run whose id names the folder: the id is unique, so nothing else matches.

Both are read defensively: bounded files, rows and folders; a line that is
not three numbers is skipped; the database is opened read-only, only a real
table is queried (a view could run anything), never a generated column (one
could build a gigabyte per row), and a query that takes more than a bounded
number of steps is abandoned.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from grokspec.scan.guards import is_regular_file, is_small_regular_file, walk_within

__all__ = [
    "DATABASE_NAME",
    "MAX_METRIC_FILES",
    "MAX_VALUES",
    "file_store_records",
    "log_rows_source",
    "run_logs",
    "sqlite_records",
]

#: The tracking database's name as MLflow's docs and Lightning's examples write it.
DATABASE_NAME = "mlflow.db"
#: Values read per run, at most (each becomes a table row).
MAX_VALUES = 500_000
#: Metric files read per run, at most.
MAX_METRIC_FILES = 10_000
#: A metric file larger than this is skipped (a million values are ~40 MB).
MAX_METRIC_FILE_BYTES = 256 << 20
#: SQLite virtual-machine steps one query may take before it is abandoned.
MAX_QUERY_STEPS = 200_000_000
#: How often (in steps) the query's clock is looked at.
_CHECK_EVERY = 10_000

_RUN_ID = re.compile(r"[0-9a-f]{32}")


def run_logs(checkpoints: Path) -> tuple[Path, ...]:
    """For Lightning's ``<run id>/checkpoints/`` folder of an MLflow run (or
    the ``<run id>/artifacts/`` copies that ``MLFlowLogger(log_model=...)``
    keeps in MLflow's artifact store): the run's file-store ``metrics/``
    folder, else the nearest tracking database; () for any other folder."""
    run = checkpoints.parent
    if checkpoints.name not in ("checkpoints", "artifacts") or _RUN_ID.fullmatch(run.name) is None:
        return ()
    metrics = run / "metrics"
    if metrics.is_dir() and not metrics.is_symlink():
        return (metrics,)
    for folder in [run, *run.parents][:4]:
        database = folder / DATABASE_NAME
        if is_regular_file(database) and not database.is_symlink():
            return (database,)
    return ()


def log_rows_source(path: Path) -> str | None:
    """Which store a path from :func:`run_logs` is in: "file store", "database", or None."""
    if path.name == "metrics" and path.is_dir():
        return "file store"
    return "database" if path.name == DATABASE_NAME else None


def file_store_records(metrics: Path, problems: list[str]) -> list[dict[str, Any]]:
    """``{"step": s, key: value}`` for each value under a file store's
    ``metrics/`` folder; what could not be read is added to `problems`."""
    records: list[dict[str, Any]] = []
    files = 0
    for folder, _, names in walk_within(metrics, max_depth=8):
        for name in sorted(names):
            path = folder / name
            if path.is_symlink() or not is_regular_file(path):
                continue
            files += 1
            if files > MAX_METRIC_FILES:
                problems.append(f"only the first {MAX_METRIC_FILES:,} metric files are read")
                return records
            if not _read_metric_file(path, path.relative_to(metrics).as_posix(), records, problems):
                return records
    return records


def _read_metric_file(path: Path, key: str, records: list[dict[str, Any]], problems: list[str]) -> bool:
    """Appends the values of one metric file; False once :data:`MAX_VALUES` are read."""
    if not is_small_regular_file(path, MAX_METRIC_FILE_BYTES):
        problems.append(f"metric {key}: larger than {MAX_METRIC_FILE_BYTES >> 20} MB, skipped")
        return True
    damaged = 0
    try:
        with open(path, "rb") as handle:
            for line in handle:
                parsed = _value_line(line)
                if parsed is None:
                    damaged += line.strip() != b""
                    continue
                records.append({"step": parsed[1], key: parsed[0]})
                if len(records) >= MAX_VALUES:
                    problems.append(f"only the first {MAX_VALUES:,} values are read")
                    return False
    except OSError as error:
        problems.append(f"metric {key}: {error.strerror or error}")
    if damaged:
        problems.append(f"metric {key}: {damaged} damaged line(s) skipped")
    return True


def _value_line(line: bytes) -> tuple[float, int] | None:
    """``(value, step)`` of one ``<timestamp> <value> [<step>]`` line."""
    parts = line.split()
    if len(parts) not in (2, 3):
        return None
    try:
        value = float(parts[1])
        step = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        return None
    return value, step


def sqlite_records(database: Path, run_id: str, problems: list[str]) -> list[dict[str, Any]]:
    """``{"step": s, key: value}`` for each metric value of run `run_id` in
    an MLflow tracking database; [] (with a problem) when it cannot be read."""
    steps = 0

    def still_going() -> int:
        nonlocal steps
        steps += _CHECK_EVERY
        return int(steps > MAX_QUERY_STEPS)  # non-zero aborts the query

    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        problems.append(f"cannot open {database.name}: {error}")
        return []
    try:
        connection.set_progress_handler(still_going, _CHECK_EVERY)
        connection.execute("PRAGMA trusted_schema = OFF")  # no schema-defined function with side effects
        kind = connection.execute("SELECT type FROM sqlite_master WHERE name = 'metrics'").fetchone()
        if kind is None or kind[0] != "table":
            problems.append(f"{database.name} has no metrics table")
            return []
        # table_info leaves out generated columns, so none is ever read: one can
        # build a gigabyte-long string for every row (hex(zeroblob(...)) is
        # deterministic, so SQLite allows it there).
        columns = {row[1] for row in connection.execute("PRAGMA table_info(metrics)")}
        if not {"key", "value", "step", "run_uuid"} <= columns:
            problems.append(f"{database.name}: its metrics table lacks key, value, step or run_uuid")
            return []
        # MLflow stores a NaN as 0 with is_nan set: such a row is no value at all.
        valid = "AND NOT is_nan" if "is_nan" in columns else ""
        rows = connection.execute(
            f"SELECT key, value, step FROM metrics WHERE run_uuid = ? {valid} ORDER BY step LIMIT ?",
            (run_id, MAX_VALUES + 1),
        ).fetchall()
    except sqlite3.Error as error:
        problems.append(f"cannot read {database.name}: {error}")
        return []
    finally:
        connection.close()
    if len(rows) > MAX_VALUES:
        problems.append(f"only the first {MAX_VALUES:,} values are read")
        rows = rows[:MAX_VALUES]
    return [
        {"step": step, key: value}
        for key, value, step in rows
        if isinstance(key, str) and isinstance(value, (int, float)) and isinstance(step, int)
    ]
