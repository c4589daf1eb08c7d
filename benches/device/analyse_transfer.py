"""The default alarm rule out of sample: tasks and train fractions it was not tuned on.

    python benches/device/analyse_transfer.py RUNS_DIR OUT_DIR

RUNS_DIR holds one folder per experiment with seed_N run dirs, as
``benches/device/transfer.sh`` leaves them (folders named ``control-*`` are the
negative controls). A run of an experiment that did not grok before the time
limit cut it is left out of the alarm tables: it is neither a grokking run nor
a negative control (it may grok later); the table of experiments counts them.
The rules keep the parameters tuned on (a+b) mod 97 at
train fraction 0.3 (docs/ALARMS.md); nothing is tuned here. Writes
OUT_DIR/report.json, OUT_DIR/report.md and OUT_DIR/fig_trajectories.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from analyse_paper_main import plot, read_group, summarize

from grokspec.alarms import AlarmRule, CollapseRule, PlateauFallRule, ThresholdRule, Trajectory
from grokspec.repro.formatting import f, mean_ci
from grokspec.scan.alarm_quality import FALSE_ALARM, alarm_quality
from grokspec.scan.run_metrics import read_trajectory, run_dirs_under

RULES: tuple[AlarmRule, ...] = (PlateauFallRule(), ThresholdRule(), CollapseRule())


def _trajectories(folder: Path) -> list[tuple[str, Trajectory]]:
    return [(str(d), read_trajectory(d)) for d in run_dirs_under(folder)]


def _grokked(folder: Path) -> list[tuple[str, Trajectory]]:
    return [(name, t) for name, t in _trajectories(folder) if t.t_grok() is not None]


def _quality_row(name: str, q: dict[str, Any]) -> str:
    lead = f(q["median_lead_onset"], 0) if q["median_lead_onset"] is not None else "—"
    return (
        f"| {name} | {q['rule']} | {q['grokking_runs']} | **{q['before_onset']}** | {q['after_onset']} | "
        f"{q['missed']} | {q['false_alarms']}/{q['controls']} | {lead} | {f(q['median_test_acc_at_alarm'], 3)} | "
        f"{f(q['auroc'], 2)} |"
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| experiment | train fraction | grokked | steps trained (max) | T_grok | T_onset | H̃ at T_grok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in report["groups"].items():
        fractions = ", ".join(map(str, s["train_fraction"]))
        lines.append(
            f"| {name} | {fractions} | {s['grokked']}/{s['runs']} | {f(s['steps_trained']['range'][1], 0)} | "
            f"{mean_ci(s['t_grok'], 0)} | "
            f"{mean_ci(s['t_onset'], 0)} | {mean_ci(s['h_at_grok'])} |"
        )
    lines += [
        "",
        f"Alarm quality, every control pooled as negatives ({report['controls']} runs); rules as tuned on "
        "(a+b) mod 97 at 0.3, not retuned:",
        "",
        "| experiment | rule | grokking runs | before onset | after onset | missed | false alarms | "
        "median lead to onset | test acc at alarm | AUROC |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, qualities in report["alarms"].items():
        lines += [_quality_row(name, q) for q in qualities]
    lines += ["", "False alarms by control:", "", "| control | " + " | ".join(report["rules"]) + " |"]
    lines.append("| --- |" + " ---: |" * len(report["rules"]))
    for name, counts in report["false_alarms"].items():
        lines.append(f"| {name} | " + " | ".join(f"{counts[r]}/{counts['runs']}" for r in report["rules"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    runs_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    folders = {d.name: d for d in sorted(runs_dir.iterdir()) if d.is_dir() and any(d.glob("seed_*"))}
    controls = {name: d for name, d in folders.items() if name.startswith("control-")}
    experiments = {name: d for name, d in folders.items() if name not in controls}
    by_group = {name: read_group(name, d) for name, d in folders.items()}
    control_runs = [run for d in controls.values() for run in _trajectories(d)]

    alarms: dict[str, list[dict[str, Any]]] = {}
    grokked = {name: _grokked(d) for name, d in experiments.items()}
    grokked["all experiments"] = [run for runs in grokked.values() for run in runs]
    for name, runs in grokked.items():
        alarms[name] = [alarm_quality(rule, runs + control_runs)[0].to_json() for rule in RULES]
    false_alarms: dict[str, dict[str, int]] = {}
    for name, d in controls.items():
        runs = _trajectories(d)
        counts = {"runs": len(runs)}
        for rule in RULES:
            scores = alarm_quality(rule, runs)[1]
            counts[rule.label()] = sum(1 for s in scores if s.outcome == FALSE_ALARM)
        false_alarms[name] = counts
    report = {
        "groups": {name: summarize(runs) for name, runs in by_group.items()},
        "controls": len(control_runs),
        "rules": [rule.label() for rule in RULES],
        "alarms": alarms,
        "false_alarms": false_alarms,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    plot(by_group, folders, out / "fig_trajectories.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
