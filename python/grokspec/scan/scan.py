"""``grokspec scan``: checkpoint directories -> entropy trajectories and reports.

:func:`scan` finds the runs under a directory (:mod:`grokspec.scan.discovery`),
opens each checkpoint without trusting it (:mod:`grokspec.scan.formats`),
computes section 1's statistics of every selected weight matrix through the
engine's parallel batch — one checkpoint at a time, so memory stays bounded
— and, for grokspec runs, the representation entropy H̃ of the probe set by
one forward pass of the rebuilt model. Training-log metrics join the same
tidy table. A checkpoint that cannot be read becomes a warning; the scan
goes on.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokspec import __version__
from grokspec.scan.cache import ScanCache, checkpoint_key
from grokspec.scan.options import ScanOptions
from grokspec.scan.report import ScanReport, build_report, load_calibration
from grokspec.scan.formats import Checkpoint, TrainingStateFile, compute_batch, matrix_shape, open_checkpoint
from grokspec.scan.discovery import ALIASES, OUTPUT_DIR_NAME, CheckpointRef, RunSpec, discover
from grokspec.scan.roles import SkippedFile
from grokspec.scan.steps import resolve_steps
from grokspec.errors import CheckpointError, GrokspecError
from grokspec.lab.rundir import RunDir
from grokspec.scan.trajectories import REPRESENTATION_METRIC

__all__ = ["ScanOptions", "ScanResult", "ScanInputError", "scan", "COLUMNS", "WEIGHT_METRICS", "default_output_dir"]

COLUMNS = ["run", "checkpoint", "step", "step_source", "tensor", "rows", "cols", "dtype", "metric", "value"]
#: The per-matrix statistics a scan records (SPEC §1).
WEIGHT_METRICS = ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank", "numerical_rank")

Progress = Callable[[int, int, str], None]


class ScanInputError(GrokspecError):
    """Nothing under the directory can be scanned at all."""


@dataclass
class ScanResult:
    #: The tidy long table (COLUMNS).
    table: pd.DataFrame
    #: Section 1's events per run and series.
    report: ScanReport
    warnings: list[str] = field(default_factory=list)
    #: Checkpoints that could not be read.
    failed_checkpoints: int = 0


def default_output_dir(directory: Path) -> Path:
    return Path(directory) / OUTPUT_DIR_NAME


def scan(
    directory: str | Path,
    options: ScanOptions | None = None,
    *,
    cache_path: Path | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Scans every run under `directory`. `cache_path=None` disables caching."""
    options = options or ScanOptions()
    directory = Path(directory)
    if not directory.is_dir():
        raise ScanInputError(f"{directory} is not a directory")
    runs, warnings, skipped = discover(directory)
    runs = [r for r in runs if r.checkpoints or r.log]
    if not runs:
        raise ScanInputError(f"no checkpoints found under {directory} (looked for grokspec runs, checkpoint-N/ dirs, .safetensors, .pt/.pth/.bin, .ckpt, .npz)")
    calibration = load_calibration(options.calibration) if options.calibration else None
    total = sum(len(r.checkpoints) for r in runs)
    rows: list[dict[str, Any]] = []
    failed = 0
    counts = {"checkpoints": 0, "matrices": 0}
    started = time.perf_counter()

    def checkpoint_done(matrices: int) -> None:
        counts["checkpoints"] += 1
        counts["matrices"] += matrices
        if progress:
            rate = counts["matrices"] / max(time.perf_counter() - started, 1e-9)
            progress(counts["checkpoints"], total, f"{rate:.0f} matrices/s")

    with ScanCache(cache_path) as cache:
        for run in runs:
            run_rows, run_warnings, run_failed = _scan_run(run, options, cache, checkpoint_done, skipped, directory)
            rows.extend(run_rows)
            warnings.extend(run_warnings)
            failed += run_failed
            rows.extend(_log_rows(run, warnings))
    if options.metrics_file is not None:
        rows.extend(_metrics_file_rows(Path(options.metrics_file), [r.name for r in runs]))
    table = pd.DataFrame(rows, columns=COLUMNS)
    report = build_report(table, runs, options, calibration, warnings, failed, skipped)
    return ScanResult(table, report, warnings, failed)


# --- one run -------------------------------------------------------------------


#: Uncached checkpoints are computed together in groups of at most this
#: many, holding at most this many bytes of selected tensors: small
#: checkpoints then share the engine's parallel batch, and memory stays bounded.
GROUP_CHECKPOINTS = 32
GROUP_BYTES = 256 * 2**20


@dataclass
class _Pending:
    """An opened checkpoint waiting for its group to be computed."""

    position: int
    ref: CheckpointRef
    key: str
    checkpoint: Checkpoint
    selected: list[tuple[str, int, int, str]]

    @property
    def bytes(self) -> int:
        return sum(r * c * 4 for _, r, c, _ in self.selected)


def _scan_run(
    run: RunSpec, options: ScanOptions, cache: ScanCache, checkpoint_done: Callable[[int], None], skipped: list[SkippedFile], base: Path
):
    """Rows, warnings and the number of unreadable checkpoints of one run
    (files that turn out to hold training state go to `skipped`)."""
    fingerprint = options.fingerprint()
    warnings: list[str] = []
    representation = None
    if options.representation and run.kind == "grokspec":
        try:
            representation = _RepresentationProbe(run)
        except (OSError, ValueError, KeyError) as error:
            warnings.append(f"{run.name}: no representation entropy (cannot rebuild the model from config.json: {error})")
    values: dict[int, dict[str, Any]] = {}
    failed = 0
    group: list[_Pending] = []

    def flush() -> None:
        for pending, value in zip(group, _compute_group(group, options, representation)):
            cache.put(pending.key, value)
            values[pending.position] = value
            checkpoint_done(value["matrices"])
        group.clear()

    for position, ref in enumerate(run.checkpoints):
        where = f"{run.name}: {ref.label}"
        try:
            key = checkpoint_key(ref.files, ref.cache_options(fingerprint))
            cached = cache.get(key)
            if cached is not None:
                values[position] = cached
                checkpoint_done(0)
                continue
            checkpoint = open_checkpoint(ref.path, trust_pickle=options.trust_pickle, entry=ref.entry)
        except TrainingStateFile as state:
            skipped.append(SkippedFile(str(ref.path.relative_to(base)), state.role, state.reason))
            checkpoint_done(0)
            continue
        except (CheckpointError, OSError) as error:
            warnings.append(f"{where}: {_message(error)}")
            failed += 1
            checkpoint_done(0)
            continue
        pending = _Pending(position, ref, key, checkpoint, _selected(checkpoint, options))
        if group and (len(group) >= GROUP_CHECKPOINTS or sum(p.bytes for p in group) + pending.bytes > GROUP_BYTES):
            flush()
        group.append(pending)
    if group:
        flush()
    results = [(ref, values[i]) for i, ref in enumerate(run.checkpoints) if i in values]
    for ref, value in results:
        warnings.extend(f"{run.name}: {ref.label}: {w}" for w in value["warnings"])
    steps, step_warnings, duplicates = resolve_steps([(ref, value["metadata_step"]) for ref, value in results], ALIASES)
    warnings.extend(f"{run.name}: {w}" for w in step_warnings)
    for i, kept in duplicates:
        skipped.append(SkippedFile(str(results[i][0].path.relative_to(base)), "duplicate", f"the same step as {kept}"))
    rows = []
    seen_metrics: set[tuple[str, int]] = set()
    for (ref, value), resolved in zip(results, steps):
        if resolved is None:
            continue
        step, source = resolved
        for row in value["rows"]:
            rows.append({"run": run.name, "checkpoint": ref.label, "step": step, "step_source": source, **row})
        rows.extend(_checkpoint_metric_rows(run.name, ref.label, step, value.get("metrics", []), seen_metrics))
    if results and not any(row["tensor"] for row in rows):
        warnings.append(f"{run.name}: no weight matrix found in any of its {len(results)} checkpoints")
    return rows, warnings, failed


def _checkpoint_metric_rows(run: str, label: str, step: int, points: list[list[Any]], seen: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Loss/accuracy values a checkpoint file keeps, at its own step or at the
    step each names; a (metric, step) already seen in the run is not repeated."""
    rows = []
    for metric, at, value in points:
        where = (str(metric), step if at is None else int(at))
        if where not in seen:
            seen.add(where)
            rows.append({"run": run, "checkpoint": label, "step": where[1], "step_source": "log", "tensor": "", "rows": None,
                         "cols": None, "dtype": "", "metric": where[0], "value": _finite_or_none(float(value))})
    return rows


def _message(error: BaseException) -> str:
    if isinstance(error, OSError):
        return f"cannot read {getattr(error, 'filename', '') or ''} ({error.strerror or error})".replace("  ", " ")
    return str(error)


def _selected(checkpoint: Checkpoint, options: ScanOptions) -> list[tuple[str, int, int, str]]:
    chosen = []
    for info in checkpoint.tensors():
        if not info.is_float:
            continue
        shape = matrix_shape(info.shape)
        if shape is None or min(shape) < options.min_dim:
            continue
        if options.include and not any(fnmatch.fnmatchcase(info.name, g) for g in options.include):
            continue
        if any(fnmatch.fnmatchcase(info.name, g) for g in options.exclude):
            continue
        chosen.append((info.name, shape[0], shape[1], info.dtype))
    return chosen


def _compute_group(group: list[_Pending], options: ScanOptions, representation: _RepresentationProbe | None) -> list[dict[str, Any]]:
    """Every selected matrix of a group of checkpoints in one engine batch;
    then each checkpoint's rows (without run and step), metadata step and
    warnings, as stored in the cache."""
    sources = [s for p in group for s in p.checkpoint.sources([(n, r, c) for n, r, c, _ in p.selected])]
    columns, errors = compute_batch(
        sources, power=options.power, normalize=options.normalize, method=options.method, need_rank=True, threads=options.threads
    ) if sources else ({}, [])
    failed = dict(errors)
    out = []
    offset = 0
    for pending in group:
        rows: list[dict[str, Any]] = []
        warnings: list[str] = list(pending.checkpoint.notes)
        for k, (name, r, c, dtype) in enumerate(pending.selected):
            i = offset + k
            if i in failed:
                warnings.append(f"tensor {name}: {_strip_index(str(failed[i]))}")
                continue
            for metric in WEIGHT_METRICS:
                finite = _finite_or_none(float(columns[metric][i]))
                rows.append({"tensor": name, "rows": r, "cols": c, "dtype": dtype, "metric": metric, "value": finite})
        offset += len(pending.selected)
        if representation is not None:
            try:
                value, (n, d) = representation.entropy(pending.checkpoint)
                rows.append({"tensor": "", "rows": n, "cols": d, "dtype": "float32", "metric": REPRESENTATION_METRIC, "value": value})
            except (ValueError, KeyError, RuntimeError) as error:
                warnings.append(f"representation entropy not computed: {error}")
        metrics = [[m.metric, m.step, m.value] for m in pending.checkpoint.metrics]
        out.append({"metadata_step": pending.checkpoint.metadata_step, "rows": rows, "warnings": warnings, "matrices": len(pending.selected), "metrics": metrics})
    return out


def _strip_index(message: str) -> str:
    """The engine names a failing matrix by its index in the batch; the
    scan names it by its tensor instead."""
    return re.sub(r"^matrix \d+ of \d+: ", "", message)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class _RepresentationProbe:
    """Rebuilds a grokspec run's model and its probe set, once per run."""

    def __init__(self, run: RunSpec):
        import torch

        from grokspec.lab.tasks import make_dataset, split_indices
        from grokspec.lab.models import build_model

        self.config = RunDir(run.root).read_config()
        dataset = make_dataset(self.config.task, self.config.p)
        train_idx, _ = split_indices(len(dataset), self.config.train_fraction, self.config.seed)
        self.probe = dataset.inputs[train_idx[: self.config.probe_size]].unsqueeze(0)  # (1, probe, 2)
        self.model = build_model(self.config, dataset.vocab_size, [self.config.seed]).eval()
        self.torch = torch

    def entropy(self, checkpoint: Checkpoint) -> tuple[float | None, tuple[int, int]]:
        from grokspec.spectral import representation_entropy

        names = self.model.parameter_names()
        arrays = checkpoint.arrays(names)
        self.model.load_seed_state_dict(0, {k: self.torch.from_numpy(v) for k, v in arrays.items()})
        with self.torch.no_grad():
            z = self.model.representation(self.probe)[0]  # (probe, d)
        return _finite_or_none(representation_entropy(z.numpy())), tuple(z.shape)  # type: ignore[return-value]


# --- training logs ---------------------------------------------------------------


def _log_rows(run: RunSpec, warnings: list[str]) -> list[dict[str, Any]]:
    if run.log is None:
        return []
    try:
        if run.kind == "grokspec":
            records = RunDir(run.root).read_metrics()
        else:
            records = [r for r in json.loads(run.log.read_text(encoding="utf-8")).get("log_history", []) if isinstance(r, dict)]
    except (OSError, ValueError, AttributeError) as error:
        warnings.append(f"{run.name}: cannot read {run.log.name}: {error}")
        return []
    return _metric_rows(run.name, run.log.name, records)


def _metric_rows(run: str, source: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        step = record.get("step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            continue
        for key, value in record.items():
            if key in ("step", "wall_seconds", "run") or isinstance(value, str) or value is None:
                continue
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)):
                continue
            rows.append({
                "run": run, "checkpoint": source, "step": int(step), "step_source": "log", "tensor": "",
                "rows": None, "cols": None, "dtype": "", "metric": key, "value": _finite_or_none(float(value)),
            })
    return rows


def _metrics_file_rows(path: Path, run_names: list[str]) -> list[dict[str, Any]]:
    """--metrics FILE: CSV or JSONL with `step` and metric columns; a `run`
    column assigns rows to runs, otherwise the metrics apply to every run."""
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=path.suffix.lower() == ".jsonl")
        else:
            frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ScanInputError(f"cannot read the metrics file {path}: {error}") from error
    if "step" not in frame.columns:
        raise ScanInputError(f"the metrics file {path} has no 'step' column (columns: {', '.join(map(str, frame.columns))})")
    records = frame.replace({np.nan: None}).to_dict("records")
    rows = []
    for name in run_names:
        mine = [r for r in records if "run" not in r or r["run"] in (None, name)]
        rows.extend(_metric_rows(name, path.name, mine))
    return rows
