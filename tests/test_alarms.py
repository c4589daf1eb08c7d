"""Alarm rules, the alarm record and alarm quality (docs/ALARMS.md), on
synthetic trajectories whose right answers are known by construction."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from grokspec.alarms import (
    CollapseRule,
    PlateauFallRule,
    PredictorRule,
    ThresholdRule,
    Trajectory,
    evaluate_rule,
    first_alarm,
)
from grokspec.cli import main
from grokspec.events import collapse_step, crossing_step
from grokspec.lab.config import TrainConfig
from grokspec.scan.alarm_quality import alarm_quality, auroc, median_ci, tune, youden
from grokspec.scan.run_metrics import chance_of, read_trajectory, run_dirs_under, trajectory_from_records

STEP = 100


def plateau_run(
    *, fall_at: int = 2500, onset: int = 3000, grok: int = 3500, dips: tuple[int, ...] = (1600, 2000), end: int = 4000
) -> Trajectory:
    """Memorized at step 500; H̃ 0.83 on the plateau with single-evaluation
    dips of 0.05; a steady fall of 0.125 per 500 steps from `fall_at`;
    test accuracy 0.01 until `onset` (0.2), 0.995 from `grok`."""
    steps = list(range(0, end + 1, STEP))
    h, train, test = [], [], []
    for t in steps:
        value = 0.6 + 0.23 * t / 500 if t < 500 else 0.83
        if t in dips:
            value -= 0.05
        if t >= fall_at:
            value = 0.83 - 0.025 * (t - fall_at) / STEP
        h.append(value)
        train.append(min(1.0, t / 500))
        test.append(0.995 if t >= grok else 0.2 if t >= onset else 0.01)
    return Trajectory(tuple(steps), tuple(train), tuple(test), {"representation": tuple(h)}, chance=1 / 97)


def control_run(h: list[float], *, memorized: bool = True) -> Trajectory:
    steps = tuple(range(0, STEP * len(h), STEP))
    train = tuple(1.0 if memorized and t >= 500 else 0.5 for t in steps)
    return Trajectory(steps, train, tuple(0.01 for _ in steps), {"representation": tuple(h)}, chance=1 / 97)


def test_default_rule_ignores_single_dips_and_fires_on_the_fall_before_onset():
    run = plateau_run()
    alarm = first_alarm(PlateauFallRule(), run)
    assert alarm is not None
    # The fall starts at 2500: more than 0.04 below the lagged plateau from 2700, persisted at 2800.
    assert alarm.step == 2800, alarm
    assert alarm.step not in (1600, 1700, 2000, 2100), "fired on a plateau dip"
    assert alarm.test_acc == pytest.approx(0.01)
    assert (alarm.lead_onset, alarm.lead_grok) == (3000 - alarm.step, 3500 - alarm.step)


def test_a_rule_that_fires_on_a_plateau_dip_is_caught():
    # The same rule without persistence takes the first single-evaluation dip for the fall:
    # exactly the failure the default must not have.
    hasty = PlateauFallRule(persist=1, lag=1)
    alarm = first_alarm(hasty, plateau_run())
    assert alarm is not None and alarm.step == 1600
    with_dips_only = plateau_run(fall_at=10**6, onset=10**6, grok=10**6)
    assert first_alarm(PlateauFallRule(), with_dips_only) is None
    assert first_alarm(hasty, with_dips_only) is not None


def test_plateau_fall_needs_memorization_and_ignores_a_slow_drift():
    never_memorized = control_run([0.8] * 20 + [0.6] * 20, memorized=False)
    assert first_alarm(PlateauFallRule(), never_memorized) is None
    drift = control_run([0.6, 0.7, 0.8] + [0.83 - 0.0015 * i for i in range(100)])  # 0.15 over 10,000 steps
    assert first_alarm(PlateauFallRule(), drift) is None, "a slow drift is not a fall"
    assert first_alarm(PlateauFallRule(lag=None), drift) is not None, "the running maximum would call it one"


def test_threshold_rule_is_a_causal_fall_through_the_threshold():
    starts_low = control_run([0.58, 0.59, 0.60, 0.7, 0.8, 0.8, 0.65, 0.60, 0.55])
    assert first_alarm(ThresholdRule(), starts_low).step == 700, "a low start is not an alarm"
    never_above = control_run([0.58, 0.59, 0.55, 0.5, 0.45])
    assert first_alarm(ThresholdRule(), never_above) is None, "live, a series that starts low has not fallen"
    assert crossing_step(never_above.steps, list(never_above.series["representation"]), 0.61) == 0, "unlike SPEC's event"
    # On series that start above θ, the alarm is SPEC's crossing, announced when it is known:
    # `persist` − 1 evaluations after the crossing's first step.
    rng = np.random.default_rng(3)
    for _ in range(50):
        values = list(0.61 + 0.05 * rng.standard_normal(30))
        values[0] = 0.7
        run = control_run(values)
        alarm = first_alarm(ThresholdRule(persist=2), run)
        crossing = crossing_step(run.steps, values, 0.61, persist=2)
        assert (alarm.step if alarm else None) == (None if crossing is None else crossing + STEP)


def test_collapse_rule_matches_the_events_module():
    rng = np.random.default_rng(5)
    for _ in range(50):
        values = list(np.cumsum(0.02 * rng.standard_normal(40)) + 0.8)
        values[7] = math.nan
        run = control_run(values)
        alarm = first_alarm(CollapseRule(), run)
        assert (alarm.step if alarm else None) == collapse_step(run.steps, values)


def test_rules_never_look_ahead():
    rng = np.random.default_rng(11)
    rules = [PlateauFallRule(), ThresholdRule(persist=2), CollapseRule(), PredictorRule(h_star=0.6, c1=3000.0, gamma=1.0)]
    for _ in range(20):
        run = control_run(list(0.8 + np.cumsum(0.02 * rng.standard_normal(60))))
        for rule in rules:
            full = first_alarm(rule, run)
            for end in range(0, 6000, 700):
                early = first_alarm(rule, run.truncated(end))
                expected = full.step if full is not None and full.step <= end else None
                assert (early.step if early else None) == expected, (rule, end)


def test_predictor_fires_when_the_law_predicts_grokking_within_the_horizon():
    h = [0.6, 0.8, 0.85, 0.85, 0.85, 0.80, 0.75, 0.70, 0.66, 0.62]
    rule = PredictorRule(h_star=0.6, c1=10000.0, gamma=1.0, horizon=1000.0, persist=2)
    # ΔT = 10,000 (v − 0.6) ≤ 1,000 once v ≤ 0.7: steps 700 and 800 → fires at 800.
    assert first_alarm(rule, control_run(h)).step == 800
    with pytest.raises(ValueError, match="C1 > 0"):
        PredictorRule(h_star=0.6, c1=-1.0, gamma=1.0)


def test_onset_level_follows_chance():
    steps = (0, 100, 200)
    run = Trajectory(steps, (1, 1, 1), (0.12, 0.18, 0.3), {"representation": (0.8, 0.8, 0.8)}, chance=0.1)
    assert run.onset_level == pytest.approx(0.2) and run.t_onset == 200
    low_chance = Trajectory(steps, (1, 1, 1), (0.05, 0.12, 0.3), {"representation": (0.8, 0.8, 0.8)}, chance=1 / 97)
    assert low_chance.onset_level == 0.1 and low_chance.t_onset == 100


def test_trajectories_and_rules_refuse_bad_input():
    with pytest.raises(ValueError, match="one value per step"):
        Trajectory((0, 1), (1.0,), (0.0, 0.0), {"representation": (0.5, 0.5)})
    with pytest.raises(ValueError, match="strictly increasing"):
        Trajectory((0, 0), (1.0, 1.0), (0.0, 0.0), {"representation": (0.5, 0.5)})
    with pytest.raises(ValueError, match="persist"):
        PlateauFallRule(persist=0)
    with pytest.raises(ValueError, match="lag"):
        PlateauFallRule(persist=4, lag=2)
    with pytest.raises(KeyError, match="no series"):
        evaluate_rule(PlateauFallRule(series="readout.weight"), plateau_run())


def _brute_auroc(pos: list[float], neg: list[float]) -> float:
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def test_auroc_and_median_ci_against_references():
    rng = np.random.default_rng(2)
    pos = [*list(rng.integers(0, 5, 13).astype(float)), -math.inf]
    neg = [*list(rng.integers(0, 5, 9).astype(float)), -math.inf, -math.inf]
    assert auroc(pos, neg) == pytest.approx(_brute_auroc(pos, neg))
    assert auroc([], neg) is None
    values = list(rng.normal(100, 10, 40))
    low, high = median_ci(values)
    assert low < float(np.median(values)) < high and high - low < 20
    assert median_ci([1.0]) is None


def test_alarm_quality_counts_every_outcome():
    runs = [
        ("early", plateau_run()),
        ("late", plateau_run(fall_at=3200, onset=3000, grok=3500)),
        ("silent", plateau_run(fall_at=10**6)),
        ("control-falls", control_run([0.6, 0.7, 0.8] + [0.83] * 20 + [0.83 - 0.012 * i for i in range(15)])),
        ("control-flat", control_run([0.6, 0.7] + [0.83] * 40)),
    ]
    quality, scores = alarm_quality(PlateauFallRule(), runs)
    outcomes = {s.run: s.outcome for s in scores}
    assert outcomes == {
        "early": "before-onset",
        "late": "after-onset",
        "silent": "missed",
        "control-falls": "false-alarm",
        "control-flat": "quiet",
    }
    assert (quality.grokking_runs, quality.controls) == (3, 2)
    assert (quality.before_onset, quality.after_onset, quality.missed, quality.false_alarms) == (1, 1, 1, 1)
    leads = sorted(s.lead_onset for s in scores if s.grokked and s.lead_onset is not None)
    assert quality.median_lead_onset == pytest.approx(float(np.median(leads)))
    assert youden(quality) == pytest.approx(1 / 3 - 1 / 2)
    json.dumps(quality.to_json())


def test_tuning_picks_the_best_criterion_and_prefers_the_earlier_candidate_on_ties():
    runs = [("grok", plateau_run()), ("dip-control", control_run([0.6, 0.7] + [0.83] * 10 + [0.78] + [0.83] * 10))]
    hasty, careful, also_careful = PlateauFallRule(persist=1, lag=1), PlateauFallRule(), PlateauFallRule(persist=3)
    rule, quality = tune([hasty, careful, also_careful], runs)
    assert rule == careful and youden(quality) == 1.0
    with pytest.raises(ValueError):
        tune([], runs)


def test_trajectory_from_a_run_dir_with_weight_entropies(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(TrainConfig(p=11, device="cpu").to_json())
    records = [
        {"step": s, "train_acc": 1.0, "test_acc": 0.0, "repr_entropy": 0.8 - s / 1e4, "weight_entropy": {"readout.weight": 0.9}}
        for s in (200, 0, 100)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    trajectory = read_trajectory(run)
    assert trajectory.steps == (0, 100, 200) and trajectory.chance == pytest.approx(1 / 11)
    assert trajectory.series["representation"] == pytest.approx((0.8, 0.79, 0.78))
    assert trajectory.series["readout.weight"] == (0.9, 0.9, 0.9)
    assert chance_of({"task": "s5"}) == pytest.approx(1 / 120)
    partial = trajectory_from_records(
        [
            {"step": 0, "train_acc": 1.0, "test_acc": 0.0, "repr_entropy": 0.5, "weight_entropy": {"a": 1.0}},
            {"step": 1, "train_acc": 1.0, "test_acc": 0.0, "repr_entropy": 0.5},
        ]
    )
    assert math.isnan(partial.series["a"][1])


def _write_run(path, trajectory: Trajectory) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text(TrainConfig(device="cpu").to_json())
    rows = [
        {"step": t, "train_acc": a, "test_acc": b, "repr_entropy": h}
        for t, a, b, h in zip(trajectory.steps, trajectory.train_acc, trajectory.test_acc, trajectory.series["representation"])
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_alarms_command(tmp_path):
    _write_run(tmp_path / "runs" / "seed_0", plateau_run())
    _write_run(tmp_path / "runs" / "seed_1", plateau_run(fall_at=2700, onset=3200, grok=3600))
    _write_run(tmp_path / "controls" / "seed_0", control_run([0.6, 0.7] + [0.83] * 40))
    result = CliRunner().invoke(main, ["alarms", str(tmp_path / "runs"), "--controls", str(tmp_path / "controls"), "--json"])
    assert result.exit_code == 0, result.output
    records = {r["family"]: r for r in json.loads(result.output)}
    assert records["plateau-fall"]["before_onset"] == 2 and records["plateau-fall"]["false_alarms"] == 0
    assert records["plateau-fall"]["grokking_runs"] == 2 and records["plateau-fall"]["controls"] == 1
    (tmp_path / "empty").mkdir()
    bad = CliRunner().invoke(main, ["alarms", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "no grokspec run dir" in bad.output


def test_alarms_command_scores_plateau_fall_settings_of_the_users_choice(tmp_path):
    _write_run(tmp_path / "runs" / "seed_0", plateau_run())
    _write_run(tmp_path / "controls" / "seed_0", control_run([0.6, 0.7] + [0.83] * 40))
    args = ["alarms", str(tmp_path / "runs"), "--controls", str(tmp_path / "controls"), "--json"]
    result = CliRunner().invoke(main, [*args, "--plateau-fall", "drop=0.02,lag=5,persist=3", "--plateau-fall", "lag=none"])
    assert result.exit_code == 0, result.output
    records = {r["rule"]: r for r in json.loads(result.output)}
    sensitive = records["plateau-fall (> 0.02 below the plateau, lag 5, 3 evals)"]
    assert sensitive["params"]["drop"] == 0.02 and sensitive["grokking_runs"] == 1 and sensitive["controls"] == 1
    assert "plateau-fall (> 0.04 below the plateau, running max, 2 evals)" in records
    assert "plateau-fall (> 0.04 below the plateau, lag 8, 2 evals)" in records  # the default stays in the table
    for setting, complaint in (
        ("drop=x", "drop must be a number"),
        ("speed=1", "takes drop=, lag=, persist=, window="),
        ("lag=1,persist=3", "lag must be at least persist"),
        ("drop=-1", "drop must be positive"),
    ):
        bad = CliRunner().invoke(main, [*args, "--plateau-fall", setting])
        assert bad.exit_code == 2 and complaint in bad.output, (setting, bad.output)


def test_run_dirs_are_found_nested_but_a_hostile_depth_is_not_walked(tmp_path):
    _write_run(tmp_path / "sweep" / "lr_1e-3" / "seed_0", plateau_run())
    deep = tmp_path / "sweep"
    for _ in range(1200):  # Path.rglob raised RecursionError here
        deep = deep / "d"
        deep.mkdir()
    _write_run(deep / "buried", plateau_run())
    try:
        assert run_dirs_under(tmp_path) == [tmp_path / "sweep" / "lr_1e-3" / "seed_0"]
    finally:  # bottom up, without recursion (shutil.rmtree recurses)
        shutil.rmtree(deep / "buried")
        while deep != tmp_path / "sweep":
            deep.rmdir()
            deep = deep.parent


def test_importing_the_rules_imports_no_heavy_library():
    code = "import sys, grokspec.alarms; print(','.join(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == ""


def test_demo_says_how_early_the_alarm_came():
    from grokspec.alarms import Alarm
    from grokspec.cli.demo_command import alarm_sentence
    from grokspec.lab.demo import DEMO_CONFIG
    from grokspec.lab.train import RunSummary

    assert DEMO_CONFIG.train_fraction == 0.3 and DEMO_CONFIG.alarm_rule == "plateau-fall", "the demo has a plateau to warn in"
    alarm = Alarm(rule="plateau-fall", step=3200, test_acc=0.011, lead_onset=500, lead_grok=1100)
    summary = RunSummary("run", 0, 4500, 4300, 2100, 0.58, 1.0, 1.0, 0.5, 90.0, "stop-after-grok", alarm)
    text = alarm_sentence(summary)
    assert "step 3,200" in text and "test accuracy then 0.011" in text
    assert "500 steps before onset" in text and "1,100 steps before T_grok" in text
    silent = dataclasses.replace(summary, alarm=None)
    assert "did not fire" in alarm_sentence(silent)


def test_summary_cells_show_an_alarm_with_or_without_its_test_accuracy():
    from grokspec.alarms import Alarm
    from grokspec.cli.console import alarm_cell, plain_table

    assert alarm_cell(None) == "—"
    assert alarm_cell(Alarm(rule="plateau-fall", step=3300, test_acc=0.0141, lead_onset=300, lead_grok=1000)) == "3300 (0.014)"
    assert alarm_cell(Alarm(rule="threshold", step=5, test_acc=None, lead_onset=None, lead_grok=None)) == "5"
    text = plain_table("t", ["a", "long column"], [["xyz", "1"]])
    assert text.splitlines() == ["t", "a    long column", "---  -----------", "xyz  1"]
