"""Training-log metrics as rows of the scan table (``tensor`` empty).

A grokspec run's ``metrics.jsonl``, a Hugging Face ``trainer_state.json``
(its ``log_history``), Ray's reports (:mod:`grokspec.scan.ray_results`),
Lightning's CSVLogger ``metrics.csv``, TensorBoard event files, an MLflow
run's metrics (:mod:`grokspec.scan.mlflow_logs`) or a W&B run's history
(:mod:`grokspec.scan.wandb_logs`), or a file given with ``--metrics``. Logs are read
defensively: a log that is not a regular file, damaged lines, values that
are not numbers or steps outside 0..2**63-1 become warnings or are skipped,
never an exception.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grokspec.lab.rundir import RunDir
from grokspec.scan import mlflow_logs, ray_results, tensorboard, wandb_logs
from grokspec.scan.discovery import RunSpec
from grokspec.scan.guards import display_name, is_small_regular_file

__all__ = ["LOG_SIZE_LIMIT", "MAX_CSV_ROWS", "MAX_STEP", "finite_or_none", "log_rows", "metric_rows", "metrics_file_rows"]

#: Steps are stored as 64-bit integers.
MAX_STEP = 2**63 - 1
#: trainer_state.json files of long runs reach tens of megabytes.
LOG_SIZE_LIMIT = 1 << 30
#: Rows of a logger's metrics.csv read, at most (Lightning logs a row every 50 steps by
#: default: a million-step run has 20,000); each value becomes a table row.
MAX_CSV_ROWS = 500_000


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _number(value: Any) -> float | None:
    """A JSON value as a float for the table (None: missing or not finite)."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)):
        return None
    try:
        return finite_or_none(float(value))
    except OverflowError:  # an integer beyond float range
        return None


#: Which logged weight entropies (by tensor name) a scan takes; None: none.
WeightFilter = Callable[[str], bool] | None


def metric_rows(run: str, source: str, records: list[Any], weights: WeightFilter = None) -> list[dict[str, Any]]:
    """One row per numeric value of each record that has a valid step, and,
    when `weights` says so, one per logged weight entropy (``weight_entropy``:
    {tensor: value}, as ``grokspec train --log-weight-entropies`` writes)."""
    rows = []
    for record in records:
        if not isinstance(record, dict):
            continue
        step = record.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
            continue
        if weights is not None:
            rows.extend(_weight_rows(run, source, step, record.get("weight_entropy"), weights))
        for key, value in record.items():
            if key in ("step", "wall_seconds", "run") or not isinstance(key, str):
                continue
            if isinstance(value, (str, dict, list)) or value is None:
                continue
            rows.append({
                "run": run, "checkpoint": source, "step": step, "step_source": "log", "tensor": "",
                "rows": None, "cols": None, "dtype": "", "metric": display_name(key), "value": _number(value),
            })  # fmt: skip
    return rows


def _weight_rows(run: str, source: str, step: int, logged: Any, keep: Callable[[str], bool]) -> list[dict[str, Any]]:
    if not isinstance(logged, dict):
        return []
    return [
        {
            "run": run, "checkpoint": source, "step": step, "step_source": "log", "tensor": display_name(name),
            "rows": None, "cols": None, "dtype": "", "metric": "entropy", "value": _number(value),
        }
        for name, value in logged.items()
        if isinstance(name, str) and name and keep(name)
    ]  # fmt: skip


def _trainer_state_records(path: Path) -> list[Any]:
    if not is_small_regular_file(path, LOG_SIZE_LIMIT):
        raise ValueError("not a regular file of at most 1 GB")
    data = json.loads(path.read_bytes().decode("utf-8"))
    history = data.get("log_history", []) if isinstance(data, dict) else None
    if not isinstance(history, list):
        raise ValueError("its log_history is not a list")
    return history


def log_rows(run: RunSpec, warnings: list[str], weights: WeightFilter = None) -> list[dict[str, Any]]:
    """The run's training-log metrics, and those of a grokspec callback's
    metrics.jsonl beside a library's checkpoints; problems become `warnings`.
    `weights` picks the logged weight entropies to take (None: none)."""
    rows = _main_log_rows(run, warnings, weights)
    for path in run.extra_logs:
        store = mlflow_logs.log_rows_source(path)
        if store is not None:
            rows.extend(_mlflow_rows(run, path, store, warnings))
            continue
        if wandb_logs.is_run_file(path):
            rows.extend(_binary_log_rows(run, path, warnings, _wandb_history))
            continue
        if path.suffix == ".csv":
            rows.extend(_csv_log_rows(run, path, warnings))
            continue
        if tensorboard.is_event_file(path.name):
            rows.extend(_binary_log_rows(run, path, warnings, _event_scalars))
            continue
        reading = RunDir(path.parent).read_metrics_checked()
        if reading.problems:
            warnings.append(f"{run.name}: {display_name(path.name)}: {len(reading.problems)} problem(s) ({reading.problems[0]})")
        rows.extend(metric_rows(run.name, display_name(path.name), list(reading.records), weights))
    return rows


def _csv_log_rows(run: RunSpec, path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """Lightning's CSVLogger ``metrics.csv``: a ``step`` column (the global step) and one column
    per logged metric, empty where a row did not log it."""
    name = display_name(f"{path.parent.name}/{path.name}")
    try:
        if not is_small_regular_file(path, LOG_SIZE_LIMIT):
            raise ValueError("not a regular file of at most 1 GB")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = itertools.islice(csv.DictReader(handle), MAX_CSV_ROWS + 1)
            records = [{k: _csv_value(v) for k, v in row.items() if k} for row in rows]
    except (OSError, ValueError, UnicodeError, csv.Error) as error:
        warnings.append(f"{run.name}: cannot read {name}: {display_name(str(error))[:200]}")
        return []
    if len(records) > MAX_CSV_ROWS:
        warnings.append(f"{run.name}: {name}: only its first {MAX_CSV_ROWS:,} rows are read")
        records = records[:MAX_CSV_ROWS]
    return metric_rows(run.name, name, records)


def _mlflow_rows(run: RunSpec, path: Path, store: str, warnings: list[str]) -> list[dict[str, Any]]:
    """An MLflow run's metrics: its file store's ``metrics/`` folder, or its rows of a tracking
    database (the run id names the folder above ``checkpoints/``); `store` says which."""
    problems: list[str] = []
    if store == "file store":
        name = display_name(f"{path.parent.name}/metrics")
        records = mlflow_logs.file_store_records(path, problems)
    else:
        name = display_name(path.name)
        records = mlflow_logs.sqlite_records(path, run.root.parent.name, problems)
    if problems:
        shown = "; ".join(display_name(p)[:200] for p in problems[:3]) + ("; …" if len(problems) > 3 else "")
        warnings.append(f"{run.name}: {name}: {shown}")
    return metric_rows(run.name, name, records)


#: A binary log's reader: its records, and why its reading stopped early (None: it did not).
LogReader = Callable[[Path], tuple[list[Any], str | None]]


def _event_scalars(path: Path) -> tuple[list[Any], str | None]:
    """The scalars of a TensorBoard event file (:mod:`grokspec.scan.tensorboard`)."""
    scalars = tensorboard.read_scalars(path)
    return list(scalars.records), scalars.problem and f"{scalars.problem}; the scalars before it are kept"


def _wandb_history(path: Path) -> tuple[list[Any], str | None]:
    """A W&B run's history rows (:mod:`grokspec.scan.wandb_logs`)."""
    problems: list[str] = []
    records = wandb_logs.read_history(path, problems)
    return records, problems[0] if problems else None


def _binary_log_rows(run: RunSpec, path: Path, warnings: list[str], read: LogReader) -> list[dict[str, Any]]:
    """The rows of a log file that `read` parses (of at most 1 GB); an unreadable file or one
    whose reading stopped early is a warning, and the rows read before the stop are kept."""
    name = display_name(f"{path.parent.name}/{path.name}")
    try:
        if not is_small_regular_file(path, LOG_SIZE_LIMIT):
            raise OSError("not a regular file of at most 1 GB")
        records, problem = read(path)
    except OSError as error:
        warnings.append(f"{run.name}: cannot read {name}: {display_name(str(error))[:200]}")
        return []
    if problem:
        warnings.append(f"{run.name}: {name}: {display_name(problem)[:200]}")
    return metric_rows(run.name, name, records)


def _csv_value(text: str | None) -> float | None:
    """A cell as a number (the step column's integral floats are taken as steps); else None."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _main_log_rows(run: RunSpec, warnings: list[str], weights: WeightFilter) -> list[dict[str, Any]]:
    if run.log is None:
        return []
    name = display_name(run.log.name)
    try:
        if run.kind == "grokspec":
            reading = RunDir(run.root).read_metrics_checked()
            records: list[Any] = list(reading.records)
            if reading.problems:
                shown = "; ".join(reading.problems[:3]) + ("; …" if len(reading.problems) > 3 else "")
                warnings.append(f"{run.name}: {name}: {len(reading.problems)} damaged line(s) skipped ({shown})")
        elif run.kind == "ray":
            records = [{**r.metrics, "step": r.step} for r in ray_results.read_reports(run.log)]
        else:
            records = _trainer_state_records(run.log)
    except (OSError, ValueError, RecursionError) as error:
        warnings.append(f"{run.name}: cannot read {name}: {display_name(str(error))[:200]}")
        return []
    return metric_rows(run.name, name, records, weights if run.kind == "grokspec" else None)


def metrics_file_rows(path: Path, run_names: list[str]) -> list[dict[str, Any]]:
    """--metrics FILE: CSV or JSONL with `step` and metric columns (a `run`
    column assigns rows to runs, otherwise the metrics apply to every run), a
    TensorBoard event file or a W&B run file (their values apply to every run).
    ValueError (one line naming the file) when it cannot be used."""
    import numpy as np
    import pandas as pd

    if not is_small_regular_file(path, LOG_SIZE_LIMIT):
        raise ValueError(f"the metrics file {path} is not a regular file of at most 1 GB")
    if tensorboard.is_event_file(path.name):  # an HF Trainer's runs/<date>/events.out.tfevents.*
        try:
            scalars = tensorboard.read_scalars(path)
        except OSError as error:
            raise ValueError(f"cannot read the metrics file {path}: {error}") from error
        if not scalars.records:
            raise ValueError(f"the event file {path} holds no scalars{f' ({scalars.problem})' if scalars.problem else ''}")
        return [row for name in run_names for row in metric_rows(name, path.name, list(scalars.records))]
    if path.suffix == ".wandb":  # wandb/<...>-<id>/run-<id>.wandb, when the checkpoints lie elsewhere
        problems: list[str] = []
        try:
            history = wandb_logs.read_history(path, problems)
        except OSError as error:
            raise ValueError(f"cannot read the metrics file {path}: {error}") from error
        if not history:
            raise ValueError(f"the W&B run file {path} holds no values{f' ({problems[0]})' if problems else ''}")
        return [row for name in run_names for row in metric_rows(name, path.name, history)]
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=path.suffix.lower() == ".jsonl")
        else:
            frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeError) as error:
        raise ValueError(f"cannot read the metrics file {path}: {error}") from error
    if "step" not in frame.columns:
        raise ValueError(f"the metrics file {path} has no 'step' column (columns: {', '.join(map(str, frame.columns))})")
    records = frame.replace({np.nan: None}).to_dict("records")
    rows = []
    for name in run_names:
        mine = [r for r in records if "run" not in r or r["run"] in (None, name)]
        rows.extend(metric_rows(name, path.name, mine))
    return rows
