"""``grokspec reproduce``: the paper's experiments and the alarm study."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from grokspec.cli.app import EXIT_BAD_INPUT, main
from grokspec.cli.console import ProgressBar

_CONTROLS_HELP = "Negative controls, comma-separated: mlp, wd0, shuffled-train, shuffled-test (default: the scale's)."


@main.command(name="reproduce")
@click.option(
    "--scale",
    type=click.Choice(["cpu", "gpu", "paper", "smoke"]),
    default="cpu",
    show_default=True,
    help=(
        "cpu: about an hour on 2 cores; gpu: the full alarm study, minutes on one GPU; "
        "paper: the paper's budgets; smoke: tiny models, seconds."
    ),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the runs, report.md, report.json and figures go.",
)
@click.option("--controls", default=None, help=_CONTROLS_HELP)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Experiments trained at once, each in its own process.",
)
@click.option("--device", default="auto", show_default=True, help="auto (cuda, else mps, else cpu), cpu, cuda, cuda:1, mps.")
@click.option(
    "--analyse-only", is_flag=True, help="Rebuild report.json, report.md and figures from OUT's run dirs without training."
)
@click.option("--train-only", is_flag=True, help="Train (and write plan.json), but write no report.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def reproduce_command(
    scale: str, out: Path, controls: str | None, jobs: int, device: str, analyse_only: bool, train_only: bool, quiet: bool
) -> None:
    """Run the paper's experiments and the alarm study with grokspec, and report our
    numbers beside the paper's. Interrupted, it resumes where it stopped when run again."""
    from grokspec.repro.layout import PlanMissing
    from grokspec.repro.reproduce import reproduce

    if analyse_only and train_only:
        click.echo("error: --analyse-only and --train-only exclude each other", err=True)
        sys.exit(EXIT_BAD_INPUT)
    chosen = tuple(c.strip() for c in controls.split(",") if c.strip()) if controls is not None else None
    view = ProgressBar(quiet, 0, "step")
    log = (lambda m: None) if quiet else view.log
    try:
        reproduce(out, scale, controls=chosen, jobs=jobs, device=device, train=not analyse_only, report=not train_only, log=log)
    except KeyboardInterrupt:
        view.stop()
        click.echo("interrupted; run the same command again to continue", err=True)
        sys.exit(130)
    except (PlanMissing, ValueError) as error:
        view.stop()
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        view.stop()
    if not train_only:
        click.echo(f"report: {out / 'report.md'} (numbers in {out / 'report.json'})")
