"""Section 2: parameter norm against entropy."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, mean_ci

__all__ = ["render"]


def _sentence(phases: dict[str, Any], p: dict[str, Any]) -> str:
    corr = phases["corr_norm_entropy_pre_grok"]
    if corr is None:
        return "Too few evaluations before T_grok to correlate the parameter norm with H̃."
    falling, total = (int(x) for x in phases["runs_with_falling_norm"].split("/"))
    direction = (
        "falls" if falling == total else "rises" if falling == 0 else f"falls in {falling} of {total} runs and rises in the rest"
    )
    text = (
        f"Before T_grok the parameter norm and H̃ correlate with r = {f(corr)} ({phases['points']} evaluations pooled; "
        f"per run {mean_ci(phases['per_run_corr'])}); the paper reports {p['corr_norm_entropy']}. "
        f"The norm {direction}: from {f(phases['norm_start']['mean'], 1)} at initialization to "
        f"{f(phases['norm_at_grok']['mean'], 1)} at T_grok and {f(phases['norm_end']['mean'], 1)} at the end; "
        f"it is within 5% of its final value by T_grok in {phases['norm_settles_before_grok']} runs that grokked. "
    )
    if falling:
        text += (
            "The paper's 'the norm grows, then plateaus' therefore does not reproduce in direction here "
            "(weight decay 1.0 shrinks the N(0, 1)-initialized embeddings from the start). "
        )
    if (corr > 0) != (p["corr_norm_entropy"] > 0):
        text += (
            "With norm and H̃ both falling, the" if falling == total else "The"
        ) + " correlation has the opposite sign to the paper's."
    return text


def render(report: dict[str, Any]) -> list[str]:
    figure = report.get("figures", {}).get("norm_entropy", "")
    return [
        "## 2. Two phases: parameter norm and entropy",
        "",
        _sentence(report["two_phases"], report["paper"]),
        "",
        f"![norm and entropy]({figure})",
        "",
    ]
