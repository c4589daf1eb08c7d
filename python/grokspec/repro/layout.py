"""Where a reproduction keeps its runs, and the record of what it trained.

The plan (training) writes ``OUT/plan.json``; the analysis reads it and the
run dirs' metrics.jsonl and config.json, nothing else, so that a report can
be rebuilt from the metrics alone (``grokspec reproduce --analyse-only``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokspec.io_atomic import write_json

__all__ = ["PLAN_FORMAT", "ROLES", "Experiment", "PlanMissing", "experiment_dir", "read_setup", "write_setup"]

PLAN_FORMAT = "grokspec-repro-plan/1"

#: What an experiment is for: runs that should grok (scored for alarm
#: quality unless used for tuning), negative controls, the MLP's comparison
#: transformer, and the intervention.
ROLES = ("grokking", "control", "comparison", "intervention")


class PlanMissing(ValueError):
    """OUT holds no plan.json: nothing was trained there."""


@dataclass(frozen=True)
class Experiment:
    """One seed-batched training: a config, its seeds and what they are for."""

    key: str
    role: str
    #: The regime (``companion``, ``plateau``) or control kind (``mlp``, ...).
    group: str
    config_dict: dict[str, Any]
    seeds: tuple[int, ...]
    #: Seeds used to tune rule parameters (never scored).
    tuning_seeds: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "role": self.role,
            "group": self.group,
            "config": self.config_dict,
            "seeds": list(self.seeds),
            "tuning_seeds": list(self.tuning_seeds),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Experiment:
        return cls(
            key=str(data["key"]),
            role=str(data["role"]),
            group=str(data["group"]),
            config_dict=dict(data["config"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            tuning_seeds=tuple(int(s) for s in data.get("tuning_seeds", ())),
        )


def experiment_dir(out: Path, key: str) -> Path:
    """``OUT/runs/<key>``: the parent of the experiment's ``seed_<n>`` run dirs."""
    return Path(out) / "runs" / key


def write_setup(out: Path, setup: dict[str, Any]) -> None:
    write_json(Path(out) / "plan.json", {"format": PLAN_FORMAT, **setup})


def read_setup(out: Path) -> dict[str, Any]:
    path = Path(out) / "plan.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PlanMissing(f"{path} does not exist: run `grokspec reproduce --out {out}` first") from error
    except (OSError, ValueError) as error:
        raise PlanMissing(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanMissing(f"{path} is not a grokspec reproduction plan")
    return data
