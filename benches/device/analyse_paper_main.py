"""The paper-scale main experiment's numbers beside the paper's.

    python benches/device/analyse_paper_main.py RUNS_DIR OUT_DIR [EXTRA_RUNS_DIR ...]

RUNS_DIR holds one folder per task (add, mul, sub, s5), each with seed_N run
dirs, as ``benches/device/paper_main.sh`` leaves them. EXTRA_RUNS_DIRs hold more
run-dir folders (e.g. S5 at other train fractions); each is summarized the same
way. Writes OUT_DIR/report.json and OUT_DIR/report.md. The alarm-quality table
is ``grokspec alarms`` over the grokking runs, with the runs that never left
chance as the negative controls (a warning there is a false alarm).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from grokspec.lab.rundir import RunDir
from grokspec.repro.events_table import run_events
from grokspec.repro.formatting import f, fraction, mean_ci
from grokspec.repro.stats import summary

#: The paper's numbers (PAPER.md), for the side-by-side table.
PAPER = {
    "t_grok": "14,360 [12,140, 17,100]",
    "h_at_grok": "0.609 [0.595, 0.624]; add 0.605, mul 0.589, sub 0.589, S5 0.655",
    "collapse_before_grok": "10 of 10",
    "lead_collapse": "1,020 [890, 1,140]",
}


@dataclass(frozen=True)
class RunRecord:
    """One run's setting and the events of its metrics."""

    group: str
    seed: int
    train_fraction: float
    steps_trained: int
    final_test_acc: float
    events: dict[str, Any]


def read_group(group: str, folder: Path) -> list[RunRecord]:
    runs = []
    for seed_dir in sorted(folder.glob("seed_*"), key=lambda p: int(p.name.split("_")[1])):
        run = RunDir(seed_dir)
        records = run.read_metrics()
        if not records:
            continue
        config = run.read_config()
        frame = pd.DataFrame([{k: v for k, v in r.items() if k != "weight_entropy"} for r in records])
        chance = 1.0 / (120 if config.task == "s5" else config.p)
        runs.append(
            RunRecord(
                group=group,
                seed=config.seed,
                train_fraction=config.train_fraction,
                steps_trained=int(frame["step"].iloc[-1]),
                final_test_acc=float(frame["test_acc"].iloc[-1]),
                events=run_events(frame, chance=chance),
            )
        )
    return runs


def summarize(runs: list[RunRecord]) -> dict[str, Any]:
    grokked = [r for r in runs if r.events["t_grok"] is not None]
    collapse_first = [r for r in grokked if (r.events["lead_collapse"] or 0) > 0]
    collapse_before_onset = [r for r in grokked if (r.events["lead_onset_collapse"] or 0) > 0]
    return {
        "runs": len(runs),
        "train_fraction": sorted({r.train_fraction for r in runs}),
        "grokked": len(grokked),
        "steps_trained": summary([r.steps_trained for r in runs]),
        "t_grok": summary([r.events["t_grok"] for r in grokked]),
        "t_onset": summary([r.events["t_onset"] for r in grokked]),
        "h_at_grok": summary([r.events["h_at_grok"] for r in grokked]),
        "collapse_before_grok": len(collapse_first),
        "collapse_before_onset": len(collapse_before_onset),
        "lead_collapse": summary([r.events["lead_collapse"] for r in grokked]),
        "max_final_test_acc_not_grokked": max((r.final_test_acc for r in runs if r not in grokked), default=None),
    }


def alarm_table(grokking: list[Path], controls: list[Path]) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "grokspec.cli", "alarms", *map(str, grokking), "--json"]
    for control in controls:
        command += ["--controls", str(control)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return list(json.loads(result.stdout))


def _summary_row(name: str, s: dict[str, Any]) -> str:
    return (
        f"| {name} | {', '.join(map(str, s['train_fraction']))} | {s['grokked']}/{s['runs']} | "
        f"{mean_ci(s['t_grok'], 0)} | {mean_ci(s['t_onset'], 0)} | {mean_ci(s['h_at_grok'])} | "
        f"{fraction(s['collapse_before_grok'], s['grokked'])} | {fraction(s['collapse_before_onset'], s['grokked'])} | "
        f"{mean_ci(s['lead_collapse'], 0)} |"
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| runs | train fraction | grokked | T_grok | T_onset | H̃ at T_grok | collapse before T_grok | "
        "collapse before onset | collapse lead to T_grok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [_summary_row(name, s) for name, s in report["groups"].items()]
    lines += [
        f"| paper (4 tasks, 10 seeds) | S5 0.10 | — | {PAPER['t_grok']} | — | {PAPER['h_at_grok']} | "
        f"{PAPER['collapse_before_grok']} | — | {PAPER['lead_collapse']} |",
        "",
        "Alarm quality over the grokking runs of the main experiment, runs that never left chance as controls:",
        "",
        "| rule | grokking runs | before onset | after onset | missed | false alarms | AUROC |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for q in report["alarms"]:
        lines.append(
            f"| {q['rule']} | {q['grokking_runs']} | {q['before_onset']} | {q['after_onset']} | {q['missed']} | "
            f"{q['false_alarms']}/{q['controls']} | {f(q['auroc'], 2)} |"
        )
    return "\n".join(lines) + "\n"


def _folders(runs_dir: Path, extras: list[str]) -> dict[str, Path]:
    folders = {d.name: d for d in sorted(runs_dir.iterdir()) if d.is_dir() and any(d.glob("seed_*"))}
    for extra in map(Path, extras):
        folders |= {f"{extra.name}/{d.name}": d for d in sorted(extra.iterdir()) if d.is_dir() and any(d.glob("seed_*"))}
    return folders


def plot(by_group: dict[str, list[RunRecord]], folders: dict[str, Path], path: Path) -> None:
    """H̃ and test accuracy of every run, one panel per group, T_grok marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(folders))
    rows = -(-len(folders) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), sharey=True, squeeze=False)
    for ax, (name, folder) in zip(axes.flat, folders.items()):
        for seed_dir in sorted(folder.glob("seed_*")):
            frame = pd.DataFrame(RunDir(seed_dir).read_metrics())
            if frame.empty:
                continue
            ax.plot(frame["step"], frame["repr_entropy"], color="tab:blue", lw=0.8, alpha=0.7)
            ax.plot(frame["step"], frame["test_acc"], color="tab:orange", lw=0.8, alpha=0.7)
        ax.axhline(0.61, color="grey", ls=":", lw=0.8)
        groks = [r.events["t_grok"] for r in by_group[name] if r.events["t_grok"] is not None]
        title = f"{name} (fraction {by_group[name][0].train_fraction})" if by_group[name] else name
        ax.set_title(f"{title}\n{len(groks)}/{len(by_group[name])} grokked", fontsize=9)
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("H̃ (blue), test acc (orange)")
    for ax in list(axes.flat)[len(folders) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    runs_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    tasks = [d for d in sorted(runs_dir.iterdir()) if d.is_dir() and any(d.glob("seed_*"))]
    by_group = {d.name: read_group(d.name, d) for d in tasks}
    for extra in map(Path, sys.argv[3:]):
        for d in sorted(p for p in extra.iterdir() if p.is_dir() and any(p.glob("seed_*"))):
            by_group[f"{extra.name}/{d.name}"] = read_group(d.name, d)
    main_runs = [r for d in tasks for r in by_group[d.name]]
    groups = {name: summarize(runs) for name, runs in by_group.items()}
    groups["main experiment, all tasks"] = summarize(main_runs)
    grokking = [d for d in tasks if all(r.events["t_grok"] is not None for r in by_group[d.name])]
    controls = [d for d in tasks if d not in grokking]
    report = {
        "groups": groups,
        "alarms": alarm_table(grokking, controls),
        "runs": [asdict(r) for rs in by_group.values() for r in rs],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    plot(by_group, {name: folder for name, folder in _folders(runs_dir, sys.argv[3:]).items()}, out / "fig_trajectories.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
