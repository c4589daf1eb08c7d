"""Section 1's events of each run of a reproduction, from its metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd

from grokspec.events import REPRESENTATION_THRESHOLD, collapse_step, crossing_step, grok_step, onset_level, onset_step

__all__ = ["MEMORIZED", "run_events"]

#: Train accuracy that counts as the training set memorized.
MEMORIZED = 0.999


def _at(frame: pd.DataFrame, step: int | None, column: str) -> float | None:
    return float(frame.loc[frame["step"] == step, column].iloc[0]) if step is not None else None


def _lead(later: int | None, earlier: int | None) -> int | None:
    return later - earlier if later is not None and earlier is not None else None


def run_events(frame: pd.DataFrame, *, chance: float | None = None, level: float = 0.99) -> dict[str, Any]:
    """Section 1's events of one run, with leads against T_grok and T_onset."""
    steps = list(frame["step"])
    h = list(frame["repr_entropy"])
    t_grok = grok_step(steps, list(frame["test_acc"]), level=level)
    t_onset = onset_step(steps, list(frame["test_acc"]), level=onset_level(chance))
    crossing = crossing_step(steps, h, REPRESENTATION_THRESHOLD)
    collapse = collapse_step(steps, h)
    memorized = grok_step(steps, list(frame["train_acc"]), level=MEMORIZED)
    return {
        "t_grok": t_grok,
        "t_onset": t_onset,
        "crossing": crossing,
        "t_collapse": collapse,
        "h_at_grok": _at(frame, t_grok, "repr_entropy"),
        "lead_cross": _lead(t_grok, crossing),
        "lead_collapse": _lead(t_grok, collapse),
        "lead_onset_cross": _lead(t_onset, crossing) if t_grok is not None else None,
        "lead_onset_collapse": _lead(t_onset, collapse) if t_grok is not None else None,
        "test_acc_at_collapse": _at(frame, collapse, "test_acc"),
        "train_acc_1_step": memorized,
        "h_at_train_acc_1": _at(frame, memorized, "repr_entropy"),
        "h_start": float(h[0]),
        "steps_trained": int(steps[-1]),
    }
