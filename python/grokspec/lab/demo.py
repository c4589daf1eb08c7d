"""The demo: the default grokking run, trained and then scanned.

The run is the paper authors' companion setup ((a + b) mod 97, train
fraction 0.5, batch 512, AdamW lr 1e-3 and weight decay 1.0), with a
checkpoint every 100 steps so that the scan sees dense weight trajectories,
stopping 600 steps after grokking. On two CPU cores it takes about a minute.
"""

from __future__ import annotations

from pathlib import Path

from grokspec.lab.config import TrainConfig

__all__ = ["DEMO_CONFIG", "demo_run_dir"]

DEMO_CONFIG = TrainConfig(checkpoint_every=100, stop_after_grok=600)


def demo_run_dir(out: Path) -> Path:
    return Path(out) / "run"
