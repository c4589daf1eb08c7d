"""A grokspec run's evaluations as an alarm :class:`~grokspec.alarms.Trajectory`,
from its metrics.jsonl and config.json alone (no checkpoints).

Weight-matrix entropies are present when the run logged them
(``log_weight_entropies``); the series are named as ``grokspec scan`` names
the tensors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from grokspec.alarms import REPRESENTATION_SERIES, Trajectory
from grokspec.lab.rundir import RunDir, is_run_dir
from grokspec.scan.guards import MAX_FOLDER_DEPTH, walk_within

__all__ = ["chance_of", "read_trajectory", "run_dirs_under", "trajectory_from_records"]

#: Classes of S5 (permutations of five elements).
_S5_CLASSES = 120


def chance_of(config: dict[str, Any]) -> float | None:
    """The test accuracy of guessing for a grokspec task config (1/classes)."""
    task = config.get("task")
    if task == "s5":
        return 1.0 / _S5_CLASSES
    p = config.get("p")
    return 1.0 / p if isinstance(p, int) and p > 0 else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def trajectory_from_records(records: list[dict[str, Any]], chance: float | None = None) -> Trajectory:
    """The trajectory of metrics.jsonl records (one per evaluation)."""
    records = sorted({int(r["step"]): r for r in records}.values(), key=lambda r: int(r["step"]))
    names = sorted({name for r in records for name in (r.get("weight_entropy") or {})})
    series = {REPRESENTATION_SERIES: tuple(_number(r.get("repr_entropy")) for r in records)}
    for name in names:
        series[name] = tuple(_number((r.get("weight_entropy") or {}).get(name)) for r in records)
    return Trajectory(
        steps=tuple(int(r["step"]) for r in records),
        train_acc=tuple(_number(r.get("train_acc")) for r in records),
        test_acc=tuple(_number(r.get("test_acc")) for r in records),
        series=series,
        chance=chance,
    )


def read_trajectory(run_dir: Path) -> Trajectory:
    """A run dir's trajectory; ValueError when it is not a grokspec run dir."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise ValueError(f"{run_dir} is not a grokspec run dir (no grokspec config.json)")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    records = RunDir(run_dir).read_metrics()
    if not records:
        raise ValueError(f"{run_dir} has no evaluations in metrics.jsonl")
    return trajectory_from_records(records, chance_of(config))


def run_dirs_under(path: Path) -> list[Path]:
    """`path` itself when it is a run dir, else every run dir below it, sorted
    (at most MAX_FOLDER_DEPTH levels down)."""
    path = Path(path)
    if is_run_dir(path):
        return [path]
    return sorted(here for here, _, files in walk_within(path, MAX_FOLDER_DEPTH) if "config.json" in files and is_run_dir(here))
