"""``grokspec reproduce``: the paper's experiments."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from grokspec.cli.app import main
from grokspec.cli.console import ProgressBar


@main.command(name="reproduce")
@click.option(
    "--scale",
    type=click.Choice(["cpu", "paper"]),
    default="cpu",
    show_default=True,
    help="cpu: under an hour on 2 cores; paper: the paper's budgets (a GPU).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the runs, report.md, report.json and figures go.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def reproduce_command(scale: str, out: Path, quiet: bool) -> None:
    """Run the paper's experiments with grokspec and report our numbers beside the paper's.
    Interrupted, it resumes where it stopped when run again."""
    from grokspec.repro.plan import reproduce

    view = ProgressBar(quiet, 0, "step")
    log = (lambda m: None) if quiet else view.log
    try:
        reproduce(out, scale, log=log, progress=view.update)
    except KeyboardInterrupt:
        view.stop()
        click.echo("interrupted; run the same command again to continue", err=True)
        sys.exit(130)
    finally:
        view.stop()
    click.echo(f"report: {out / 'report.md'} (numbers in {out / 'report.json'})")
