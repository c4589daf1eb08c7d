"""PAPER.md's table: the only numbers of a reproduction report typed in by hand."""

from __future__ import annotations

from typing import Any

__all__ = ["PAPER"]

PAPER: dict[str, Any] = {
    "t_grok_mean": 14360,
    "t_grok_ci": [12140, 17100],
    "train_acc_1_step": 500,
    "h_start": 0.78,
    "h_star_mean": 0.609,
    "h_star_ci": [0.595, 0.624],
    "h_star_range": [0.584, 0.654],
    "h_star_by_task": {"add": 0.605, "mul": 0.589, "sub": 0.589, "s5": 0.655},
    "collapse_before_grok": "10/10",
    "lead_collapse_mean": 1020,
    "lead_collapse_ci": [890, 1140],
    "corr_norm_entropy": -0.248,
    "mixing_delay": 5020,
    "mixing_p": 0.044,
    "norm_matched_delay": 8304,
    "norm_matched_p": 5e-5,
    "norm_matched_grokked": "28/30",
    "mlp_entropy": [0.76, 0.15],
    "mlp_test_acc": "near 0 for 80,000 steps",
    "law_c1": 2.45e5,
    "law_gamma": 1.65,
    "law_r2": 0.54,
    "law_interval": 6000,
}
