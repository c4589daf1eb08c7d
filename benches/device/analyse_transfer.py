"""The default alarm rule out of sample: tasks and train fractions it was not tuned on.

    python benches/device/analyse_transfer.py RUNS_DIR OUT_DIR [REPRODUCTION_RUNS [FRESH_RUNS ...]]

RUNS_DIR holds one folder per experiment with seed_N run dirs, as
``benches/device/transfer.sh`` leaves them (folders named ``control-*`` are the
negative controls). A run of an experiment that did not grok before the time
limit cut it is left out of the alarm tables: it is neither a grokking run nor
a negative control (it may grok later); the table of experiments counts them.
The rules keep the parameters tuned on (a+b) mod 97 at
train fraction 0.3 (docs/ALARMS.md); nothing is tuned here. Writes
OUT_DIR/report.json, OUT_DIR/report.md and OUT_DIR/fig_trajectories.png.

Then the question the transfer raises, answered the same skeptical way: the
plateau-fall grid of the reproduction (``plateau_candidates``) is tuned on
seeds 0–4 of every experiment and control here and scored on seeds 5–9; with
REPRODUCTION_RUNS (the ``runs/`` folder of docs/reproduction/runs.tar.gz) the
tuned rule and the default are also scored on the reproduction's held-out runs
(plateau seeds 5–24, the companion regime, control seeds 1–5), and on each
FRESH_RUNS folder (laid out as RUNS_DIR): runs trained after the tuned rule
was chosen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from analyse_paper_main import plot, read_group, summarize

from grokspec.alarms import REPRESENTATION_SERIES, AlarmRule, CollapseRule, PlateauFallRule, ThresholdRule, Trajectory
from grokspec.repro.alarm_study import plateau_candidates
from grokspec.repro.formatting import f, mean_ci
from grokspec.scan.alarm_quality import FALSE_ALARM, alarm_quality, tune
from grokspec.scan.run_metrics import read_trajectory, run_dirs_under

RULES: tuple[AlarmRule, ...] = (PlateauFallRule(), ThresholdRule(), CollapseRule())
Runs = list[tuple[str, Trajectory]]


def _trajectories(folder: Path) -> list[tuple[str, Trajectory]]:
    return [(str(d), read_trajectory(d)) for d in run_dirs_under(folder)]


def _read_set(runs_dir: Path) -> tuple[dict[str, Runs], dict[str, Runs]]:
    """Each folder of runs, read once: an experiment's runs that grokked, a ``control-*`` folder's every run."""
    grokking: dict[str, Runs] = {}
    controls: dict[str, Runs] = {}
    for folder in sorted(d for d in runs_dir.iterdir() if d.is_dir() and any(d.glob("seed_*"))):
        runs = _trajectories(folder)
        if folder.name.startswith("control-"):
            controls[folder.name] = runs
        else:
            grokking[folder.name] = [(name, t) for name, t in runs if t.t_grok() is not None]
    return grokking, controls


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


def _seed(run: str) -> int:
    return int(run.rsplit("seed_", 1)[1])


def _quality_rows(rule: AlarmRule, groups: dict[str, Runs], controls: Runs) -> dict[str, dict[str, Any]]:
    """The rule over each group of grokking runs against `controls`, and its false alarms on each control group."""
    return {name: alarm_quality(rule, runs + controls)[0].to_json() for name, runs in groups.items()}


#: Runs scored but never tuned on: (grokking runs by group, controls by group).
ScoringSet = tuple[dict[str, Runs], dict[str, Runs]]


def reproduction_set(reproduction: Path) -> ScoringSet:
    """The reproduction's held-out runs: plateau seeds 5-24, the companion regime, control seeds 1-5."""
    plateau = [r for r in _trajectories(reproduction / "plateau" / "add") if _seed(r[0]) >= 5]
    grokking = {
        "reproduction plateau (a+b) 0.3": plateau,
        "reproduction companion 0.5": _trajectories(reproduction / "transformer"),
    }
    kinds = ("wd0", "mlp", "shuffled-train")
    controls = {f"reproduction {k}": [r for r in _trajectories(reproduction / "control" / k) if _seed(r[0]) >= 1] for k in kinds}
    return grokking, controls


def folder_set(runs_dir: Path) -> ScoringSet:
    """Runs laid out as transfer.sh leaves them (``control-*`` folders the controls)."""
    grokking, controls = _read_set(runs_dir)
    return (
        {f"{runs_dir.name}/{name}": runs for name, runs in grokking.items()},
        {f"{runs_dir.name}/{name}": runs for name, runs in controls.items()},
    )


def retuning(experiments: dict[str, Runs], controls: dict[str, Runs], others: dict[str, ScoringSet]) -> dict[str, Any]:
    """Tune the plateau-fall grid on seeds 0-4, score it and the default on seeds 5-9 and on `others`."""
    tuning = [r for runs in [*experiments.values(), *controls.values()] for r in runs if _seed(r[0]) < 5]
    tuned, on_tuning = tune(plateau_candidates(REPRESENTATION_SERIES, (0.06, 0.04, 0.03, 0.02, 0.01)), tuning)
    held_out = {name: [r for r in runs if _seed(r[0]) >= 5] for name, runs in experiments.items()}
    held_out["all experiments"] = [r for runs in held_out.values() for r in runs]
    held_controls = {name: [r for r in runs if _seed(r[0]) >= 5] for name, runs in controls.items()}
    sets = {"held_out": (held_out, held_controls), **others}
    out: dict[str, Any] = {"tuned": tuned.label(), "tuning_quality": on_tuning.to_json(), "rules": {}}
    for rule in (tuned, PlateauFallRule()):
        entry: dict[str, Any] = {}
        for key, (grokking, control_groups) in sets.items():
            pooled = [r for runs in control_groups.values() for r in runs]
            entry[key] = _quality_rows(rule, grokking, pooled)
            entry[f"{key} controls"] = {n: alarm_quality(rule, rs)[0].to_json() for n, rs in control_groups.items()}
        out["rules"][rule.label()] = entry
    out["sets"] = list(sets)
    return out


def retuning_markdown(study: dict[str, Any]) -> str:
    q = study["tuning_quality"]
    lines = [
        "",
        f"Tuned on seeds 0–4 of every experiment and control (the plateau-fall grid): **{study['tuned']}** "
        f"({q['before_onset']}/{q['grokking_runs']} before onset, {q['false_alarms']}/{q['controls']} false alarms "
        "on the tuning runs). Scored on seeds 5–9 (and on the reproduction's held-out runs):",
        "",
        "| rule | runs | grokking runs | before onset | after onset | median lead to onset | test acc at alarm |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, entry in study["rules"].items():
        for section in study["sets"]:
            for name, r in entry.get(section, {}).items():
                lead = f(r["median_lead_onset"], 0) if r["median_lead_onset"] is not None else "—"
                lines.append(
                    f"| {label} | {name} | {r['grokking_runs']} | **{r['before_onset']}** | {r['after_onset']} | "
                    f"{lead} | {f(r['median_test_acc_at_alarm'], 3)} |"
                )
    lines += ["", "| rule | control | false alarms |", "| --- | --- | ---: |"]
    for label, entry in study["rules"].items():
        for section in (f"{key} controls" for key in study["sets"]):
            for name, r in entry.get(section, {}).items():
                lines.append(f"| {label} | {name} | {r['false_alarms']}/{r['controls']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    runs_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    folders = {d.name: d for d in sorted(runs_dir.iterdir()) if d.is_dir() and any(d.glob("seed_*"))}
    by_group = {name: read_group(name, d) for name, d in folders.items()}
    grokked, controls = _read_set(runs_dir)
    control_runs = [run for runs in controls.values() for run in runs]

    alarms: dict[str, list[dict[str, Any]]] = {}
    scored = {**grokked, "all experiments": [run for runs in grokked.values() for run in runs]}
    for name, runs in scored.items():
        alarms[name] = [alarm_quality(rule, runs + control_runs)[0].to_json() for rule in RULES]
    false_alarms: dict[str, dict[str, int]] = {}
    for name, runs in controls.items():
        counts = {"runs": len(runs)}
        for rule in RULES:
            scores = alarm_quality(rule, runs)[1]
            counts[rule.label()] = sum(1 for s in scores if s.outcome == FALSE_ALARM)
        false_alarms[name] = counts
    others = {"reproduction": reproduction_set(Path(sys.argv[3]))} if len(sys.argv) >= 4 else {}
    others |= {Path(p).name: folder_set(Path(p)) for p in sys.argv[4:]}
    study = retuning(grokked, controls, others)
    report = {
        "retuning": study,
        "groups": {name: summarize(runs) for name, runs in by_group.items()},
        "controls": len(control_runs),
        "rules": [rule.label() for rule in RULES],
        "alarms": alarms,
        "false_alarms": false_alarms,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    text = markdown(report) + retuning_markdown(study)
    (out / "report.md").write_text(text)
    plot(by_group, folders, out / "fig_trajectories.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
