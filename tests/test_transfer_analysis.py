"""benches/device/analyse_transfer.py: the out-of-sample alarm tables are read
off the runs' metrics — grokking runs scored against every control pooled,
runs cut before grokking left out, false alarms counted per control."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from grokspec.lab.config import TrainConfig
from synthetic_runs import write_run

DEVICE_SCRIPTS = Path(__file__).resolve().parents[1] / "benches" / "device"
STEPS = list(range(0, 8001, 100))


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("analyse_transfer", DEVICE_SCRIPTS / "analyse_transfer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, seed: int, grok_at: int | None, fall_at: int | None) -> None:
    write_run(folder / f"seed_{seed}", TrainConfig(task="mul", seed=seed, train_fraction=0.3), STEPS, grok_at, fall_at)


@pytest.mark.timeout(120)
def test_grokking_runs_meet_every_control_and_cut_runs_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    # early: the fall comes 1,000 steps before onset; late: at onset.
    for seed in (0, 1, 5, 6):  # 0-4 tune the retuned rule, 5-9 score it
        _write_run(runs / "early", seed, grok_at=5100, fall_at=4000)
        _write_run(runs / "late", seed, grok_at=5100, fall_at=5000)
        _write_run(runs / "control-flat", seed, grok_at=None, fall_at=None)
        _write_run(runs / "control-falls", seed, grok_at=None, fall_at=3000)
    # Cut by the time limit before grokking, though its H̃ fell: not a control.
    _write_run(runs / "early", 2, grok_at=None, fall_at=4000)
    out = tmp_path / "report"
    monkeypatch.syspath_prepend(str(DEVICE_SCRIPTS))
    monkeypatch.setattr(sys, "argv", ["analyse_transfer.py", str(runs), str(out)])
    assert _script().main() == 0

    report = json.loads((out / "report.json").read_text())
    assert (report["groups"]["early"]["runs"], report["groups"]["early"]["grokked"]) == (5, 4)
    assert report["controls"] == 8
    plateau = {
        name: next(q for q in qualities if q["rule"].startswith("plateau-fall")) for name, qualities in report["alarms"].items()
    }
    early, late, pooled = plateau["early"], plateau["late"], plateau["all experiments"]
    assert (early["grokking_runs"], early["controls"], early["before_onset"], early["false_alarms"]) == (4, 8, 4, 4)
    assert (late["before_onset"], late["after_onset"]) == (0, 4)
    assert (pooled["grokking_runs"], pooled["before_onset"], pooled["controls"]) == (8, 4, 8)
    label = early["rule"]
    assert report["false_alarms"]["control-flat"][label] == 0
    assert report["false_alarms"]["control-falls"][label] == 4
    # Retuned on seeds 0 and 1, scored on 5 and 6 only; the default is scored beside it.
    study = report["retuning"]
    assert study["tuned"].startswith("plateau-fall") and label in study["rules"]
    for scores in study["rules"].values():
        held_out = scores["held_out"]
        assert (held_out["early"]["grokking_runs"], held_out["early"]["before_onset"]) == (2, 2)
        assert scores["held_out controls"]["control-falls"]["controls"] == 2
    assert "| early | 0.3 | 4/5 |" in (out / "report.md").read_text()
    assert (out / "fig_trajectories.png").stat().st_size > 10_000


def test_runs_trained_after_the_tuning_are_scored_as_a_set_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tuning, fresh = tmp_path / "runs", tmp_path / "fresh"
    for seed in (0, 1):
        _write_run(tuning / "early", seed, grok_at=5100, fall_at=4000)
        _write_run(tuning / "control-falls", seed, grok_at=None, fall_at=3000)
    for seed in (10, 11):
        _write_run(fresh / "new-task", seed, grok_at=5100, fall_at=4000)
        _write_run(fresh / "control-new", seed, grok_at=None, fall_at=None)
    _write_run(fresh / "new-task", 12, grok_at=None, fall_at=4000)  # cut before grokking: left out
    monkeypatch.syspath_prepend(str(DEVICE_SCRIPTS))
    script = _script()
    grokking, controls = script.folder_set(fresh)
    assert {k: len(v) for k, v in grokking.items()} == {"fresh/new-task": 2}
    assert {k: len(v) for k, v in controls.items()} == {"fresh/control-new": 2}
    experiments, tuning_controls = script.folder_set(tuning)
    study = script.retuning(experiments, tuning_controls, {"fresh": (grokking, controls)})
    assert study["sets"] == ["held_out", "fresh"]
    for scores in study["rules"].values():
        new_task = scores["fresh"]["fresh/new-task"]
        assert (new_task["grokking_runs"], new_task["before_onset"], new_task["controls"]) == (2, 2, 2)
        assert scores["fresh controls"]["fresh/control-new"]["false_alarms"] == 0
