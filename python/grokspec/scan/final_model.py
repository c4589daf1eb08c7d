"""The final model an output folder keeps at its root, placed in the series of its checkpoints.

An HF output folder's final model (``save_model()``) gets ``global_step`` of the root
``trainer_state.json`` and joins the series — or is a duplicate when a checkpoint folder
already holds that step; without a trainer state it is compared with the newest
checkpoint's weights byte for byte. (diffusers' pipeline keeps its final ``unet/`` the same way.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from grokspec.scan import guards
from grokspec.scan.layouts import Candidate, FolderSeries
from grokspec.scan.steps import trainer_state_step

__all__ = ["final_model_step"]


def final_model_step(here: Path, series: FolderSeries, final: Candidate) -> tuple[int | None, str | None]:
    """(step, duplicate-of) of the final model at the root of an HF output folder:
    the step from the root trainer_state.json; else, when its bytes equal the
    newest checkpoint's weights, that checkpoint's step and folder; else (None, None)."""
    step = trainer_state_step(here)
    if step is not None:
        same = next((e for e in series.entries if e.step == step), None)
        return step, same.folder.name if same else None
    newest = series.entries[-1]
    weights = next((c for c in newest.candidates if c.series == final.series), None)
    if weights is not None and _same_bytes(weights.files, final.files):
        return newest.step, newest.folder.name
    return None, None


def _same_bytes(a: tuple[Path, ...], b: tuple[Path, ...]) -> bool:
    if len(a) != len(b) or not all(guards.is_regular_file(p) for p in (*a, *b)):  # never read a FIFO
        return False
    try:
        if [p.stat().st_size for p in a] != [p.stat().st_size for p in b]:
            return False
        return all(_digest(x) == _digest(y) for x, y in zip(a, b))
    except OSError:
        return False


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
