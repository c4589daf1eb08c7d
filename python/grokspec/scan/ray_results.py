"""Ray Train and Ray Tune run folders: their checkpoints' steps and their reported metrics.

Ray keeps what a training function passes to ``report(metrics, checkpoint=...)``
beside the checkpoint folders it saves:

- Ray Train (v2, the default since Ray 2.43): ``<storage>/<name>/`` holds
  ``checkpoint_<YYYY-MM-DD_HH-MM-SS.ffffff>/`` folders and
  ``checkpoint_manager_snapshot.json``, whose ``checkpoint_results`` give each
  kept checkpoint's folder and metrics, and ``checkpoint_report_indices`` the
  index of the report that carried it;
- Ray Tune (and Ray Train v1): each trial folder holds ``checkpoint_NNNNNN/``
  (a count of saves), ``result.json`` (one JSON line per report, with Tune's
  ``training_iteration`` and the ``checkpoint_dir_name`` it saved) and
  ``progress.csv`` / ``params.json``.

A report's step is its own step when it reports one (the first of
:data:`~grokspec.scan.pickled.STEP_KEYS` that is a whole number), else its
index: the n-th report is step n − 1 (Ray Train's report index; Tune's
``training_iteration`` − 1), so a loop ``for epoch in range(E)`` that saves its
``epoch`` inside each checkpoint lands its checkpoints and its metrics on the
same steps. A checkpoint folder takes the step of the report that saved it; the
metadata inside the checkpoint, when it has a step, still wins (SPEC §5). Every file is read
defensively: at most :data:`MAX_REPORTS` reports, a damaged line skipped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from grokspec.scan import guards
from grokspec.scan.pickled import STEP_KEYS

__all__ = [
    "MAX_REPORTS",
    "RESULT_NAME",
    "SNAPSHOT_NAME",
    "Report",
    "folder_steps",
    "is_ray_folder",
    "log_file",
    "read_reports",
    "timestamp_order",
]

#: Ray Train v2's record of the checkpoints it keeps.
SNAPSHOT_NAME = "checkpoint_manager_snapshot.json"
#: Ray Tune's (and Train v1's) log of every report of a trial.
RESULT_NAME = "result.json"
#: Files that mark a folder holding result.json as a Ray trial (result.json alone is a common name).
_TRIAL_MARKS = ("params.json", "progress.csv")
#: Reports read from one file, at most (each becomes a few table rows).
MAX_REPORTS = 500_000
_SIZE_LIMIT = 1 << 30
#: A report of a few metrics is a few kB (Tune adds the trial's config): a longer line is not one.
_LINE_LIMIT = 16 << 20
#: Train v2's snapshot holds the kept checkpoints' metrics only (a few hundred bytes each), and is
#: parsed whole: 64 MB is 100,000 checkpoints and bounds the parse to well under a GB.
_SNAPSHOT_LIMIT = 64 << 20
#: Ray Train v2's checkpoint folders are named by the time of the save.
_TIMESTAMP_FOLDER = re.compile(r"^checkpoint_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.\d{6}$")
#: Entries of a report that are Ray's bookkeeping, not the user's metrics.
_BOOKKEEPING = frozenset({
    "training_iteration", "iterations_since_restore", "timestamp", "time_this_iter_s", "time_total_s",
    "time_since_restore", "timesteps_total", "timesteps_since_restore", "episodes_total", "pid", "done",
    "should_checkpoint", "experiment_tag",
})  # fmt: skip


@dataclass(frozen=True)
class Report:
    """One ``report`` call: its step, the checkpoint folder it saved (if any), its numbers."""

    step: int
    checkpoint: str | None
    metrics: dict[str, float]


def is_ray_folder(filenames: list[str]) -> bool:
    """Whether a folder's files mark a Ray Train run folder or a Ray Tune trial."""
    return SNAPSHOT_NAME in filenames or (RESULT_NAME in filenames and any(m in filenames for m in _TRIAL_MARKS))


def log_file(folder: Path, filenames: list[str]) -> Path | None:
    """The file that holds the folder's reports, if it is a Ray folder."""
    if SNAPSHOT_NAME in filenames:
        return folder / SNAPSHOT_NAME
    return folder / RESULT_NAME if is_ray_folder(filenames) else None


def timestamp_order(subfolders: list[str]) -> dict[str, int]:
    """Ray Train v2's ``checkpoint_<time>`` folders in the order they were saved (their names sort by time)."""
    return {name: rank for rank, name in enumerate(sorted(n for n in subfolders if _TIMESTAMP_FOLDER.match(n)))}


def read_reports(path: Path) -> list[Report]:
    """The reports kept in a snapshot or a result.json (ValueError/OSError when unreadable)."""
    if path.name == SNAPSHOT_NAME:
        if not guards.is_small_regular_file(path, _SNAPSHOT_LIMIT):
            raise ValueError(f"not a regular file of at most {_SNAPSHOT_LIMIT >> 20} MB")
        return _snapshot_reports(json.loads(path.read_bytes().decode("utf-8")))
    if not guards.is_small_regular_file(path, _SIZE_LIMIT):
        raise ValueError("not a regular file of at most 1 GB")
    reports = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for index, line in enumerate(_lines(handle)):
            if index >= MAX_REPORTS:
                break
            try:
                record = json.loads(line) if line is not None else None
            except ValueError:
                continue  # a line cut short by a crash: the reports around it still count
            if isinstance(record, dict):
                counted = _whole(record.get("training_iteration"))  # counts from 1
                reports.append(_report(record, index if not counted else counted - 1, record.get("checkpoint_dir_name")))
    return reports


def _lines(handle: TextIO) -> Iterator[str | None]:
    """The file's lines; None in place of a line over :data:`_LINE_LIMIT` characters, which
    is passed over a piece at a time rather than held (a hostile file's one huge line)."""
    while True:
        line = handle.readline(_LINE_LIMIT)
        if not line:
            return
        if len(line) < _LINE_LIMIT or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):
            line = handle.readline(_LINE_LIMIT)
        yield None


def _snapshot_reports(data: Any) -> list[Report]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    results, indices = data.get("checkpoint_results"), data.get("checkpoint_report_indices")
    if not isinstance(results, list):
        raise ValueError("its checkpoint_results is not a list")
    if not isinstance(indices, list) or len(indices) != len(results):
        indices = [None] * len(results)
    reports = []
    for rank, (result, listed_index) in enumerate(zip(results[:MAX_REPORTS], indices)):
        if not isinstance(result, dict) or not isinstance(result.get("metrics", {}), dict):
            continue
        counted = _whole(listed_index)
        index = rank if counted is None else counted
        reports.append(_report(result.get("metrics", {}), index, result.get("checkpoint_dir_name")))
    return reports


def _report(metrics: dict[str, Any], index: int, checkpoint: Any) -> Report:
    step = next((s for k in STEP_KEYS if (s := _whole(metrics.get(k))) is not None), index)
    numbers = {key: number for key, value in metrics.items() if (number := _number(key, value)) is not None}
    return Report(step, checkpoint if isinstance(checkpoint, str) and checkpoint else None, numbers)


def _whole(value: Any) -> int | None:
    """A non-negative whole number (an integral float too), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _number(key: Any, value: Any) -> float | None:
    """A user's finite number (not Ray's bookkeeping), else None."""
    if not isinstance(key, str) or key in _BOOKKEEPING or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return number if math.isfinite(number) else None


def folder_steps(folder: Path, filenames: list[str]) -> tuple[dict[str, int] | None, list[str]]:
    """Each checkpoint folder a Ray folder's reports saved, with the report's step (None: not a
    Ray folder), and what could not be read (the folders then keep their order)."""
    log = log_file(folder, filenames)
    if log is None:
        return None, []
    try:
        reports = read_reports(log)
    except (OSError, ValueError, UnicodeError, RecursionError) as error:
        return {}, [f"cannot read {log.name}: {guards.display_name(str(error))[:200]}"]
    return {r.checkpoint: r.step for r in reports if r.checkpoint is not None}, []
