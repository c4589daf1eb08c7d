"""benches/device/analyse_paper_main.py: the paper-scale main experiment's
summary is read off the runs' metrics (events, counts, alarm quality)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from grokspec.lab.config import TrainConfig
from synthetic_runs import write_run

SCRIPT = Path(__file__).resolve().parents[1] / "benches" / "device" / "analyse_paper_main.py"
STEPS = list(range(0, 6001, 200))


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("analyse_paper_main", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, task: str, seed: int, grok_at: int | None, fall_at: int) -> None:
    config = TrainConfig(task=task, seed=seed, train_fraction=0.1 if task == "s5" else 0.5)
    write_run(folder / task / f"seed_{seed}", config, STEPS, grok_at, fall_at)


@pytest.mark.timeout(120)
def test_the_summary_counts_grokking_runs_their_events_and_false_alarms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    # add: the fall starts 1,000 steps before T_grok (before onset too);
    # sub: the fall starts at onset; s5 never groks but its H̃ falls anyway.
    for seed in range(3):
        _write_run(runs, "add", seed, grok_at=3000, fall_at=2000)
        _write_run(runs, "sub", seed, grok_at=3000, fall_at=2800)
        _write_run(runs, "s5", seed, grok_at=None, fall_at=1600)
    out = tmp_path / "report"
    monkeypatch.setattr(sys, "argv", ["analyse_paper_main.py", str(runs), str(out)])
    assert _script().main() == 0

    report = json.loads((out / "report.json").read_text())
    add, sub, s5 = (report["groups"][k] for k in ("add", "sub", "s5"))
    assert (add["grokked"], sub["grokked"], s5["grokked"]) == (3, 3, 0)
    assert add["t_grok"]["mean"] == 3000 and add["t_onset"]["mean"] == 2800
    # The collapse rule needs a fall of 0.05 over 5 evaluations: it fires
    # before T_grok in both tasks, before onset only where the fall started early.
    assert (add["collapse_before_grok"], add["collapse_before_onset"]) == (3, 3)
    assert (sub["collapse_before_grok"], sub["collapse_before_onset"]) == (3, 0)
    assert report["groups"]["main experiment, all tasks"]["runs"] == 9
    # The never-grokking S5 runs are the controls: every rule that fires there is a false alarm.
    collapse = next(q for q in report["alarms"] if q["rule"].startswith("collapse"))
    assert (collapse["grokking_runs"], collapse["controls"], collapse["false_alarms"]) == (6, 3, 3)
    assert "| add | 0.5 | 3/3 |" in (out / "report.md").read_text()
    assert (out / "fig_trajectories.png").stat().st_size > 10_000
