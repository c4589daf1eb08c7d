"""Writing a scan's results: the tidy table, trajectories.png and report.json,
each atomically (a crash leaves the previous version, never half a file).

:func:`check_output_dir` runs before any work: the output folder can be
created and written, and none of the outputs' names is taken by a folder
or anything else that is not a regular file — so an unwritable ``--out``
is one line at once, not a traceback after all the computing. Files are
created with the permissions the umask gives (io_atomic).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

from grokspec.errors import GrokspecError
from grokspec.io_atomic import atomic_open, atomic_path, create_temporary, write_json
from grokspec.scan.failures import describe_failure
from grokspec.scan.guards import display_name
from grokspec.scan.plot import has_trajectory, plot_trajectories
from grokspec.scan.plot_cache import DIGEST_KEY, plot_digest, plot_is_current
from grokspec.scan.scan import ScanResult

__all__ = ["TABLE_FORMATS", "OutputError", "check_output_dir", "output_names", "write_scan_outputs"]

TABLE_FORMATS = ("csv", "parquet", "json")


class OutputError(GrokspecError):
    """The scan's outputs cannot be written where they were asked for."""


def output_names(table_format: str, cache: bool) -> list[str]:
    """The files a scan writes into its output folder."""
    return [f"spectra.{table_format}", "report.json", "trajectories.png", *(["cache.sqlite"] if cache else [])]


def _kind(path: Path) -> str | None:
    """What `path` is when it is not a regular file (None when it is, or absent)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling link" if os.path.islink(path) else None
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file"


def check_output_dir(out_dir: Path, table_format: str = "csv", *, cache: bool = True) -> None:
    """OutputError (one line naming the path) unless every output can be written."""
    out_dir = Path(out_dir)
    shown = display_name(str(out_dir))
    if table_format not in TABLE_FORMATS:
        raise OutputError(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {table_format!r}")
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise OutputError(f"the output folder {shown} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {shown}: {error.strerror or error}") from None
    for name in output_names(table_format, cache):
        kind = _kind(out_dir / name)
        if kind is not None:
            raise OutputError(f"cannot write {display_name(str(out_dir / name))}: it is {kind}")
    try:
        create_temporary(out_dir, "grokspec-write-test").unlink()
    except OSError as error:
        raise OutputError(f"the output folder {shown} is not writable: {error.strerror or error}") from None


def _write_table(result: ScanResult, path: Path, table_format: str) -> None:
    if table_format == "csv":
        # Every name in the table is printable already; the error handler is a last guard.
        with atomic_open(path, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
            result.rows.write_csv(handle)
    elif table_format == "parquet":
        with atomic_path(path) as temporary:
            result.table.to_parquet(temporary, index=False)
    else:
        with atomic_open(path, "w", encoding="utf-8") as handle:
            json.dump(result.rows.records(), handle)


def write_scan_outputs(result: ScanResult, out_dir: Path, table_format: str = "csv") -> dict[str, Path]:
    """Writes spectra.<format>, trajectories.png and report.json into
    `out_dir`. OutputError when a file cannot be written; a plot that
    cannot be drawn is a warning in the report, not a lost scan."""
    if table_format not in TABLE_FORMATS:
        raise ValueError(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {table_format!r}")
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {"table": out_dir / f"spectra.{table_format}", "report": out_dir / "report.json"}
    current = paths["table"]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_table(result, current, table_format)
        current = out_dir / "trajectories.png"
        try:
            if has_trajectory(result.report):
                digest = plot_digest(result.rows, result.report)
                if not plot_is_current(current, digest):  # a rescan that changed nothing keeps the figure
                    plot_trajectories(result.rows, result.report, current, metadata={DIGEST_KEY: digest})
                paths["plot"] = current
            else:
                # A single checkpoint has no trajectory: drawing it would cost most of
                # a cached rescan (matplotlib) and a stale plot would mislead.
                current.unlink(missing_ok=True)
        except OSError:
            raise
        except Exception as error:  # a figure is not worth the table: say so in the report
            note = f"trajectories.png not drawn: {describe_failure(error)}"
            result.warnings.append(note)
            result.report = dataclasses.replace(result.report, warnings=(*result.report.warnings, note))
        current = paths["report"]
        write_json(current, result.report.to_json())
    except OSError as error:
        raise OutputError(f"cannot write {display_name(str(current))}: {error.strerror or error}") from None
    return paths
