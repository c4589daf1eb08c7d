"""Synthetic grokspec run dirs for the tests of the analysis scripts (test modules never
import each other): H̃ and accuracies chosen so that every event is known in advance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from grokspec.lab.config import TrainConfig
from grokspec.lab.rundir import RunDir


def write_run(folder: Path, config: TrainConfig, steps: Sequence[int], grok_at: int | None, fall_at: int | None) -> None:
    """A run dir at `folder`, memorized at step 400, evaluated at `steps` (evenly spaced):
    H̃ flat at 0.82, falling by 0.05 per evaluation from `fall_at` (never, for None) down
    to 0.45; test accuracy 0.5 one evaluation before `grok_at` (its onset), then 1.0
    (never, for None)."""
    every = steps[1] - steps[0]
    run = RunDir(folder)
    run.claim(config)
    records = []
    for step in steps:
        falls = 0 if fall_at is None or step < fall_at else (step - fall_at) // every + 1
        test = 0.002 if grok_at is None or step < grok_at - every else 0.5 if step < grok_at else 1.0
        records.append(
            {
                "step": step,
                "train_loss": 0.01,
                "train_acc": 1.0 if step >= 400 else 0.5,
                "test_loss": 1.0,
                "test_acc": test,
                "param_norm": 50.0,
                "repr_entropy": max(0.45, 0.82 - 0.05 * falls),
            }
        )
    run.write_metrics(records)
