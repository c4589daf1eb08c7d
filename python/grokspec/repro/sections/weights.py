"""Section 6: the weight side."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, mean_ci

__all__ = ["render"]


def render(report: dict[str, Any]) -> list[str]:
    weights = report["weights"]
    lines = [
        "## 6. The weight side (not in the paper)",
        "",
        "The companion runs' per-matrix weight entropies (power 2, normalized by ln min(m, n)), logged at every "
        "evaluation (`log_weight_entropies`). The representation's lead (collapse rule on the same evaluations) is "
        f"{mean_ci(weights['representation_lead_collapse'], 0)} steps for comparison.",
        "",
        "| tensor | runs grokked | collapsed before T_grok | lead | entropy at start | at T_grok | calibrated H* |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, w in weights["tensors"].items():
        lines.append(
            f"| {name} | {w['grokked']}/{w['runs']} | {w['collapsed_before_grok']} | {mean_ci(w['lead_collapse'], 0)} | "
            f"{f(w['entropy_first']['mean'])} | {f(w['entropy_at_grok']['mean'])} | {f(w['h_star'])} |"
        )
    collapsing = [n for n, w in weights["tensors"].items() if w["grokked"] and w["collapsed_before_grok"] >= 0.8 * w["grokked"]]
    text = (
        f"Weight matrices whose entropy collapses before T_grok in at least 80% of runs: {', '.join(collapsing)}."
        if collapsing
        else "No weight matrix's entropy collapses (by the paper's rule) before T_grok in at least 80% of runs."
    )
    figure = report.get("figures", {}).get("weights", "")
    return [*lines, "", f"![weights]({figure})", "", text + " Section 8 compares the weight side as an alarm.", ""]
