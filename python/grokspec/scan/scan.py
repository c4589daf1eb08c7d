"""``grokspec scan``: checkpoint directories -> entropy trajectories and reports.

:func:`scan` finds the runs under a directory (:mod:`grokspec.scan.discovery`),
opens each checkpoint without trusting it (:mod:`grokspec.scan.formats`,
after :mod:`grokspec.scan.guards`), computes section 1's statistics of every
selected weight matrix through the engine's parallel batch
(:mod:`grokspec.scan.compute`) and, for grokspec runs, the representation
entropy H̃ of the probe set by one forward pass of the rebuilt model.
Training-log metrics join the same tidy table (:mod:`grokspec.scan.logs`).

One bad file never stops a scan: whatever goes wrong while one checkpoint
is opened, read or computed becomes a warning naming it
(:mod:`grokspec.scan.failures`), and it counts as failed; a group whose
batch fails is retried one checkpoint at a time, so its good checkpoints
are kept. docs/RELIABILITY.md lists what is guarded and how it is tested.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokspec.errors import GrokspecError
from grokspec.scan.cache import ScanCache, checkpoint_key
from grokspec.scan.compute import GROUP_BYTES, GROUP_CHECKPOINTS, WEIGHT_METRICS, Pending, selected_matrices
from grokspec.scan.compute import compute_group as _compute_group
from grokspec.scan.discovery import OUTPUT_DIR_NAME, CheckpointRef, RunSpec, discover
from grokspec.scan.failures import describe_failure
from grokspec.scan.foreign import find_foreign
from grokspec.scan.formats import TrainingStateFile, open_checkpoint
from grokspec.scan.guards import display_name
from grokspec.scan.logs import MAX_STEP, finite_or_none, log_rows, metrics_file_rows
from grokspec.scan.options import ScanOptions
from grokspec.scan.report import ScanReport, build_report, load_calibration
from grokspec.scan.representation import LazyProbe
from grokspec.scan.roles import SkippedFile
from grokspec.scan.shard_index import check_shard_index
from grokspec.scan.steps import resolve_steps
from grokspec.scan.subsample import subsample
from grokspec.scan.table import COLUMNS, ScanTable
from grokspec.spectral import MAX_THREADS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "WEIGHT_METRICS", "ScanInputError", "ScanOptions", "ScanResult", "default_output_dir", "scan"]

Progress = Callable[[int, int, str], None]
Identity = tuple[tuple[int, int, int, int], ...]


class ScanInputError(GrokspecError):
    """Nothing under the directory can be scanned at all."""


@dataclass
class ScanResult:
    #: The tidy long table (COLUMNS) as typed rows.
    rows: ScanTable
    #: Section 1's events per run and series.
    report: ScanReport
    warnings: list[str] = field(default_factory=list)
    #: Checkpoints that could not be read.
    failed_checkpoints: int = 0

    @cached_property
    def table(self) -> pd.DataFrame:
        """The tidy long table as a pandas DataFrame (built, and pandas
        imported, on first use)."""
        return self.rows.to_frame()


def default_output_dir(directory: Path) -> Path:
    return Path(directory) / OUTPUT_DIR_NAME


def check_options(options: ScanOptions) -> None:
    """ValueError (one line naming the option) for values outside their domain."""
    threads = options.threads
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"threads must lie between 1 and {MAX_THREADS}, got {threads!r}")
    power = options.power
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power) or power <= 0:
        raise ValueError(f"power must be a positive number, got {power!r}")
    if not isinstance(options.min_dim, int) or options.min_dim < 1:
        raise ValueError(f"min_dim must be a positive integer, got {options.min_dim!r}")
    if not isinstance(options.persist, int) or options.persist < 1:
        raise ValueError(f"persist must be a positive integer, got {options.persist!r}")


def scan(
    directory: str | Path,
    options: ScanOptions | None = None,
    *,
    cache_path: Path | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Scans every run under `directory`. `cache_path=None` disables caching.
    Raises ScanInputError when nothing can be scanned at all, ValueError for
    options outside their domain; every problem with one file is a warning."""
    options = options or ScanOptions()
    check_options(options)
    directory = Path(directory)
    if not directory.is_dir():
        raise ScanInputError(f"{display_name(str(directory))} is not a directory")
    runs, found_warnings, skipped = discover(directory)
    warnings = [display_name(w) for w in found_warnings]
    runs = [_printable(r) for r in runs if r.checkpoints or r.log]
    runs = subsample(runs, options)  # --every / --steps (scan.subsample)
    if not runs:
        # What discovery did find (model-parallel partitions, training state) is the likely answer.
        found = warnings[:3]
        if skipped:
            found.append(f"skipped {len(skipped)} file(s) of training state ({skipped[0].path}, ...)")
        foreign = find_foreign(directory)
        if foreign:
            names = ", ".join(f"{display_name(f.path)} ({f.format})" for f in foreign)
            found.append(f"found weights in formats grokspec does not read (it reads PyTorch and safetensors): {names}")
        raise ScanInputError(
            f"no checkpoints found under {display_name(str(directory))} "
            "(looked for grokspec runs, checkpoint-N/ dirs, .safetensors, .pt/.pth/.bin/.pth.tar, .ckpt, .npz, "
            "torch.distributed checkpoint folders)" + "".join(f"; {line}" for line in found)
        )
    calibration = load_calibration(options.calibration) if options.calibration else None
    done = _Counter(sum(len(r.checkpoints) for r in runs), progress)
    rows: list[dict[str, Any]] = []
    failed = 0
    with ScanCache(cache_path) as cache:
        for run in runs:
            scanner = _RunScan(run, options, cache, done, skipped, directory)
            try:
                rows.extend(scanner.run())
                failed += scanner.failed
            except Exception as error:  # a bug outside any one checkpoint: this run is lost, not the scan
                scanner.warnings.append(f"{run.name}: the run could not be scanned: {describe_failure(error)}")
                failed += len(run.checkpoints)
            warnings.extend(scanner.warnings)
            rows.extend(log_rows(run, warnings, options.keeps_tensor if options.uses_logged_weight_entropies() else None))
        warnings.extend(cache.warnings)
    if options.metrics_file is not None:
        try:
            rows.extend(metrics_file_rows(Path(options.metrics_file), [r.name for r in runs]))
        except ValueError as error:
            raise ScanInputError(str(error)) from error
    table = ScanTable.from_records(rows)
    report = build_report(table, runs, options, calibration, warnings, failed, skipped)
    return ScanResult(table, report, warnings, failed)


def _printable(run: RunSpec) -> RunSpec:
    """Names that any output can hold (file names need not be UTF-8)."""
    refs = tuple(dataclasses.replace(ref, label=display_name(ref.label)) for ref in run.checkpoints)
    return dataclasses.replace(run, name=display_name(run.name), checkpoints=refs)


class _Counter:
    """Progress over all runs: checkpoints done and the matrix rate."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress = total, progress
        self.checkpoints = self.matrices = 0
        self.started = time.perf_counter()

    def __call__(self, matrices: int) -> None:
        self.checkpoints += 1
        self.matrices += matrices
        if self.progress:
            rate = self.matrices / max(time.perf_counter() - self.started, 1e-9)
            self.progress(self.checkpoints, self.total, f"{rate:.0f} matrices/s")


# --- one run -------------------------------------------------------------------


def _identity(files: tuple[Path, ...]) -> Identity:
    """What says a file is still the one that was opened."""
    out = []
    for path in files:
        status = os.stat(path)
        out.append((status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns))
    return tuple(out)


class _RunScan:
    """The checkpoints of one run: cached, opened, computed in groups; each
    failure a warning naming the checkpoint."""

    def __init__(
        self, run: RunSpec, options: ScanOptions, cache: ScanCache, done: _Counter, skipped: list[SkippedFile], base: Path
    ) -> None:
        self.run_spec, self.options, self.cache, self.done = run, options, cache, done
        self.skipped, self.base = skipped, base
        self.fingerprint = options.fingerprint()
        self.probe = LazyProbe(run.root, run.name, options.representation and run.kind == "grokspec")
        self.values: dict[int, dict[str, Any]] = {}
        self.group: list[Pending] = []
        self.warnings: list[str] = []
        self.failed = 0

    def run(self) -> list[dict[str, Any]]:
        for position, ref in enumerate(self.run_spec.checkpoints):
            pending = self._open(position, ref)
            if pending is None:
                continue
            too_many = len(self.group) >= GROUP_CHECKPOINTS
            if self.group and (too_many or sum(p.bytes for p in self.group) + pending.bytes > GROUP_BYTES):
                self._flush()
            self.group.append(pending)
        self._flush()
        if self.probe.warning:
            self.warnings.insert(0, self.probe.warning)
        return self._rows()

    def _fail(self, ref: CheckpointRef, error: BaseException | str) -> None:
        reason = error if isinstance(error, str) else describe_failure(error)
        self.warnings.append(f"{self.run_spec.name}: {ref.label}: {reason}")
        self.failed += 1
        self.done(0)

    def _open(self, position: int, ref: CheckpointRef) -> Pending | None:
        """The checkpoint opened (None: cached, skipped or failed)."""
        try:
            if ref.path.name.endswith(".index.json"):
                check_shard_index(ref.path)  # before the files it names are even looked at
            key = checkpoint_key(ref.files, ref.cache_options(self.fingerprint))
            cached = self.cache.get(key)
            if cached is not None and _valid_cached(cached):
                self.values[position] = cached
                self.done(0)
                return None
            identity = _identity(ref.files)
            checkpoint = open_checkpoint(ref.path, trust_pickle=self.options.trust_pickle, entry=ref.entry)
            return Pending(position, ref, key, identity, checkpoint, selected_matrices(checkpoint, self.options))
        except TrainingStateFile as state:
            self.skipped.append(SkippedFile(_relative(ref.path, self.base), state.role, state.reason))
            self.done(0)
        except Exception as error:  # one bad file never stops the scan
            self._fail(ref, error)
        return None

    def _flush(self) -> None:
        """Computes the group; a failed batch is retried one checkpoint at a time."""
        group = [p for p in self.group if self._unchanged(p)]
        self.group = []
        if not group:
            return
        try:
            results = _compute_group(group, self.options, self.probe.get())
        except Exception as error:
            if len(group) == 1:
                self._fail(group[0].ref, error)
                return
            for pending in group:
                self.group = [pending]
                self._flush()
            return
        for pending, value in zip(group, results):
            self.cache.put(pending.key, value)
            self.values[pending.position] = value
            self.done(int(value["matrices"]))

    def _unchanged(self, pending: Pending) -> bool:
        """False (and a warning) when a file changed or vanished since it was opened."""
        try:
            if _identity(pending.ref.files) == pending.identity:
                return True
            reason = "changed on disk while it was being scanned; scan again to include it"
        except OSError:
            reason = "was deleted while it was being scanned"
        self._fail(pending.ref, reason)
        return False

    def _rows(self) -> list[dict[str, Any]]:
        name = self.run_spec.name
        results = [(ref, self.values[i]) for i, ref in enumerate(self.run_spec.checkpoints) if i in self.values]
        for ref, value in results:
            self.warnings.extend(f"{name}: {ref.label}: {display_name(str(w))}" for w in value["warnings"])
        items = [self._bounded(ref, value["metadata_step"]) for ref, value in results]
        steps, step_warnings, duplicates, unplaced = resolve_steps(items)
        self.warnings.extend(f"{name}: {w}" for w in step_warnings)
        for i, kept in duplicates:
            self.skipped.append(SkippedFile(_relative(results[i][0].path, self.base), "duplicate", f"the same step as {kept}"))
        for i in unplaced:
            reason = "a copy (best or last) of one of the run's checkpoints that does not record its step; scan it alone"
            self.skipped.append(SkippedFile(_relative(results[i][0].path, self.base), "alias", reason))
        rows: list[dict[str, Any]] = []
        seen_metrics: set[tuple[str, int]] = set()
        for (ref, value), resolved in zip(results, steps):
            if resolved is None:
                continue
            step, source = resolved
            for row in value["rows"]:
                rows.append({"run": name, "checkpoint": ref.label, "step": step, "step_source": source, **row})
            rows.extend(_checkpoint_metric_rows(name, ref.label, step, value.get("metrics", []), seen_metrics))
        if results and not any(row["tensor"] for row in rows):
            self.warnings.append(f"{name}: no weight matrix found in any of its {len(results)} checkpoints")
        return rows

    def _bounded(self, ref: CheckpointRef, metadata_step: Any) -> tuple[CheckpointRef, tuple[int, str] | None]:
        """Steps outside 0..2**63-1 (a table column is 64-bit) are dropped with a warning."""
        where = f"{self.run_spec.name}: {ref.label}"
        if metadata_step is not None and not 0 <= int(metadata_step[0]) <= MAX_STEP:
            self.warnings.append(f"{where}: the step in its metadata is out of range (0 to 2**63-1); ignored")
            metadata_step = None
        if ref.name_step is not None and not 0 <= ref.name_step <= MAX_STEP:
            self.warnings.append(f"{where}: the step in its name is out of range (0 to 2**63-1); ignored")
            ref = dataclasses.replace(ref, name_step=None)
        return ref, (None if metadata_step is None else (int(metadata_step[0]), str(metadata_step[1])))


def _relative(path: Path, base: Path) -> str:
    try:
        return display_name(str(path.relative_to(base)))
    except ValueError:
        return display_name(str(path))


def _valid_cached(value: Any) -> bool:
    """A cache entry this version can use (a damaged one is recomputed)."""
    if not isinstance(value, dict) or not isinstance(value.get("rows"), list) or not isinstance(value.get("warnings"), list):
        return False
    if not isinstance(value.get("matrices"), int) or not isinstance(value.get("metrics", []), list):
        return False
    step = value.get("metadata_step")
    if step is not None and not (
        isinstance(step, list) and len(step) == 2 and isinstance(step[0], int) and isinstance(step[1], str)
    ):
        return False
    keys = {"tensor", "rows", "cols", "dtype", "metric", "value"}
    return all(isinstance(row, dict) and keys <= row.keys() for row in value["rows"])


def _checkpoint_metric_rows(
    run: str, label: str, step: int, points: list[Any], seen: set[tuple[str, int]]
) -> list[dict[str, Any]]:
    """Loss/accuracy values a checkpoint file keeps, at its own step or at the
    step each names; a (metric, step) already seen in the run is not repeated."""
    rows = []
    for point in points:
        try:
            metric, at, value = point
            where = (str(metric), step if at is None else int(at))
            number = finite_or_none(float(value))
        except (TypeError, ValueError, OverflowError):
            continue
        if where not in seen and 0 <= where[1] <= MAX_STEP:
            seen.add(where)
            rows.append({
                "run": run, "checkpoint": label, "step": where[1], "step_source": "log", "tensor": "",
                "rows": None, "cols": None, "dtype": "", "metric": display_name(where[0]), "value": number,
            })  # fmt: skip
    return rows
