"""Section 4: representation mixing."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, mean_ci

__all__ = ["render"]


def render(report: dict[str, Any]) -> list[str]:
    inter = report.get("intervention")
    if not inter:
        return ["## 4. Intervention: representation mixing", "", "The intervention was not run.", ""]
    window = inter["window"]
    lines = [
        "## 4. Intervention: representation mixing",
        "",
        f"Mixing replaces, for each example with probability {inter['mixing_fraction']}, its representation z by another "
        f"example's (a random derangement of the batch) during steps {window[0]}–{window[1]} (from half to one and a half "
        "times the baseline's median T_grok).",
        "",
        "| run | mean H̃ in the window | delay of T_grok (mean [95% CI]) | Mann–Whitney p (one-sided) | grokked in budget |",
        "| --- | --- | --- | --- | --- |",
        f"| baseline | {mean_ci(inter['baseline_window_entropy'])} | — | — | — |",
    ]
    for name, label in (("mixing", "mixing"), ("norm_matched", "norm-matched mixing")):
        i = inter[name]
        lines.append(
            f"| {label} | {mean_ci(i['window_entropy'])} | {mean_ci(i['delay'], 0)} steps | "
            f"{f(i['mann_whitney_p'], 4)} | {i['grokked']} |"
        )
    seeds = len(inter["mixing"]["delay_per_seed"])
    figure = report.get("figures", {}).get("intervention", "")
    return [
        *lines,
        "",
        f"![intervention]({figure})",
        "",
        "Runs that did not grok within the budget count as grokking at the budget (a conservative, censored delay). "
        f"With {seeds} seeds the test has little power; the paper used 10 and 30.",
        "",
    ]
