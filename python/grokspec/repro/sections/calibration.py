"""Section 5: the calibration and the time-to-grok law."""

from __future__ import annotations

from typing import Any

from grokspec.repro.formatting import f, interval

__all__ = ["render"]


def _law_sentence(law: dict[str, Any], p: dict[str, Any]) -> str:
    if not law:
        return "Too few runs grokked to fit the time-to-grok law."
    text = f"The paper fits γ = {p['law_gamma']} with R² = {p['law_r2']}; "
    text += f"ours is γ = {f(law['gamma'], 2)} with R² = {f(law['r2'], 2)}"
    if abs(law["gamma"] - p["law_gamma"]) > 0.25 * p["law_gamma"]:
        text += ": the exponent does not reproduce at this scale"
    return text + (
        ". C1 carries the unit of steps and scales with T_grok, so it is not comparable between scales; "
        "the table below is the practical test of the law."
    )


def render(report: dict[str, Any]) -> list[str]:
    cal = report["calibration"]
    law = cal.get("power_law") or {}
    lines = [
        "## 5. Calibration and the time-to-grok law",
        "",
        f"From {cal['runs']} companion runs: H* = {f(cal['h_star'])} (bootstrap 95% CI {interval(cal['h_star_ci'])}, "
        f"range {interval(cal['h_star_range'])}). ΔT = C1 (H̃ − H*)^γ fitted on the points after each run's entropy peak: "
        f"C1 = {f(law.get('c1'))}, γ = {f(law.get('gamma'), 2)}, R² = {f(law.get('r2'), 2)} (log space), leave-one-run-out "
        f"mean absolute error {f(law.get('loo_mae_steps'), 0)} steps, "
        f"95% of residuals within ±{f(law.get('interval_steps'), 0)} steps.",
        "",
        _law_sentence(law, report["paper"]),
        "",
        "How early is the prediction usable? Leave-one-run-out predictions, by how far ahead of T_grok they were made:",
        "",
        "| steps before T_grok | points | median absolute error |",
        "| --- | --- | --- |",
    ]
    for key, value in (cal.get("prediction_by_lead") or {}).items():
        lines.append(f"| {key} | {value['points']} | {f(value['median_abs_error'], 0)} steps |")
    figure = report.get("figures", {}).get("time_to_grok")
    return [*lines, *(["", f"![time to grok]({figure})"] if figure else []), ""]
