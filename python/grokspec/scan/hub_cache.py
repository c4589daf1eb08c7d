"""The Hugging Face Hub's download cache: one repo's revisions as one series.

``huggingface_hub`` keeps each downloaded repo as
``models--ORG--NAME/{blobs,refs,snapshots}``: ``snapshots/<commit>/`` holds a
revision's files (links into ``blobs/``), and ``refs/<revision>`` holds the
commit a branch or tag was resolved to. Pythia's and OLMo's training series
are published as revisions (``step1000``, ``stage1-step140000-tokens588B``),
so the step of a snapshot is the number in the name of a ref that points to
it (:func:`~grokspec.scan.steps.step_from_name`); the commit hashes that name
the folders say nothing about order.

Snapshots that no numbered ref names (``main`` alone, or a commit downloaded
by its hash) are not placed in the series: each is a run of its own, named by
its ref or its commit, unless it is the repo's only snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from grokspec.scan import guards
from grokspec.scan.steps import step_from_name

__all__ = ["Revision", "is_repo", "revisions", "snapshot_step"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: Refs are a few dozen bytes; a larger file is not one.
_MAX_REF_BYTES = 256
#: How many ref files are looked at (a repo with 100+ checkpoints has 100+ refs).
_MAX_REFS = 20_000


@dataclass(frozen=True)
class Revision:
    """One snapshot folder of a cached repo."""

    folder: Path
    #: The step a numbered ref gives it (None: no ref names a step).
    step: int | None
    #: How it is named in the table: its numbered ref, else its other refs, else its short commit.
    name: str


def is_repo(folder: Path, subfolders: list[str]) -> bool:
    """A cached repo folder: ``snapshots/`` and ``refs/`` side by side, real folders (the
    Hub never links them; a link could lead the reading of refs anywhere, ``/proc`` included)."""
    return all(name in subfolders and _real_folder(folder / name) for name in ("snapshots", "refs"))


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def revisions(repo: Path) -> tuple[list[Revision], list[str]]:
    """The repo's snapshot folders with their steps and names, and warnings."""
    refs = _refs(repo)
    warnings: list[str] = []
    out: list[Revision] = []
    try:
        snapshots = sorted(p for p in (repo / "snapshots").iterdir() if p.is_dir())
    except OSError as error:
        return [], [f"cannot list {repo / 'snapshots'}: {error.strerror}"]
    for folder in snapshots:
        names = sorted(refs.get(folder.name, []))
        steps = sorted({s for s in map(step_from_name, names) if s is not None})
        if len(steps) > 1:
            warnings.append(f"{folder.name}: refs {', '.join(names)} name different steps; the first, {steps[0]}, is used")
        numbered = [n for n in names if step_from_name(n) is not None]
        name = numbered[0] if numbered else "+".join(names) if names else folder.name[:12]
        out.append(Revision(folder, steps[0] if steps else None, name))
    return out, warnings


def snapshot_step(folder: Path) -> int | None:
    """The step of one snapshot folder scanned on its own (``.../snapshots/<commit>``)."""
    repo = folder.parent.parent
    if folder.parent.name != "snapshots" or not is_repo(repo, ["snapshots", "refs"]):
        return None
    steps = [step_from_name(n) for n in _refs(repo).get(folder.name, [])]
    return min((s for s in steps if s is not None), default=None)


def _refs(repo: Path) -> dict[str, list[str]]:
    """commit -> the revision names (``main``, ``step1000``, ``pr/1``) that point to it."""
    out: dict[str, list[str]] = {}
    seen = 0
    root = repo / "refs"
    for here, _, filenames in guards.walk_within(root, 4):  # refs/pr/N is as deep as the Hub goes
        for filename in filenames:
            seen += 1
            if seen > _MAX_REFS:
                return out
            path = here / filename
            # never a FIFO, a huge file or a link (to /proc/kmsg, say: a regular file whose reading blocks)
            if path.is_symlink() or not guards.is_small_regular_file(path, _MAX_REF_BYTES):
                continue
            try:
                commit = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if _COMMIT.match(commit):
                out.setdefault(commit, []).append(str(path.relative_to(root)))
    return out
