"""`grokspec reproduce` end to end on tiny models (the numbers are meaningless;
the pipeline — runs, scan, analysis, report, figures — is what is tested)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from configs import TINY

from grokspec.repro.plan import SCALES, Scale, reproduce
from grokspec.repro.analysis import PAPER, bootstrap_ci


def tiny_scale() -> Scale:
    transformer = dataclasses.replace(TINY, train_fraction=0.8, lr=1e-2, steps=300, eval_every=20, checkpoint_every=60)
    return Scale(
        name="tiny",
        seeds=(0, 1),
        tasks=("add", "sub"),
        transformer=transformer,
        s5_fraction=0.1,
        mlp=dataclasses.replace(transformer, model="mlp", p=7, steps=200),
        control_transformer=dataclasses.replace(transformer, p=7, steps=200),
        control_seeds=(0,),
        intervention_seeds=(0, 1),
        intervention_steps=300,
        mixing_fraction=0.5,
        description="a smoke test on tiny models",
    )


@pytest.mark.slow
def test_reproduce_writes_a_complete_report(tmp_path):
    report = reproduce(tmp_path, tiny_scale())
    for name in ("report.md", "report.json", "fig_entropy_accuracy.png", "fig_norm_entropy.png", "fig_mlp_vs_transformer.png", "fig_intervention.png", "fig_weights.png"):
        assert (tmp_path / name).exists(), name
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["paper"] == PAPER
    assert set(data["threshold"]["per_task"]) == {"add", "sub"}
    assert data["threshold"]["per_task"]["add"]["runs"] == 2
    assert data["setup"]["seeds"] == [0, 1] and data["setup"]["total_wall_seconds"] > 0
    assert data["mlp_control"]["mlp"]["runs"] == 1
    assert set(data["intervention"]["mixing"]["delay_per_seed"]) == {"0", "1"}
    assert data["weights"]["tensors"], "per-matrix weight series from the scan"
    text = (tmp_path / "report.md").read_text()
    for heading in ("## Summary", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## Where we differ"):
        assert heading in text
    assert "| finding | ours | paper |" in text
    # Resuming: a second call trains nothing new and gives the same numbers.
    again = reproduce(tmp_path, tiny_scale())
    assert again["threshold"]["pooled"] == report["threshold"]["pooled"]


def test_scales_and_statistics():
    assert set(SCALES) == {"cpu", "paper"}
    assert SCALES["paper"].transformer.steps == 50000 and "s5" in SCALES["paper"].tasks
    assert SCALES["cpu"].seeds == tuple(range(10))
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci([1.0]) is None
    with pytest.raises(ValueError, match="unknown scale"):
        reproduce("/tmp/never", "huge")
