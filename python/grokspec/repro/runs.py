"""A reproduction's runs, read back from OUT: plan.json, and each run dir's
metrics.jsonl and config.json (never checkpoints).

:class:`RunSet` gives each experiment's runs as pandas frames (one row per
evaluation), as alarm trajectories, and as one tidy table in ``grokspec
scan``'s layout (``run, step, step_source, tensor, metric, value``), so that
calibration and the per-series helpers of the scan apply unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from grokspec.alarms import Trajectory
from grokspec.lab.rundir import RunDir
from grokspec.repro.layout import Experiment, experiment_dir, read_setup
from grokspec.scan.run_metrics import chance_of, trajectory_from_records
from grokspec.scan.table import Row, ScanTable

__all__ = ["TABLE_METRICS", "RunSet", "load_runs"]

#: The training-log metrics that go into the tidy table.
TABLE_METRICS = ("train_acc", "test_acc", "train_loss", "test_loss", "param_norm", "repr_entropy")


@dataclass(frozen=True)
class RunSet:
    """Everything the analysis reads."""

    out: Path
    setup: dict[str, Any]
    experiments: dict[str, Experiment]
    #: Per experiment key, per seed, the metrics records.
    records: dict[str, dict[int, list[dict[str, Any]]]] = field(repr=False)

    def frames(self, key: str) -> dict[int, pd.DataFrame]:
        """Per seed, one row per evaluation (weight entropies left out)."""
        return {
            seed: pd.DataFrame([{k: v for k, v in r.items() if k != "weight_entropy"} for r in records])
            for seed, records in self.records.get(key, {}).items()
        }

    def trajectory(self, key: str, seed: int) -> Trajectory:
        return trajectory_from_records(self.records[key][seed], chance_of(self.experiments[key].config_dict))

    def keys(self, role: str) -> list[str]:
        return [k for k, e in self.experiments.items() if e.role == role and k in self.records]

    def table(self, keys: list[str]) -> ScanTable:
        """The tidy table of the runs of `keys` (run names ``<key>/seed_<n>``)."""
        rows: list[Row] = []
        for key in keys:
            for seed, records in self.records.get(key, {}).items():
                run = f"{key}/seed_{seed}"
                for r in records:
                    step = int(r["step"])
                    rows += [_log_row(run, step, "", m, r[m]) for m in TABLE_METRICS if r.get(m) is not None]
                    rows += [_log_row(run, step, t, "entropy", v) for t, v in (r.get("weight_entropy") or {}).items()]
        return ScanTable(rows)


def _log_row(run: str, step: int, tensor: str, metric: str, value: Any) -> Row:
    """A training-log value as a row of the tidy table."""
    return Row(run, "metrics.jsonl", step, "log", tensor, None, None, "", metric, float(value))


def load_runs(out: Path) -> RunSet:
    """Reads OUT's plan.json and every run it names that has metrics."""
    setup = read_setup(Path(out))
    experiments = {e.key: e for e in (Experiment.from_json(d) for d in setup["experiments"])}
    records: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for key, experiment in experiments.items():
        for seed in experiment.seeds:
            found = RunDir(experiment_dir(Path(out), key) / f"seed_{seed}").read_metrics()
            if found:
                records.setdefault(key, {})[seed] = found
    return RunSet(out=Path(out), setup=setup, experiments=experiments, records=records)
