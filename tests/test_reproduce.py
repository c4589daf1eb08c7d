"""`grokspec reproduce`: the plan's experiments and budgets, negative controls
from the CLI, and the pipeline end to end on tiny models (the numbers of the
smoke scale are meaningless; runs, analysis from metrics alone, report and
figures are what is tested)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from grokspec.cli import main
from grokspec.repro.layout import PlanMissing
from grokspec.repro.paper import PAPER
from grokspec.repro.plan import mixing_window, plan_experiments
from grokspec.repro.reproduce import reproduce
from grokspec.repro.scales import SCALES, control_config, task_config
from grokspec.repro.stats import bootstrap_ci

REQUIRED_QUALITY_KEYS = {
    "rule",
    "grokking_runs",
    "controls",
    "before_onset",
    "after_onset",
    "missed",
    "false_alarms",
    "median_lead_onset",
    "median_test_acc_at_alarm",
    "auroc",
}


def test_paper_numbers_are_the_papers():
    # Typed from PAPER.md's table independently of grokspec.repro.paper.
    expected = {
        "t_grok_mean": 14360,
        "h_star_mean": 0.609,
        "lead_collapse_mean": 1020,
        "corr_norm_entropy": -0.248,
        "mixing_delay": 5020,
        "law_gamma": 1.65,
        "law_c1": 2.45e5,
        "norm_matched_grokked": "28/30",
    }
    assert {k: PAPER[k] for k in expected} == expected


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_scales_score_enough_runs_on_equal_terms(name):
    scale = SCALES[name]
    experiments = plan_experiments(scale)
    scored_grokking = sum(len(e.seeds) - len(e.tuning_seeds) for e in experiments if e.role == "grokking")
    scored_controls = sum(len(e.seeds) - len(e.tuning_seeds) for e in experiments if e.role == "control")
    assert scored_grokking >= 20 and scored_controls >= 15
    assert all(len(e.seeds) - len(e.tuning_seeds) >= 5 for e in experiments if e.role == "control"), "≥ 5 seeds each"
    assert set(scale.plateau_tuning_seeds) < set(scale.plateau_seeds), "tuning seeds are never all the seeds"
    assert {e.config_dict["eval_every"] for e in experiments} == {100}, "rules count evaluations: one cadence"
    assert all(e.config_dict["log_weight_entropies"] for e in experiments), "the weight side needs no checkpoints"
    assert all(e.config_dict["checkpoint_every"] > e.config_dict["steps"] for e in experiments)
    plateau = next(e for e in experiments if e.group == "plateau")
    assert plateau.config_dict["train_fraction"] < task_config(scale, "add").train_fraction


def test_controls_cannot_learn_the_task_as_configured():
    scale = SCALES["gpu"]
    assert control_config(scale, "wd0").weight_decay == 0.0
    assert control_config(scale, "shuffled-train").shuffle_labels == "train"
    assert control_config(scale, "shuffled-test").shuffle_labels == "test"
    assert control_config(scale, "mlp").model == "mlp"
    budgets = {control_config(scale, name).steps for name in scale.controls}
    assert budgets == {scale.control_steps} and scale.control_steps >= scale.plateau.steps
    assert SCALES["cpu"].control_steps >= 5000, "longer than the plateau regime's T_grok (≈ 4,100 steps on the GPU run)"
    with pytest.raises(ValueError, match="unknown control"):
        plan_experiments(scale, ("mlp", "bogus"))
    keys = [e.key for e in plan_experiments(scale, ("shuffled-test",))]
    assert "control/shuffled-test" in keys and "control/mlp" not in keys


def test_mixing_window_and_statistics():
    config = task_config(SCALES["cpu"], "add")
    assert mixing_window([1800, 2000, None, 2200], config) == (1000, 3000)
    assert mixing_window([None], config) == (1500, 4500), "half the budget stands in for T_grok"
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci([1.0]) is None


def test_reproduce_refuses_bad_usage(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(
        main, ["reproduce", "--scale", "smoke", "--out", str(tmp_path), "--controls", "mlp,nonsense", "--device", "cpu"]
    )
    assert bad.exit_code == 2 and "unknown control 'nonsense'" in bad.output
    missing = runner.invoke(main, ["reproduce", "--out", str(tmp_path / "never"), "--analyse-only"])
    assert missing.exit_code == 2 and "plan.json" in missing.output
    both = runner.invoke(main, ["reproduce", "--out", str(tmp_path), "--analyse-only", "--train-only"])
    assert both.exit_code == 2
    with pytest.raises(ValueError, match="unknown scale"):
        reproduce(tmp_path, "huge")
    with pytest.raises(PlanMissing):
        reproduce(tmp_path / "nothing", "smoke", train=False)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reproduce_smoke_end_to_end_and_rebuild_from_metrics(tmp_path):
    result = CliRunner().invoke(
        main,
        ["reproduce", "--scale", "smoke", "--out", str(tmp_path), "--controls", "shuffled-train", "--device", "cpu", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    for name in ("report.md", "report.json", "plan.json", "fig_entropy_accuracy.png", "fig_weights.png"):
        assert (tmp_path / name).exists(), name
    data = json.loads((tmp_path / "report.json").read_text())
    keys = {e["key"] for e in data["setup"]["experiments"]}
    assert "control/shuffled-train" in keys and "control/mlp" not in keys, "controls come from the CLI"
    assert data["mlp_control"] is None and set(data["controls"]) == {"shuffled-train"}
    smoke = SCALES["smoke"]
    assert data["threshold"]["per_task"]["add"]["runs"] == len(smoke.seeds)
    assert data["alarm_quality"] and all(set(q) >= REQUIRED_QUALITY_KEYS for q in data["alarm_quality"])
    alarms = data["alarms"]
    scored = {n for q in [alarms] for n in alarms["tuning_runs"]}
    assert f"plateau/add/seed_{smoke.plateau_tuning_seeds[0]}" in scored
    for q in data["alarm_quality"]:
        assert q["before_onset"] + q["after_onset"] + q["missed"] == q["grokking_runs"]
        assert q["false_alarms"] <= q["controls"]
    total = sum(alarms["scored_grokking_runs"].values()) + sum(alarms["scored_controls"].values()) + len(alarms["left_out"])
    tuning = len(smoke.plateau_tuning_seeds) + len(smoke.control_tuning_seeds)
    all_runs = len(smoke.tasks) * len(smoke.seeds) + len(smoke.plateau_seeds) + len(smoke.control_seeds)
    assert total + tuning == all_runs, "every run is tuned on, scored, or listed as left out"
    text = (tmp_path / "report.md").read_text()
    for heading in ("## Summary", "## 1.", "## 7.", "## 8.", "## Where we differ"):
        assert heading in text
    # The report is rebuilt from metrics.jsonl and config.json alone.
    for checkpoint in tmp_path.rglob("*.safetensors"):
        checkpoint.unlink()
    (tmp_path / "report.json").unlink()
    again = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path), "--analyse-only", "--quiet"])
    assert again.exit_code == 0, again.output
    rebuilt = json.loads((tmp_path / "report.json").read_text())
    assert rebuilt["alarm_quality"] == data["alarm_quality"] and rebuilt["threshold"]["pooled"] == data["threshold"]["pooled"]
