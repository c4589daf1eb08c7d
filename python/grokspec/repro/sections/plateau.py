"""Section 7: the plateau regime, where memorization ends long before generalization."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, mean_ci

__all__ = ["render"]


def render(report: dict[str, Any]) -> list[str]:
    plateau = report.get("plateau")
    if not plateau:
        return []
    config = plateau["config"]
    ratio = plateau["grok_over_memorization"]
    before, total = (int(x) for x in plateau["collapse_before_onset"].split("/"))
    lines = [
        "## 7. The plateau regime",
        "",
        f"({config['task']}) mod {config['p']} at train fraction {config['train_fraction']}, batch {config['batch_size']}, "
        f"{plateau['runs']} seeds "
        f"(seeds {', '.join(map(str, plateau['tuning_seeds']))} tune the alarm rules and are not scored in section 8).",
        "",
        "| runs grokked | train accuracy 1.0 at | T_onset | T_grok | T_grok / memorization | H̃ at memorization | H̃ at T_grok |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {plateau['grokked']}/{plateau['runs']} | {mean_ci(plateau['train_acc_1_step'], 0)} | "
        f"{mean_ci(plateau['t_onset'], 0)} | "
        f"{mean_ci(plateau['t_grok'], 0)} | {mean_ci(ratio, 1)} (≥ 4 in {plateau['runs_with_ratio_at_least_4']}) | "
        f"{mean_ci(plateau['h_at_train_acc_1'])} | {mean_ci(plateau['h_at_grok'])} |",
        "",
        "| paper's rules | before T_grok | lead to T_grok | before onset | lead to onset |",
        "| --- | --- | --- | --- | --- |",
        f"| collapse (0.05 over 5 evals) | {plateau['collapse_before_grok']} | {mean_ci(plateau['lead_collapse'], 0)} | "
        f"{plateau['collapse_before_onset']} | {mean_ci(plateau['lead_onset_collapse'], 0)} |",
        f"| crossing (H̃ < 0.61) | {plateau['crossing_before_grok']} | {mean_ci(plateau['lead_cross'], 0)} | "
        f"{plateau['crossing_before_onset']} | {mean_ci(plateau['lead_onset_cross'], 0)} |",
        "",
        f"Here the training set is memorized after {f(plateau['train_acc_1_step']['mean'], 0)} steps and T_grok comes "
        f"{f(ratio['mean'], 1)} times later: a real plateau. The paper's collapse rule fires before onset in {before} of "
        f"{total} runs; the median test accuracy when it fires is in report.json. Section 8 measures every rule on these "
        "runs against negative controls.",
        "",
    ]
    figure = report.get("figures", {}).get("alarms")
    return lines + ([f"![plateau regime with alarms]({figure})", ""] if figure else [])
