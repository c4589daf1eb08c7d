"""``grokspec demo``: train the default run, scan it, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grokspec.cli.app import EXIT_REPORTED_FAILURES, main
from grokspec.cli.console import ProgressBar
from grokspec.cli.scan_command import print_scan_summary
from grokspec.cli.train_command import print_training_summaries, run_training

if TYPE_CHECKING:
    from grokspec.lab.train import RunSummary


def alarm_sentence(summary: RunSummary) -> str:
    """How early the default alarm came: steps before onset and T_grok, and the test accuracy then."""
    alarm = summary.alarm
    if alarm is None:
        return "early warning: the alarm did not fire in this run"
    text = f"early warning at step {alarm.step:,} ({alarm.rule}), test accuracy then {alarm.test_acc:.3f}"
    if alarm.lead_onset is not None:
        when = "before" if alarm.lead_onset > 0 else "after"
        text += f"; {abs(alarm.lead_onset):,} steps {when} onset (test accuracy ≥ 0.1)"
    if alarm.lead_grok is not None:
        text += f", {alarm.lead_grok:,} steps before T_grok (test accuracy ≥ 0.99)"
    return text


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("grokspec-demo"),
    show_default=True,
    help="Where the run and the scan go.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def demo(out: Path, quiet: bool) -> None:
    """Train the default grokking run (CPU or GPU), scan it, print how early the
    alarm came and write the plot. About two minutes on two CPU cores."""
    from grokspec.lab.demo import DEMO_CONFIG, demo_run_dir
    from grokspec.scan.outputs import write_scan_outputs
    from grokspec.scan.scan import ScanOptions, default_output_dir, scan

    summaries = run_training(DEMO_CONFIG, demo_run_dir(out), None, quiet)
    print_training_summaries(summaries)
    click.echo(alarm_sentence(summaries[0]))
    bar = ProgressBar(quiet, 0, "checkpoint")
    try:
        result = scan(out, ScanOptions(), cache_path=default_output_dir(out) / "cache.sqlite", progress=bar.update)
    finally:
        bar.stop()
    paths = write_scan_outputs(result, default_output_dir(out))
    print_scan_summary(result, paths)
    if result.failed_checkpoints:
        sys.exit(EXIT_REPORTED_FAILURES)
