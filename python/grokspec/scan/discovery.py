"""Finding runs and their checkpoints under a directory (SPEC §5).

A run is one series of checkpoints:

- a grokspec run dir (``config.json`` + ``checkpoints/step_*.safetensors``,
  metrics in ``metrics.jsonl``);
- a directory of checkpoint folders (:mod:`grokspec.scan.layouts`: the
  Hugging Face Trainer's ``checkpoint-N/`` with metrics from
  ``trainer_state.json``, accelerate's ``checkpoint_K/``, DeepSpeed's
  ``global_stepN/``, ...), with the final model at its root placed in the
  series;
- otherwise, the checkpoint files of one directory whose names differ only
  in their numbers (``step_100.pt``, ``step_200.pt``, ``init.pt`` form one
  run; ``a_step100.pt`` and ``b_step100.pt`` form two; Lightning's
  ``last.ckpt`` and a ``final.pth`` join the one numbered series beside them);
- a file that holds many checkpoints (:mod:`grokspec.scan.multi`) is a run
  whose checkpoints are its entries;
- a torch.distributed checkpoint folder (:mod:`grokspec.scan.dcp`) is one
  checkpoint, treated as a file of its parent (``step_100/``, ``step-100/``,
  Lightning's ``epoch=0-step=100.ckpt/`` form series by name), never walked into;
- a Ray Train run folder or Ray Tune trial (:mod:`grokspec.scan.ray_results`): its
  checkpoint folders at the steps of the reports that saved them, its reports' metrics;
- a repo in the Hugging Face Hub's download cache (:mod:`grokspec.scan.hub_cache`):
  its snapshots are the checkpoints, their steps from the revisions' names.

Training state (optimizer, scheduler, RNG, arguments) is never a checkpoint:
it is listed as skipped (:mod:`grokspec.scan.roles`). Steps from names follow
:mod:`grokspec.scan.steps`; a checkpoint folder scanned on its own gets the
step its name gives, as when its parent is scanned. The metadata inside a
file, when present, wins (it is read when the file is opened).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from grokspec.lab.rundir import RunDir, is_run_dir
from grokspec.scan import dcp, guards, hub_cache, mlflow_logs, ray_results, tensorboard, wandb_logs
from grokspec.scan.final_model import final_model_step
from grokspec.scan.guards import MAX_FOLDER_DEPTH
from grokspec.scan.layouts import (
    WEIGHT_NAMES,
    Candidate,
    FolderSeries,
    checkpoint_folder_candidates,
    checkpoint_names,
    folder_candidates,
    folder_series,
    group_key,
    megatron_partitions,
    model_parallel_files,
    model_parallel_warning,
    relative,
    shard_files,
    stem,
)
from grokspec.scan.pickled import PICKLE_SUFFIXES, count_entries
from grokspec.scan.roles import SkippedFile
from grokspec.scan.steps import folder_step, is_alias_name, step_from_name, trainer_state_step

__all__ = ["OUTPUT_DIR_NAME", "CheckpointRef", "Discovery", "RunSpec", "discover", "step_from_name"]

#: scan's default output folder, never scanned itself.
OUTPUT_DIR_NAME = "grokspec-scan"


@dataclass(frozen=True)
class CheckpointRef:
    #: The file to open (a weights file, or a shard index).
    path: Path
    #: How the checkpoint is named in the table (relative to the run's root).
    label: str
    #: The step its name (or layout) gives, if any.
    name_step: int | None
    #: Every file it is made of (its identity for the cache).
    files: tuple[Path, ...]
    #: Where name_step comes from: "name", "order" (accelerate's save counter), "trainer_state".
    step_source: str = "name"
    #: Which checkpoint of a file that holds many (None: the file is one checkpoint).
    entry: int | None = None

    def cache_options(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        """The cache key's options: an entry of a many-checkpoint file is its own result."""
        return fingerprint if self.entry is None else {**fingerprint, "entry": self.entry}


@dataclass(frozen=True)
class RunSpec:
    #: The run's name in the table: its directory relative to the scanned one.
    name: str
    root: Path
    #: "grokspec", "huggingface", "accelerate", "deepspeed", "lightning", "ray", "folders", "hub_cache", "multi"
    #: or "files".
    kind: str
    checkpoints: tuple[CheckpointRef, ...]
    #: metrics.jsonl, trainer_state.json or Ray's report log, when the run has one.
    log: Path | None
    #: A grokspec callback's metrics.jsonl beside a library's checkpoints (read as well as `log`).
    extra_logs: tuple[Path, ...] = ()


class Discovery(NamedTuple):
    runs: list[RunSpec]
    warnings: list[str]
    #: Files found and deliberately not scanned (training state, duplicates).
    skipped: list[SkippedFile]


def _name(path: Path, base: Path) -> str:
    """The run's name: its path below the scanned dir, or that dir's own name."""
    relative_name = str(path.relative_to(base))
    return base.resolve().name if relative_name == "." else relative_name


def discover(directory: Path) -> Discovery:
    """All runs under `directory`, warnings, and what was skipped."""
    directory = Path(directory)
    found = Discovery([], [], [])
    for current, dirnames, filenames in os.walk(
        directory, onerror=lambda e: found.warnings.append(f"cannot list {e.filename}: {e.strerror}")
    ):
        here = Path(current)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != OUTPUT_DIR_NAME)
        if dirnames and len(here.relative_to(directory).parts) >= MAX_FOLDER_DEPTH:
            found.warnings.append(f"{_name(here, directory)}: folders more than {MAX_FOLDER_DEPTH} levels deep are not searched")
            dirnames[:] = []
        if dcp.is_dcp_folder(here):  # scanned on its own (below, a parent takes its DCP folders as files)
            ref = CheckpointRef(here, here.name, step_from_name(here.name), dcp.checkpoint_files(here))
            found.runs.append(RunSpec(_name(here, directory), here, "files", (ref,), None))
            dirnames[:] = []
            continue
        if any(n.endswith(dcp.DATA_SUFFIX) for n in filenames):  # DCP data without its metadata
            found.warnings.append(
                f"{_name(here, directory)}: .distcp files without {dcp.METADATA_NAME} "
                "(an unfinished torch.distributed save?): not scanned"
            )
        partitions = megatron_partitions(dirnames)
        if len(partitions) > 1:  # slices of the matrices, never scanned one by one
            found.warnings.append(model_parallel_warning(here, partitions, directory))
            dirnames[:] = [d for d in dirnames if d not in partitions]
        # torch.distributed checkpoint folders are checkpoints, as files are: never walked into.
        distributed = [d for d in dirnames if dcp.is_dcp_folder(here / d)]
        dirnames[:] = [d for d in dirnames if d not in distributed]
        if hub_cache.is_repo(here, dirnames):
            _hub_runs(here, directory, found)
            dirnames[:] = []
            continue
        if is_run_dir(here):
            run_dir = RunDir(here)
            refs = tuple(_ref(path, here, step) for step, path in run_dir.list_checkpoints())
            metrics = run_dir.metrics_path if run_dir.metrics_path.exists() else None
            found.runs.append(RunSpec(_name(here, directory), here, "grokspec", refs, metrics))
            dirnames[:] = []
            continue
        filenames = sorted(filenames + distributed)
        split_files = model_parallel_files(filenames)
        if split_files:
            found.warnings.append(model_parallel_warning(here, split_files, directory))
            filenames = [n for n in filenames if n not in split_files]
        ray_steps, problem = ray_results.folder_steps(here, filenames)
        found.warnings.extend(f"{_name(here, directory)}: {p}" for p in problem)
        series = folder_series(here, dirnames, directory, ray_steps)
        if series is not None:
            claimed = {e.folder.name for e in series.entries}
            dirnames[:] = [d for d in dirnames if d not in claimed]
            filenames, finals = _folder_runs(here, series, filenames, dirnames, directory, found)
            dirnames[:] = [d for d in dirnames if d not in finals]
        _file_runs(here, filenames, directory, found)
    return found


def _ref(
    path: Path, root: Path, name_step: int | None, source: str = "name", files: tuple[Path, ...] | None = None
) -> CheckpointRef:
    if files is None:
        files = shard_files(path)[0] if path.name.endswith(".index.json") else (path,)
    return CheckpointRef(path, str(path.relative_to(root)), name_step, files, source)


def _folder_runs(
    here: Path, series: FolderSeries, filenames: list[str], subfolders: list[str], base: Path, found: Discovery
) -> tuple[list[str], set[str]]:
    """Runs of a directory of checkpoint folders; returns the root's files left
    for file runs and the root's subfolders it claimed (a pipeline's final models)."""
    found.skipped.extend(series.skipped)
    found.warnings.extend(series.warnings)
    name = _name(here, base)
    by_series: dict[str, list[CheckpointRef]] = {}
    for entry in series.entries:
        for candidate in entry.candidates:
            by_series.setdefault(candidate.series, []).append(
                _ref(candidate.path, here, entry.step, entry.step_source, candidate.files)
            )
    root_weights, rest, skipped, warnings = _root_final_model(here, filenames, base)
    found.skipped.extend(skipped)
    found.warnings.extend(warnings)
    components = _root_components(here, set(by_series), subfolders, base, found)
    apart: list[Candidate] = []  # final models at no step of the series: runs of their own
    for final in ([root_weights] if root_weights is not None else []) + components:
        step, duplicate = final_model_step(here, series, final)
        if duplicate is not None:
            found.skipped.append(
                SkippedFile(relative(final.path, base), "duplicate", f"the final model, the same step ({step}) as {duplicate}/")
            )
        elif step is not None:
            by_series.setdefault(final.series, []).append(_ref(final.path, here, step, "trainer_state", final.files))
        else:
            apart.append(final)
    single = len(by_series) == 1
    for final in apart:
        run_name = f"{name}/final" if single or not final.series else f"{name}/{final.series}/final"
        found.runs.append(RunSpec(run_name, here, series.kind, (_ref(final.path, here, None, "name", final.files),), None))
    log = ray_results.log_file(here, filenames) or (
        here / "trainer_state.json" if (here / "trainer_state.json").is_file() else _newest_state(series)
    )
    extra = _callback_log(here)
    for key, refs in sorted(by_series.items()):
        refs.sort(key=lambda r: (r.name_step if r.name_step is not None else -1, r.label))
        run_name = name if not key or single else f"{name}/{key}"
        owns_logs = single or not key  # the logs belong to the model's series, or to the only one
        logs = (log, extra) if owns_logs else (None, ())
        found.runs.append(RunSpec(run_name, here, series.kind, tuple(refs), *logs))
    return rest, {c.path.parent.name for c in components}


def _root_components(here: Path, keys: set[str], subfolders: list[str], base: Path, found: Discovery) -> list[Candidate]:
    """The final models a pipeline keeps in subfolders of the output folder
    (diffusers: ``unet/`` beside ``checkpoint-N/unet/``), one per series of that name."""
    out: list[Candidate] = []
    for key in sorted(keys & set(subfolders)):
        folder = here / key
        try:
            names = sorted(p.name for p in folder.iterdir() if p.is_file())
        except OSError as error:
            found.warnings.append(f"cannot list {folder}: {error.strerror}")
            continue
        candidates, skipped, warnings = folder_candidates(folder, names, base)
        weights = next((c for c in candidates if c.series == ""), None)
        if weights is not None:
            found.skipped.extend(skipped)
            found.warnings.extend(warnings)
            out.append(Candidate(weights.path, weights.files, key))
    return out


def _hub_runs(repo: Path, base: Path, found: Discovery) -> None:
    """A cached Hub repo: snapshots with a numbered revision form the repo's series (one per
    model of a pipeline: ``unet/``, ``text_encoder/``); each other snapshot is a run of its own
    (the only snapshot keeps the repo's name)."""
    revisions, warnings = hub_cache.revisions(repo)
    name = _name(repo, base)
    found.warnings.extend(f"{name}: {w}" for w in warnings)
    by_series: dict[str, list[CheckpointRef]] = {}
    alone: list[CheckpointRef] = []
    for revision in revisions:
        try:
            names = checkpoint_names(revision.folder)
        except OSError as error:
            found.warnings.append(f"cannot list {revision.folder}: {error.strerror}")
            continue
        candidates, skipped, candidate_warnings = checkpoint_folder_candidates(revision.folder, names, base)
        found.skipped.extend(skipped)
        found.warnings.extend(candidate_warnings)
        for candidate in candidates:
            label = revision.name if candidate.series == "" else f"{revision.name}/{candidate.series}"
            ref = CheckpointRef(candidate.path, label, revision.step, candidate.files)
            if revision.step is None:
                alone.append(ref)
            else:
                by_series.setdefault(candidate.series, []).append(ref)
    for key, refs in sorted(by_series.items()):
        refs.sort(key=lambda r: (r.name_step, r.label))
        run_name = name if not key or len(by_series) == 1 else f"{name}/{key}"
        found.runs.append(RunSpec(run_name, repo, "hub_cache", tuple(refs), None))
    for ref in alone:
        run_name = name if not by_series and len(alone) == 1 else f"{name}/{ref.label}"
        found.runs.append(RunSpec(run_name, repo, "hub_cache", (ref,), None))


def _callback_log(here: Path) -> tuple[Path, ...]:
    """metrics.jsonl that grokspec's Trainer/Lightning callbacks keep beside the checkpoints,
    and the logger files of Lightning's ``version_N/checkpoints/`` folder: the CSVLogger's
    ``version_N/metrics.csv``, the TensorBoardLogger's ``version_N/events.out.tfevents.*``,
    the MLFlowLogger's and the WandbLogger's run metrics (``mlflow_logs``, ``wandb_logs``)."""
    logs = [here / "metrics.jsonl"]
    if here.name == "checkpoints":
        logs.append(here.parent / "metrics.csv")
        with contextlib.suppress(OSError):  # TensorBoardLogger's event files (several when resumed)
            logs += sorted(p for p in here.parent.iterdir() if tensorboard.is_event_file(p.name))
    return tuple(path for path in logs if guards.is_regular_file(path)) + mlflow_logs.run_logs(here) + wandb_logs.run_logs(here)


def _newest_state(series: FolderSeries) -> Path | None:
    for entry in reversed(series.entries):
        if (entry.folder / "trainer_state.json").is_file():
            return entry.folder / "trainer_state.json"
    return None


def _root_final_model(
    here: Path, filenames: list[str], base: Path
) -> tuple[Candidate | None, list[str], list[SkippedFile], list[str]]:
    """The final model an HF output folder keeps at its root (beside its
    checkpoint folders), its training state, and the root files left over."""
    if not any(n in WEIGHT_NAMES for n in filenames):
        return None, filenames, [], []
    candidates, skipped, warnings = folder_candidates(here, filenames, base)
    final = next((c for c in candidates if c.series == ""), None)
    used = {p.name for c in candidates if c.series == "" for p in c.files} | {s.path.rsplit("/", 1)[-1] for s in skipped}
    return final, [n for n in filenames if n not in used], skipped, warnings


def _file_runs(here: Path, filenames: list[str], base: Path, found: Discovery) -> None:
    """Checkpoint files of one directory, grouped into series by name."""
    candidates, skipped, warnings = folder_candidates(here, filenames, base)
    found.skipped.extend(skipped)
    found.warnings.extend(warnings)
    if not candidates:
        return
    # A folder named as a checkpoint (checkpoint-60/, scanned on its own)
    # gives its files the step it gives them when its parent is scanned.
    own_step = folder_step(here.name)
    if own_step is None:  # a Hub cache snapshot: the step its revision's name gives
        own_step = hub_cache.snapshot_step(here)
    if own_step is None:  # a model's subfolder of a checkpoint folder (checkpoint-N/unet/)
        own_step = folder_step(here.parent.name)
    own_source = (
        "order" if here.name.startswith("checkpoint_") and any(n.startswith("random_states_") for n in filenames) else "name"
    )
    state_step = trainer_state_step(here)
    groups: dict[str, list[CheckpointRef]] = {}
    for candidate in candidates:
        file_stem = stem(candidate.path.name) or candidate.path.name
        step, source = step_from_name(file_stem), "name"
        if step is None and own_step is not None:
            step, source = own_step, own_source
        elif step is None and state_step is not None and candidate.path.name in WEIGHT_NAMES:
            step, source = state_step, "trainer_state"
        key = group_key(file_stem)
        groups.setdefault(key, []).append(_ref(candidate.path, here, step, source, candidate.files))
    name = _name(here, base)
    log = here / "trainer_state.json" if (here / "trainer_state.json").is_file() else None
    multi = {key: _split_multi(refs, key) for key, refs in groups.items()}
    groups = {key: rest for key, (_, rest) in multi.items() if rest}
    _join_aliases(groups)  # after the files holding whole runs are set apart: those are no series to join
    whole = [(ref, entries) for found_multi, _ in multi.values() for ref, entries in found_multi]
    for ref, entries in whole:
        alone = len(whole) == 1 and not groups
        found.runs.append(RunSpec(name if alone else f"{name}/{ref.label}", here, "multi", entries, None))
    for key, refs in sorted(groups.items()):
        run_name = name if len(groups) == 1 and not whole else f"{name}/{key}"
        lightning = all(r.path.name.endswith(".ckpt") for r in refs)
        kind = "huggingface" if log is not None else "lightning" if lightning else "files"
        found.runs.append(RunSpec(run_name, here, kind, tuple(refs), log, _callback_log(here) if len(groups) == 1 else ()))


def _join_aliases(groups: dict[str, list[CheckpointRef]]) -> None:
    """last.ckpt, final.pth, latest-rank0.pt, model_best.pth.tar, ... join the one
    numbered series of their directory (names: :func:`~grokspec.scan.steps.is_alias_name`)."""
    aliases = [r for refs in groups.values() for r in refs if is_alias_name(stem(r.path.name) or r.path.name)]
    rest = {key: [r for r in refs if r not in aliases] for key, refs in groups.items()}
    numbered = [key for key, refs in rest.items() if refs and "#" in key]
    if not aliases or len(numbered) != 1:
        return
    groups.clear()
    groups.update({key: refs for key, refs in rest.items() if refs})
    groups[numbered[0]].extend(aliases)


def _split_multi(
    refs: list[CheckpointRef], key: str
) -> tuple[list[tuple[CheckpointRef, tuple[CheckpointRef, ...]]], list[CheckpointRef]]:
    """The files of a series that hold many checkpoints (each with its entries),
    and the rest. Files without a number are each looked into; a numbered
    series only through its first file (one look, however long the series)."""
    looked = refs if key == "*" else refs[:1]
    counts = {id(r): count_entries(r.path) if r.path.name.endswith(PICKLE_SUFFIXES) else None for r in looked}
    if not any(counts.values()):
        return [], refs
    if key != "*":
        counts = {id(r): count_entries(r.path) if r.path.name.endswith(PICKLE_SUFFIXES) else None for r in refs}
    whole = []
    for ref in refs:
        count = counts.get(id(ref))
        if count:
            entries = tuple(CheckpointRef(ref.path, f"{ref.label}#{i}", None, ref.files, "name", i) for i in range(count))
            whole.append((ref, entries))
    return whole, [r for r in refs if not counts.get(id(r))]
