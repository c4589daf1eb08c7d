"""Section 8: the early warning, measured before test accuracy moves."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, median_ci_text

__all__ = ["headline", "render"]

_COLUMNS = (
    "| rule | tuned on | grokking runs | controls | alarm before onset | after onset | missed | false alarms "
    "| median lead to onset [95% CI] | median lead to T_grok [95% CI] | median test acc at alarm | AUROC |"
)


def _row(q: dict[str, Any]) -> str:
    cells = [
        q["rule"],
        q["tuned_on"],
        str(q["grokking_runs"]),
        str(q["controls"]),
        str(q["before_onset"]),
        str(q["after_onset"]),
        str(q["missed"]),
        f"{q['false_alarms']}/{q['controls']}",
        median_ci_text(q["median_lead_onset"], q["median_lead_onset_ci"]),
        median_ci_text(q["median_lead_grok"], q["median_lead_grok_ci"]),
        f(q["median_test_acc_at_alarm"]),
        f(q["auroc"], 2),
    ]
    return "| " + " | ".join(cells) + " |"


def _table(qualities: list[dict[str, Any]]) -> list[str]:
    return [_COLUMNS, "| " + " | ".join(["---"] * 12) + " |", *(_row(q) for q in qualities)]


def headline(report: dict[str, Any]) -> str:
    """The README-ready sentence: the default rule's hit rate, false-alarm rate and lead."""
    alarms = report["alarms"]
    best = alarms["best_rule"]
    plateau = next((q for q in alarms["alarm_quality_by_regime"].get("plateau", []) if q["rule"] == best), None)
    pooled = next(q for q in alarms["alarm_quality"] if q["rule"] == best)
    text = f"The default alarm, {best}, "
    if plateau:
        text += (
            f"warned before test accuracy reached its onset level in {plateau['before_onset']} of {plateau['grokking_runs']} "
            f"plateau-regime runs, a median {f(plateau['median_lead_onset'], 0)} steps before onset "
            f"({f(plateau['median_lead_grok'], 0)} before T_grok) at a median test accuracy of "
            f"{f(plateau['median_test_acc_at_alarm'])}; "
        )
    text += (
        f"over all {pooled['grokking_runs']} scored grokking runs it warned before onset in {pooled['before_onset']}, "
        f"and it raised false alarms in {pooled['false_alarms']} of {pooled['controls']} negative controls "
        f"(AUROC {f(pooled['auroc'], 2)})."
    )
    return text


def _false_alarm_lines(alarms: dict[str, Any]) -> list[str]:
    kinds = list(alarms["false_alarms_by_control"])
    lines = [
        "| rule | " + " | ".join(f"{k} ({alarms['scored_controls'][k]})" for k in kinds) + " |",
        "| " + " | ".join(["---"] * (len(kinds) + 1)) + " |",
    ]
    rules = [q["rule"] for q in alarms["alarm_quality"]]
    for rule in rules:
        lines.append(f"| {rule} | " + " | ".join(str(alarms["false_alarms_by_control"][k].get(rule, "—")) for k in kinds) + " |")
    return lines


def render(report: dict[str, Any]) -> list[str]:
    alarms = report["alarms"]
    scored = ", ".join(f"{n} {k}" for k, n in alarms["scored_grokking_runs"].items())
    controls = ", ".join(f"{n} {k}" for k, n in alarms["scored_controls"].items())
    lines = [
        "## 8. The early warning: alarm quality",
        "",
        "Every rule is measured the same way (docs/ALARMS.md): a grokking run's alarm is *before onset* when it fires "
        "before test accuracy reaches the onset level, *after onset* otherwise, *missed* when it never fires; any alarm in "
        "a negative control is a *false alarm*. Leads are T_onset − alarm and T_grok − alarm; AUROC separates grokking "
        "runs (the rule's statistic before their onset) from controls (over the whole run).",
        "",
        f"Parameters were tuned on {len(alarms['tuning_runs'])} runs ({', '.join(alarms['tuning_runs'])}) and every rule is "
        f"scored on the others: grokking runs {scored}; controls {controls}."
        + (f" Left out: {'; '.join(alarms['left_out'])}." if alarms["left_out"] else ""),
        "",
        "All scored runs:",
        "",
        *_table(alarms["alarm_quality"]),
    ]
    for regime, qualities in alarms["alarm_quality_by_regime"].items():
        lines += ["", f"The {regime} regime only (with every control):", "", *_table(qualities)]
    lines += ["", "False alarms by control:", "", *_false_alarm_lines(alarms), ""]
    j = alarms["criterion_j"]
    pooled_j = alarms["pooled_j"]
    pooled_best = max(pooled_j, key=lambda r: pooled_j[r])
    lines += [
        f"**The default rule** is chosen by {alarms['criterion']}: **{alarms['best_rule']}** "
        f"(J = {f(j[alarms['best_rule']], 2)}). "
        + (
            f"Over all scored runs pooled the best J would be {pooled_best}'s ({f(pooled_j[pooled_best], 2)}; the default's "
            f"{f(pooled_j[alarms['best_rule']], 2)}): the companion regime, where onset follows memorization within a few "
            "evaluations, rewards a rule that fires at memorization — and the same rule fires in the controls that memorize."
            if pooled_best != alarms["best_rule"]
            else ""
        ),
        "",
        headline(report),
        "",
    ]
    return lines
