"""``grokspec alarms``: alarm quality of the early-warning rules over grokking
runs and negative controls (docs/ALARMS.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grokspec.cli.app import EXIT_BAD_INPUT, main

if TYPE_CHECKING:
    from grokspec.alarms import PlateauFallRule, Trajectory
    from grokspec.scan.alarm_quality import AlarmQuality


def _runs(paths: tuple[Path, ...]) -> list[tuple[str, Trajectory]]:
    from grokspec.scan.run_metrics import read_trajectory, run_dirs_under

    out = []
    for path in paths:
        found = run_dirs_under(path)
        if not found:
            raise ValueError(f"no grokspec run dir (config.json + metrics.jsonl) under {path}")
        out += [(str(d), read_trajectory(d)) for d in found]
    return out


def _print(qualities: list[AlarmQuality]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="grokspec alarms")
    columns = (
        "rule",
        "grokking runs",
        "before onset",
        "after onset",
        "missed",
        "false alarms",
        "median lead to onset",
        "median lead to T_grok",
        "test acc at alarm",
        "AUROC",
    )
    for column in columns:
        table.add_column(column)

    def show(value: float | None, digits: int = 0) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    for q in qualities:
        table.add_row(
            q.rule,
            str(q.grokking_runs),
            str(q.before_onset),
            str(q.after_onset),
            str(q.missed),
            f"{q.false_alarms}/{q.controls}",
            show(q.median_lead_onset),
            show(q.median_lead_grok),
            show(q.median_test_acc_at_alarm, 3),
            show(q.auroc, 2),
        )
    (Console() if sys.stdout.isatty() else Console(width=180)).print(table)


def parse_plateau_fall(text: str) -> PlateauFallRule:
    """``drop=0.02,lag=5,persist=3`` (any of drop, lag, persist, window; lag may be ``none``,
    the running maximum) as a plateau-fall rule; ValueError naming what is wrong."""
    from grokspec.alarms import PlateauFallRule

    kinds: dict[str, type] = {"drop": float, "lag": int, "persist": int, "window": int}
    settings: dict[str, float | int | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key not in kinds or not value:
            raise ValueError(f"--plateau-fall takes drop=, lag=, persist=, window= (got {part!r})")
        try:
            settings[key] = None if key == "lag" and value.lower() == "none" else kinds[key](value)
        except ValueError:
            raise ValueError(f"--plateau-fall: {key} must be a number, got {value!r}") from None
    try:
        return PlateauFallRule(**settings)  # type: ignore[arg-type]
    except ValueError as error:
        raise ValueError(f"--plateau-fall: {error}") from None


@main.command(name="alarms")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--controls",
    "control_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Negative controls: run dirs (or their parents) that do not grok (repeatable).",
)
@click.option(
    "--plateau-fall",
    "plateau_settings",
    multiple=True,
    metavar="SETTINGS",
    help="Also score a plateau-fall rule of other settings, e.g. drop=0.02,lag=5,persist=3 (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the alarm-quality records as JSON.")
def alarms_command(
    run_dirs: tuple[Path, ...], control_dirs: tuple[Path, ...], plateau_settings: tuple[str, ...], as_json: bool
) -> None:
    """Alarm quality of the early-warning rules (plateau-fall, the paper's threshold and
    collapse) over RUN_DIRS and --controls: alarms before/after onset, missed, false alarms,
    leads and AUROC. A run counts as grokking when its test accuracy reached 0.99."""
    from grokspec.alarms import AlarmRule, CollapseRule, PlateauFallRule, ThresholdRule
    from grokspec.scan.alarm_quality import alarm_quality

    try:
        extra: list[AlarmRule] = [parse_plateau_fall(text) for text in plateau_settings]
        runs = _runs(run_dirs) + _runs(control_dirs)
    except ValueError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    rules = [PlateauFallRule(), *extra, ThresholdRule(), CollapseRule()]
    qualities = [alarm_quality(rule, runs)[0] for rule in rules]
    if as_json:
        click.echo(json.dumps([q.to_json() for q in qualities], indent=2))
    else:
        _print(qualities)
