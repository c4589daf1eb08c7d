"""The step of a checkpoint from the conventions the field uses (SPEC §5).

Names, of a file or of the folder that holds it: ``checkpoint-N`` (Hugging
Face Trainer), ``checkpoint_N``, ``global_stepN`` (DeepSpeed), ``step_N`` /
``stepN`` / ``step=N``, ``epoch=E-step=S`` (Lightning: S), ``epoch_N`` /
``epochN`` (epochs are the step unit of such runs), a bare ``N``, and
``init`` = 0. ``trainer_state.json`` (in the folder or its parent) gives
``global_step``. The metadata inside a checkpoint (``step``,
``global_step``, ``epoch``; read when it is opened) wins over all of these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from grokspec.scan import guards

__all__ = ["INIT_NAMES", "folder_step", "resolve_steps", "step_from_name", "trainer_state_step"]

INIT_NAMES = frozenset({"init", "initial", "initialization", "init_model", "initial_model"})
_PATTERNS = (
    re.compile(r"checkpoint[-_](\d+)$"),
    re.compile(r"step[=_-]?(\d+)"),
    re.compile(r"epoch[=_-]?(\d+)"),
    re.compile(r"^(\d+)$"),
)
#: Folder names that hold one checkpoint each (the step in the name).
_FOLDER = re.compile(r"^(checkpoint[-_]\d+|global_step\d+|step[-_=]?\d+|epoch[-_=]?\d+(-step=\d+)?|iter(ation)?[-_]?\d+)$")


def step_from_name(stem: str) -> int | None:
    """step_1000, checkpoint-1000, checkpoint_1000, global_step1000,
    epoch=3-step=1000, 1000, step1000 -> 1000; epoch_7 -> 7; init -> 0."""
    for pattern in _PATTERNS:
        match = pattern.search(stem)
        if match:
            return int(match.group(1))
    match = re.search(r"iter(?:ation)?[-_]?(\d+)$", stem)
    if match:
        return int(match.group(1))
    if stem.lower() in INIT_NAMES:
        return 0
    return None


def folder_step(name: str) -> int | None:
    """The step of a folder named as one checkpoint of a series, else None."""
    return step_from_name(name) if _FOLDER.match(name) else None


def trainer_state_step(folder: Path) -> int | None:
    """``global_step`` of ``trainer_state.json`` in `folder`, if it has one."""
    if not guards.is_small_regular_file(folder / "trainer_state.json", 1 << 30):  # never read a FIFO
        return None
    try:
        value = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class StepRef(Protocol):
    """What step resolution needs of a checkpoint reference."""

    @property
    def path(self) -> Path: ...
    @property
    def label(self) -> str: ...
    @property
    def name_step(self) -> int | None: ...
    @property
    def step_source(self) -> str: ...


Resolved = tuple[int, str]


def resolve_steps(
    items: Sequence[tuple[StepRef, Resolved | None]], aliases: frozenset[str] = frozenset()
) -> tuple[list[Resolved | None], list[str], list[tuple[int, str]]]:
    """SPEC §5 for one run's checkpoints, each given with the step in its
    metadata: metadata, then name (or layout), then the order of modification
    times (flagged "mtime"). A step seen twice keeps its first checkpoint by
    name; a duplicate whose stem is in `aliases` (Lightning's last.ckpt is a
    copy of the newest checkpoint) is returned as (position, kept label) to be
    listed as skipped, any other duplicate is a warning."""
    resolved: list[Resolved | None] = []
    for ref, metadata_step in items:
        if metadata_step is not None:
            resolved.append((int(metadata_step[0]), str(metadata_step[1])))
        elif ref.name_step is not None:
            resolved.append((ref.name_step, ref.step_source))
        else:
            resolved.append(None)
    unnamed = [i for i, r in enumerate(resolved) if r is None]
    by_time = sorted(unnamed, key=lambda i: (_mtime(items[i][0].path), items[i][0].label))
    for rank, i in enumerate(by_time):
        resolved[i] = (rank, "mtime")
    warnings: list[str] = []
    duplicates: list[tuple[int, str]] = []
    seen: dict[int, str] = {}
    is_alias = [items[i][0].path.name.split(".")[0].split("-v")[0].lower() in aliases for i in range(len(items))]
    for i in sorted(range(len(items)), key=lambda i: (is_alias[i], items[i][0].label)):
        entry = resolved[i]
        assert entry is not None
        label = items[i][0].label
        if entry[0] not in seen:
            seen[entry[0]] = label
            continue
        if is_alias[i]:
            duplicates.append((i, seen[entry[0]]))
        else:
            warnings.append(f"step {entry[0]} appears twice ({seen[entry[0]]} and {label}); kept {seen[entry[0]]}")
        resolved[i] = None
    return resolved, warnings, duplicates


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
