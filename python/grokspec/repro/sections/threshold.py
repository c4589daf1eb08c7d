"""Section 1: the threshold and the lead time, against T_grok and against onset."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, interval, mean_ci, value_range

__all__ = ["render", "sentence"]


def _counts(text: str) -> tuple[int, int]:
    a, b = (int(x) for x in text.split("/"))
    return a, b


def sentence(pooled: dict[str, Any], p: dict[str, Any]) -> str:
    """What the numbers say about the paper's threshold and lead, written from them."""
    if not pooled["h_at_grok"]["n"]:
        return "No transformer run grokked within its budget, so H̃ at T_grok and the lead times are undefined at this scale."
    ci = pooled["h_at_grok"].get("ci")
    text = f"H̃ at T_grok averages {mean_ci(pooled['h_at_grok'])} over {pooled['h_at_grok']['n']} runs. "
    if ci:
        overlap = not (ci[1] < p["h_star_ci"][0] or ci[0] > p["h_star_ci"][1])
        text += (
            f"Its 95% CI {'overlaps' if overlap else 'does not overlap'} the paper's {interval(p['h_star_ci'])}: "
            f"the threshold {'reproduces' if overlap else 'does not reproduce'} at this scale. "
        )
    text += f"T_collapse came before T_grok in {pooled['collapse_before_grok']} runs that grokked. "
    if pooled["lead_collapse"]["n"] and pooled["t_grok"]["mean"]:
        share = 100 * pooled["lead_collapse"]["mean"] / pooled["t_grok"]["mean"]
        paper_share = 100 * p["lead_collapse_mean"] / p["t_grok_mean"]
        text += (
            f"The mean lead is {f(pooled['lead_collapse']['mean'], 0)} steps, {share:.0f}% of the mean T_grok "
            f"(the paper: {p['lead_collapse_mean']:,} of {p['t_grok_mean']:,}, {paper_share:.0f}%). "
        )
    before, total = _counts(pooled["collapse_before_onset"])
    text += (
        f"Against onset (test accuracy ≥ 0.1, where generalization becomes visible) the collapse came first in only "
        f"{before} of {total} runs, with a mean lead of {f(pooled['lead_onset_collapse']['mean'], 0)} steps: "
        + (
            "in most runs the paper's warning is not early in the sense users need. "
            if before < total / 2
            else "it is an early warning in most runs. "
        )
    )
    crossed, total = _counts(pooled["crossing_before_grok"])
    crossed_onset, _ = _counts(pooled["crossing_before_onset"])
    text += (
        f"The fixed threshold is weaker still: H̃ fell below 0.61 before T_grok in {crossed} of {total} runs "
        f"(mean lead {f(pooled['lead_cross']['mean'], 0)} steps) and before onset in {crossed_onset}."
    )
    return text


def render(report: dict[str, Any]) -> list[str]:
    th = report["threshold"]
    lines = [
        "## 1. Threshold and lead time",
        "",
        "The companion regime (train fraction 0.5). Leads are against T_grok (the paper's) and against T_onset "
        "(test accuracy ≥ 0.1), the first evaluation at which generalization is visible.",
        "",
        "| task | grokked | T_onset | T_grok | H̃ at T_grok | range | collapse before T_grok / onset | lead to T_grok (collapse) "
        "| lead to onset (collapse) | lead to T_grok (crossing) | lead to onset (crossing) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, t in th["per_task"].items():
        cells = [
            task,
            f"{t['grokked']}/{t['runs']}",
            mean_ci(t["t_onset"], 0),
            mean_ci(t["t_grok"], 0),
            mean_ci(t["h_at_grok"]),
            value_range(t["h_at_grok"]),
            f"{t['collapse_before_grok']} / {t['collapse_before_onset']}",
            mean_ci(t["lead_collapse"], 0),
            mean_ci(t["lead_onset_collapse"], 0),
            mean_ci(t["lead_cross"], 0),
            mean_ci(t["lead_onset_cross"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    figure = report.get("figures", {}).get("entropy_accuracy", "")
    return [*lines, "", f"![entropy and accuracy]({figure})", "", sentence(th["pooled"], report["paper"]), ""]
