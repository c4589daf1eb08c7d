"""Events (SPEC §1), calibration, prediction, and reports on grokspec runs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from configs import TINY
from grokspec.cli import main
from grokspec.events import collapse_step, crossing_step, detect_events, grok_step
from grokspec.lab.config import TrainConfig
from grokspec.lab.train import train
from grokspec.scan.calibrate import calibrate_table, fit_power_law
from grokspec.scan.report import predict
from grokspec.scan.scan import ScanOptions, scan

NAN = float("nan")


def test_crossing_is_a_fall_through_the_threshold():
    steps = [0, 100, 200, 300, 400, 500]
    assert crossing_step(steps, [0.58, 0.80, 0.75, 0.60, 0.62, 0.55], 0.61) == 300, "the low start is not a crossing"
    assert crossing_step([*steps, 600], [0.58, 0.80, 0.75, 0.60, 0.62, 0.55, 0.5], 0.61, persist=2) == 500
    assert crossing_step(steps, [0.58, 0.80, 0.75, 0.60, 0.62, 0.55], 0.61, persist=2) is None, "not yet persisted"
    assert crossing_step(steps, [0.9, 0.8, 0.7, 0.7, 0.7, 0.7], 0.61) is None
    assert crossing_step(steps, [0.5, 0.4, 0.45, 0.3, 0.2, 0.1], 0.61) == 0, "never above: crossed from the start"
    assert crossing_step(steps, [0.9, NAN, 0.5, None, 0.4, 0.3], 0.61) == 200, "NaN and missing points are ignored"
    assert crossing_step([300, 0, 100, 200], [0.5, 0.9, 0.8, 0.7], 0.61) == 300, "points are taken in step order"
    with pytest.raises(ValueError):
        crossing_step(steps, [0.5] * 6, 0.6, persist=0)


def test_collapse_uses_the_papers_window_rule():
    steps = list(range(0, 1000, 100))
    values = [0.80, 0.81, 0.80, 0.79, 0.78, 0.77, 0.74, 0.70, 0.65, 0.60]
    # v(t_{i-4}) - v(t_i) > 0.05 first at i = 7 (0.79 at step 300 -> 0.70 at 700: 0.09; at i = 6: 0.80 - 0.74 = 0.06)
    assert collapse_step(steps, values) == 600
    assert collapse_step(steps, values, drop=0.1) == 800
    assert collapse_step(steps[:4], values[:4]) is None, "fewer points than the window"
    flat = [0.8] * 10
    assert collapse_step(steps, flat) is None


def test_events_status_and_leads():
    steps = [0, 100, 200, 300, 400, 500]
    values = [0.6, 0.8, 0.75, 0.62, 0.58, 0.50]
    acc = [0.0, 0.0, 0.1, 0.5, 0.9, 0.995]
    events = detect_events(steps, values, acc, threshold=0.61, window=3)
    assert (events.crossing, events.t_grok, events.lead_cross) == (400, 500, 100)
    assert events.t_collapse == 300 and events.lead_collapse == 200 and events.status == "grokked"
    crossed = detect_events(steps, values, [0.0] * 6, threshold=0.61)
    assert crossed.status == "crossed" and crossed.lead_cross is None
    assert detect_events(steps, [0.9] * 6, [0.0] * 6, threshold=0.61).status == "not-crossed"
    # Accuracy on its own steps.
    events = detect_events(steps, values, [0.2, 0.999], accuracy_steps=[250, 450], threshold=0.61)
    assert events.t_grok == 450 and events.lead_cross == 50
    assert grok_step([0, 1, 2], [0.5, 0.99, 1.0]) == 1


def test_power_law_fit_recovers_known_parameters():
    gaps = np.linspace(0.01, 0.3, 40)
    delays = 2.45e5 * gaps**1.65
    law = fit_power_law(gaps, delays)
    assert law["c1"] == pytest.approx(2.45e5, rel=1e-9) and law["gamma"] == pytest.approx(1.65, rel=1e-9)
    assert law["r2"] == pytest.approx(1.0) and law["interval_steps"] < 1e-6
    assert fit_power_law(gaps[:2], delays[:2]) is None


def synthetic_table(runs: dict[str, tuple[int, float]], c1=30000.0, gamma=1.5) -> pd.DataFrame:
    """Runs whose H̃ rises to 0.85, then falls so that T_grok − t = c1 (v − H*)^γ exactly."""
    rows = []
    for run, (t_grok, h_star) in runs.items():
        for t in range(0, t_grok + 1000, 100):
            if t <= 300:
                v = 0.6 + 0.25 * t / 300
            elif t < t_grok:
                v = h_star + ((t_grok - t) / c1) ** (1 / gamma)
            else:
                v = h_star - 0.01 * (t - t_grok) / 100
            v = min(v, 0.85)
            rows.append(
                {
                    "run": run,
                    "checkpoint": "metrics.jsonl",
                    "step": t,
                    "step_source": "log",
                    "tensor": "",
                    "rows": None,
                    "cols": None,
                    "dtype": "",
                    "metric": "repr_entropy",
                    "value": v,
                }
            )
            rows.append({**rows[-1], "metric": "test_acc", "value": 1.0 if t >= t_grok else 0.01})
    return pd.DataFrame(rows)


def test_calibration_from_runs_that_grokked():
    table = synthetic_table({"a": (1500, 0.60), "b": (2000, 0.62), "c": (2500, 0.61)})
    never = synthetic_table({"d": (99999, 0.6)})
    never = never[never["step"] < 3000]
    calibration = calibrate_table(pd.concat([table, never]), bootstrap=500)
    assert calibration["runs"] == ["a", "b", "c"] and calibration["runs_not_grokked"] == ["d"]
    rep = calibration["series"]["representation"]
    assert rep["h_star"] == pytest.approx(0.61, abs=1e-9)
    assert rep["h_star_range"] == pytest.approx([0.60, 0.62])
    assert rep["h_star_ci"][0] <= 0.61 <= rep["h_star_ci"][1] and rep["n_runs"] == 3


def test_calibration_recovers_the_time_to_grok_law():
    table = synthetic_table({"a": (1500, 0.61), "b": (2000, 0.61), "c": (2500, 0.61)}, c1=30000.0, gamma=1.5)
    law = calibrate_table(table, bootstrap=100)["series"]["representation"]["power_law"]
    assert law["gamma"] == pytest.approx(1.5, rel=1e-6) and law["c1"] == pytest.approx(30000.0, rel=1e-6)
    assert law["r2"] == pytest.approx(1.0) and law["loo_mae_steps"] == pytest.approx(0.0, abs=1e-6)


def test_prediction_from_the_power_law():
    law = {"c1": 1000.0, "gamma": 2.0, "interval_steps": 50.0}
    p = predict(800, 0.71, law, 0.61)
    assert p.predicted_t_grok == round(800 + 1000 * 0.1**2) and p.interval == (800, 860)
    assert predict(900, 0.55, law, 0.61).predicted_t_grok == 900, "below H*: imminent"


def test_scanning_a_grokspec_run_rebuilds_the_representation_entropy(tmp_path):
    config = dataclasses.replace(TINY, checkpoint_every=40)
    train(config, tmp_path / "run")
    result = scan(tmp_path, cache_path=None)
    table = result.table
    computed = table[(table["metric"] == "repr_entropy") & (table["step_source"] != "log")].set_index("step")["value"]
    logged = table[(table["metric"] == "repr_entropy") & (table["step_source"] == "log")].set_index("step")["value"]
    assert sorted(computed.index) == [0, 40, 80, 120, 160, 200]
    for step, value in computed.items():
        assert value == pytest.approx(logged[step], abs=1e-6), step
    run = result.report.runs[0]
    assert run.kind == "grokspec" and run.primary_series == "representation" and run.grok_metric == "test_acc"
    assert run.threshold == 0.61 and run.threshold_source == "default"
    assert set(table[table["step_source"] == "log"]["metric"]) >= {"train_loss", "test_acc", "param_norm", "intervention"}


def test_calibration_file_drives_thresholds_and_predictions(tmp_path):
    config = dataclasses.replace(TINY, checkpoint_every=40)
    train(config, tmp_path / "run")
    calibration = {
        "format": "grokspec-calibration/1",
        "series": {
            "representation": {"h_star": 0.5, "power_law": {"c1": 1e4, "gamma": 1.0, "interval_steps": 100.0}},
            "readout.weight": {"h_star": 0.95, "power_law": None},
        },
    }
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration))
    report = scan(tmp_path / "run", ScanOptions(calibration=path), cache_path=None).report
    run = report.runs[0]
    assert run.threshold == 0.5 and run.threshold_source == "calibration"
    readout = next(s for s in run.series if s.series == "readout.weight")
    assert readout.threshold == 0.95 and readout.threshold_source == "calibration"
    other = next(s for s in run.series if s.series == "final_norm.weight" or s.series.endswith("linear1.weight"))
    assert other.threshold is None, "weights have no default threshold"
    # The tiny run never groks and its H̃ stays above the calibrated H* = 0.5,
    # so the law must predict a T_grok after the last evaluation.
    representation = next(s for s in run.series if s.series == "representation")
    assert run.t_grok is None and representation.last is not None and representation.last > 0.5
    assert run.prediction is not None and run.prediction.predicted_t_grok > run.prediction.from_step
    # --threshold overrides the calibration for the representation.
    report = scan(tmp_path / "run", ScanOptions(calibration=path, threshold=0.7), cache_path=None).report
    assert report.runs[0].threshold_source == "option"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a grokspec calibration"):
        scan(tmp_path / "run", ScanOptions(calibration=bad), cache_path=None)


def _hf_series(root, grok_at: int) -> None:
    """An HF-Trainer-like output folder: checkpoint-N/model.safetensors whose
    one weight matrix loses entropy over time, and trainer_state.json with an
    eval_accuracy that reaches 1.0 at `grok_at`."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(grok_at)
    history = []
    for step in range(100, 1100, 100):
        decay = np.exp(-np.arange(16) * step / 2000.0)
        matrix = (rng.standard_normal((16, 16)) * decay).astype(np.float32)
        folder = root / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file({"layer.weight": matrix}, str(folder / "model.safetensors"))
        history.append({"step": step, "eval_accuracy": 1.0 if step >= grok_at else 0.02})
    for step in range(100, 1100, 100):
        state = {"global_step": step, "log_history": [h for h in history if h["step"] <= step]}
        (root / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))


def test_calibrate_command(tmp_path):
    _hf_series(tmp_path / "a", 600)
    _hf_series(tmp_path / "b", 800)
    out = tmp_path / "cal.json"
    result = CliRunner().invoke(main, ["calibrate", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["format"] == "grokspec-calibration/1" and len(data["runs"]) == 2
    assert data["series"]["layer.weight"]["n_runs"] == 2


def test_calibrate_command_refuses_runs_that_never_grokked(tmp_path):
    train(TINY, tmp_path / "a")  # (a+b) mod 11 in 200 steps never reaches test accuracy 0.99
    result = CliRunner().invoke(main, ["calibrate", str(tmp_path / "a"), "--out", str(tmp_path / "cal.json")])
    assert result.exit_code == 2 and "none of the runs grokked" in result.output
    assert not (tmp_path / "cal.json").exists()


@pytest.mark.slow
def test_default_run_crosses_and_collapses_before_it_groks(tmp_path):
    summary = train(TrainConfig(stop_after_grok=300, checkpoint_every=500), tmp_path / "run")
    assert summary.t_grok is not None and summary.t_grok <= 3000
    assert 0.55 <= summary.entropy_at_grok <= 0.67
    run = scan(tmp_path, cache_path=None).report.runs[0]
    assert run.status == "grokked" and run.t_grok is not None
    assert run.crossing is not None and run.crossing < run.t_grok
    assert run.t_collapse is not None and run.t_collapse < run.t_grok
    assert run.series[0].min is not None and not math.isnan(run.series[0].min)


def _plateau_metrics(run_dir, *, fall_at: int) -> None:
    """A grokspec run dir with only config.json and metrics.jsonl: memorized
    at 500, H̃ 0.83 with one single-evaluation dip at 1600, a fall of 0.025
    per evaluation from `fall_at`, onset at 3000, T_grok at 3500."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(TrainConfig(device="cpu").to_json())
    rows = []
    for t in range(0, 4001, 100):
        h = 0.6 + 0.23 * t / 500 if t < 500 else 0.83 - (0.05 if t == 1600 else 0.0)
        if t >= fall_at:
            h = 0.83 - 0.025 * (t - fall_at) / 100
        test = 0.995 if t >= 3500 else 0.2 if t >= 3000 else 0.01
        rows.append({"step": t, "train_acc": min(1.0, t / 500), "test_acc": test, "repr_entropy": h})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_json_has_onset_and_the_default_alarm(tmp_path):
    _plateau_metrics(tmp_path / "early", fall_at=2500)
    _plateau_metrics(tmp_path / "never", fall_at=10**6)
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--no-representation", "--no-cache", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    runs = {r["run"]: r for r in json.loads(result.output)["runs"]}
    early = runs["early"]
    assert (early["onset"], early["t_grok"]) == (3000, 3500)
    # 0.04 below the lagged plateau from 2700 (> 3000 − 0.025·2 evaluations), persisted at 2800; the dip at 1600 is ignored.
    assert early["alarm"] == {
        "rule": "plateau-fall (> 0.04 below the plateau, lag 8, 2 evals)",
        "step": 2800,
        "test_acc": 0.01,
        "lead_onset": 200,
        "lead_grok": 700,
    }
    assert runs["never"]["alarm"] is None and runs["never"]["onset"] == 3000
    summary = CliRunner().invoke(main, ["scan", str(tmp_path), "--no-representation", "--no-cache", "--quiet"])
    assert "2800 (0.010)" in summary.output, "the terminal summary shows the alarm and the test accuracy then"
    assert (tmp_path / "grokspec-scan" / "trajectories.png").exists()
