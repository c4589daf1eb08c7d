"""Finding runs and their checkpoints under a directory (SPEC §5).

A run is one series of checkpoints:

- a grokspec run dir (``config.json`` + ``checkpoints/step_*.safetensors``,
  metrics in ``metrics.jsonl``);
- a Hugging Face Trainer output dir: its ``checkpoint-N/`` subdirectories
  (weights: sharded or single safetensors, else ``pytorch_model.bin``),
  metrics in the newest ``trainer_state.json``;
- otherwise, the checkpoint files of one directory whose names differ only
  in their numbers (``step_100.pt``, ``step_200.pt``, ``init.pt`` form one
  run; ``a_step100.pt`` and ``b_step100.pt`` form two).

Steps from names follow SPEC §5's patterns; the metadata inside a file,
when present, wins (it is read when the file is opened).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from grokspec.lab.rundir import RunDir, is_run_dir
from grokspec.scan import guards

__all__ = ["CheckpointRef", "RunSpec", "discover", "step_from_name", "OUTPUT_DIR_NAME"]

#: scan's default output folder, never scanned itself.
OUTPUT_DIR_NAME = "grokspec-scan"
_EXTENSIONS = (".safetensors.index.json", ".bin.index.json", ".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz")
_HF_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_HF_WEIGHTS = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
    "adapter_model.safetensors",
)
_NAME_PATTERNS = (
    re.compile(r"checkpoint-(\d+)$"),
    re.compile(r"step[=_-]?(\d+)"),
    re.compile(r"^(\d+)$"),
)


@dataclass(frozen=True)
class CheckpointRef:
    #: The file to open (a weights file, or a shard index).
    path: Path
    #: How the checkpoint is named in the table (relative to the run's root).
    label: str
    #: The step its name carries, if any.
    name_step: int | None
    #: Every file it is made of (its identity for the cache).
    files: tuple[Path, ...]


@dataclass(frozen=True)
class RunSpec:
    #: The run's name in the table: its directory relative to the scanned one.
    name: str
    root: Path
    #: "grokspec", "huggingface" or "files".
    kind: str
    checkpoints: tuple[CheckpointRef, ...]
    #: metrics.jsonl or trainer_state.json, when the run has one.
    log: Path | None


def _stem(name: str) -> str | None:
    for extension in _EXTENSIONS:
        if name.endswith(extension):
            return name[: -len(extension)]
    return None


def step_from_name(stem: str) -> int | None:
    """step_1000, checkpoint-1000, epoch=3-step=1000, 1000, step1000 -> 1000; init -> 0."""
    for pattern in _NAME_PATTERNS:
        match = pattern.search(stem)
        if match:
            return int(match.group(1))
    if stem.lower() in ("init", "initial", "initialization"):
        return 0
    return None


def _group_key(stem: str) -> str:
    """The name with every number (and 'init') replaced: files of one series
    share it. Files without any number (last.pt, best.pt) form one series
    per directory, ordered by modification time."""
    if stem.lower() in ("init", "initial", "initialization"):
        return "#"
    if not re.search(r"\d", stem):
        return "*"
    return re.sub(r"\d+", "#", stem)


def _shard_files(index: Path) -> tuple[Path, ...]:
    if not guards.is_small_regular_file(index):  # a FIFO would block discovery; opening reports it
        return (index,)
    try:
        names = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        return tuple(sorted({index.parent / n for n in names}))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return (index,)


def _ref(path: Path, root: Path, name_step: int | None) -> CheckpointRef:
    files = _shard_files(path) + (path,) if path.name.endswith(".index.json") else (path,)
    return CheckpointRef(path, str(path.relative_to(root)), name_step, files)


def _name(path: Path, base: Path) -> str:
    """The run's name: its path below the scanned dir, or that dir's own name."""
    relative = str(path.relative_to(base))
    return base.resolve().name if relative == "." else relative


def discover(directory: Path) -> tuple[list[RunSpec], list[str]]:
    """All runs under `directory`, and warnings about what was skipped."""
    directory = Path(directory)
    runs: list[RunSpec] = []
    warnings: list[str] = []
    for current, dirnames, filenames in os.walk(directory, onerror=lambda e: warnings.append(f"cannot list {e.filename}: {e.strerror}")):
        here = Path(current)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != OUTPUT_DIR_NAME)
        if is_run_dir(here):
            run_dir = RunDir(here)
            refs = tuple(_ref(path, here, step) for step, path in run_dir.list_checkpoints())
            runs.append(RunSpec(_name(here, directory), here, "grokspec", refs, run_dir.metrics_path if run_dir.metrics_path.exists() else None))
            dirnames[:] = []
            continue
        hf = sorted((int(m.group(1)), d) for d in dirnames if (m := _HF_CHECKPOINT.match(d)))
        if hf:
            hf_refs: list[CheckpointRef] = []
            for step, name in hf:
                checkpoint_dir = here / name
                weights = next((checkpoint_dir / w for w in _HF_WEIGHTS if (checkpoint_dir / w).exists()), None)
                if weights is None:
                    warnings.append(f"{_name(checkpoint_dir, directory)}: no model weights found (looked for {', '.join(_HF_WEIGHTS)})")
                    continue
                hf_refs.append(_ref(weights, here, step))
            newest_state = next(
                (here / name / "trainer_state.json" for _, name in reversed(hf) if (here / name / "trainer_state.json").exists()), None
            )
            if hf_refs:
                runs.append(RunSpec(_name(here, directory), here, "huggingface", tuple(hf_refs), newest_state))
            dirnames[:] = [d for d in dirnames if not _HF_CHECKPOINT.match(d)]
        runs.extend(_file_runs(here, sorted(filenames), directory))
    return runs, warnings


def _file_runs(here: Path, filenames: list[str], base: Path) -> list[RunSpec]:
    """Checkpoint files of one directory, grouped into series by name."""
    candidates = [(name, stem) for name in filenames if (stem := _stem(name)) is not None]
    # Shards listed in an index belong to the index's checkpoint.
    sharded = {p.name for name, _ in candidates if name.endswith(".index.json") for p in _shard_files(here / name)}
    groups: dict[str, list[CheckpointRef]] = {}
    for name, stem in candidates:
        if name in sharded:
            continue
        groups.setdefault(_group_key(stem), []).append(_ref(here / name, here, step_from_name(stem)))
    runs = []
    for key, refs in sorted(groups.items()):
        name = _name(here, base)
        if len(groups) > 1:
            name = f"{name}/{key}"
        runs.append(RunSpec(name, here, "files", tuple(refs), None))
    return runs
