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
from typing import NamedTuple, Protocol

from grokspec.scan import guards

__all__ = [
    "ALIAS_WORDS",
    "INIT_NAMES",
    "Resolution",
    "folder_step",
    "is_alias_name",
    "resolve_steps",
    "step_from_name",
    "trainer_state_step",
]

INIT_NAMES = frozenset({"init", "initial", "initialization", "init_model", "initial_model"})
_PATTERNS = (
    re.compile(r"^checkpoint_\d+_(\d+)$"),  # fairseq's checkpoint_{epoch}_{updates}: updates are steps
    re.compile(r"checkpoint[-_]?(\d+)$"),  # checkpoint-N (HF), checkpoint_N, fairseq's checkpoint{epoch}
    re.compile(r"step[=_-]?(\d+)"),
    re.compile(r"(?:^|[-_])ba(\d+)(?:[-_]|$)"),  # Composer's ep{epoch}-ba{batch}-rank{rank}: batches are steps
    re.compile(r"epoch[=_-]?(\d+)"),
    re.compile(r"^ep(\d+)(?:[-_]|$)"),  # Composer's ep{epoch}
    re.compile(r"^(\d+)$"),
)
#: Words that make a name without a number a copy of one checkpoint of the series beside it
#: (the newest or the best): last.ckpt, last-v1.ckpt (Lightning), latest-rank0.pt (Composer),
#: epoch_latest.pt (OpenCLIP), model_best.pth.tar (timm), checkpoint_best.pt (fairseq), final.pth.
ALIAS_WORDS = frozenset({"last", "latest", "final", "best"})
#: Parts of a name that are decoration, not a step: Lightning's -v1, Composer's -rank0.
_DECORATION = re.compile(r"^(v|rank)\d+$")
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


def is_alias_name(file_stem: str) -> bool:
    """Whether a checkpoint's name (without its extension) marks a copy: see ALIAS_WORDS. A name
    led by "best" may carry numbers too (MMEngine's best_coco_bbox_mAP_epoch_12.pth, Ignite's
    best_model_3_val_acc=0.9.pt): a best checkpoint is always a copy of one of the series'.
    (``final_model_seed2.pt`` is not: numbers after last/final may name another model.)"""
    words = [w for w in re.split(r"[-_.=]", file_stem.lower()) if w and not _DECORATION.match(w)]
    if words and words[0] == "best":
        return True
    return any(w in ALIAS_WORDS for w in words) and not any(c.isdigit() for w in words for c in w)


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


class Resolution(NamedTuple):
    #: Each checkpoint's (step, step_source); None: not placed (see below).
    steps: list[Resolved | None]
    warnings: list[str]
    #: (position, the label kept at its step) of aliases that repeat a step.
    duplicates: list[tuple[int, str]]
    #: Positions of aliases without a step of their own in a run whose other checkpoints have one.
    unplaced: list[int]


def resolve_steps(items: Sequence[tuple[StepRef, Resolved | None]]) -> Resolution:
    """SPEC §5 for one run's checkpoints, each given with the step in its
    metadata: metadata, then name (or layout), then the order of modification
    times (flagged "mtime"). A step seen twice keeps its first checkpoint by
    name; a duplicate named as an alias (:func:`is_alias_name`; Lightning's last.ckpt is a
    copy of the newest checkpoint) is listed to be skipped, any other duplicate is a
    warning. An alias with no step of its own (ultralytics' best.pt, whose epoch is
    set to -1 when training ends) beside checkpoints that have one is not placed at
    an invented step: it is listed to be skipped."""
    resolved: list[Resolved | None] = []
    for ref, metadata_step in items:
        if metadata_step is not None:
            resolved.append((int(metadata_step[0]), str(metadata_step[1])))
        elif ref.name_step is not None:
            resolved.append((ref.name_step, ref.step_source))
        else:
            resolved.append(None)
    is_alias = [is_alias_name(ref.path.name.split(".")[0]) for ref, _ in items]
    _same_file_as_named(items, resolved, is_alias)
    placed = any(r is not None for r in resolved)
    unplaced = [i for i, r in enumerate(resolved) if r is None and is_alias[i] and placed]
    unnamed = [i for i, r in enumerate(resolved) if r is None and i not in unplaced]
    by_time = sorted(unnamed, key=lambda i: (_mtime(items[i][0].path), items[i][0].label))
    for rank, i in enumerate(by_time):
        resolved[i] = (rank, "mtime")
    warnings: list[str] = []
    duplicates: list[tuple[int, str]] = []
    seen: dict[int, str] = {}
    for i in sorted(range(len(items)), key=lambda i: (is_alias[i], items[i][0].label)):
        entry = resolved[i]
        if entry is None:  # unplaced
            continue
        label = items[i][0].label
        if entry[0] not in seen:
            seen[entry[0]] = label
            continue
        if is_alias[i]:
            duplicates.append((i, seen[entry[0]]))
        else:
            warnings.append(f"step {entry[0]} appears twice ({seen[entry[0]]} and {label}); kept {seen[entry[0]]}")
        resolved[i] = None
    return Resolution(resolved, warnings, duplicates, unplaced)


def _same_file_as_named(
    items: Sequence[tuple[StepRef, Resolved | None]], resolved: list[Resolved | None], is_alias: list[bool]
) -> None:
    """An alias without a step that is a link (symbolic or hard) to a checkpoint with one
    takes that step: Composer's latest-rank0.pt, timm's last.pth.tar are links to the newest."""
    if not any(step is None and alias for step, alias in zip(resolved, is_alias)):
        return  # nothing to look for: spare a stat of every checkpoint
    identities = [_identity(ref.path) for ref, _ in items]
    named: dict[tuple[int, int], Resolved] = {}
    for key, step in zip(identities, resolved):
        if step is not None and key is not None:
            named.setdefault(key, step)
    for i, key in enumerate(identities):
        if resolved[i] is None and is_alias[i] and key in named:
            resolved[i] = named[key]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
