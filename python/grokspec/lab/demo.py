"""The demo: a grokking run with a real memorization plateau, trained and
then scanned.

(a + b) mod 97 at train fraction 0.3 (batch 512, AdamW lr 1e-3 and weight
decay 1.0): the training set is memorized within ~500 steps, test accuracy
stays at chance for ~3,000 more, then generalization arrives. So the early
warning (the default alarm rule, docs/ALARMS.md) can fire while test accuracy
is still near chance. Checkpoints every 500 steps feed the scan's weight
trajectories; the run stops 200 steps after grokking (budget 6,000 steps).
"""

from __future__ import annotations

from pathlib import Path

from grokspec.lab.config import TrainConfig

__all__ = ["DEMO_CONFIG", "demo_run_dir"]

DEMO_CONFIG = TrainConfig(train_fraction=0.3, steps=6000, checkpoint_every=500, stop_after_grok=200)


def demo_run_dir(out: Path) -> Path:
    return Path(out) / "run"
