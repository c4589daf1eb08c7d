"""``grokspec train``: options generated from TrainConfig, training with
progress, and the summary table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from grokspec.cli.app import EXIT_BAD_INPUT, EXIT_REPORTED_FAILURES, main
from grokspec.cli.console import ProgressBar, alarm_cell, plain_table

if TYPE_CHECKING:
    from grokspec.lab.config import TrainConfig
    from grokspec.lab.train import RunSummary


#: Seeds one command may train at once (each is a model in memory).
MAX_SEEDS = 4096


def _parse_int_list(text: str, option: str = "--mlp-hidden") -> tuple[int, ...]:
    """'512' or '512,256' -> (512,) or (512, 256); '0-3' or '0,1,2,3' for seeds.
    click.BadParameter naming `option` for anything else."""
    values: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                first, last = (int(v) for v in part.split("-", 1))
                if not 0 <= last - first < MAX_SEEDS:
                    raise ValueError
                values.extend(range(first, last + 1))
            elif part:
                values.append(int(part))
    except ValueError:
        values = []
    if not values or len(values) > MAX_SEEDS:
        raise click.BadParameter(f"{option}: expected integers such as 3, 0-9 or 512,256; got {text!r}")
    return tuple(values)


def _parse_seeds(text: str) -> tuple[int, ...]:
    seeds = _parse_int_list(text, "--seeds")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise click.BadParameter(f"--seeds: expected distinct seeds >= 0; got {text!r}")
    return seeds


def _config_options(command: Callable[..., None]) -> Callable[..., None]:
    """Adds one --option per TrainConfig field, typed and documented from the dataclass."""
    import dataclasses
    import typing

    from grokspec.lab.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for field in reversed(dataclasses.fields(TrainConfig)):
        hint = hints[field.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        name = "--" + field.name.replace("_", "-")
        if base is bool:  # a flag pair, as users expect (--x / --no-x), not "--x true"
            option = click.option(
                f"{name}/--no-{name[2:]}", field.name, default=None, help=field.metadata["help"] + f"  [default: {field.default}]"
            )
        elif field.name == "mlp_hidden":
            option = click.option(
                name, field.name, default=None, help=field.metadata["help"] + f"  [default: {','.join(map(str, field.default))}]"
            )
        else:
            option = click.option(
                name, field.name, type=base, default=None, help=field.metadata["help"] + f"  [default: {field.default}]"
            )
        command = option(command)
    return command


def _config_from_options(options: dict[str, Any]) -> TrainConfig:
    from grokspec.lab.config import TrainConfig

    values = {k: v for k, v in options.items() if v is not None}
    if "mlp_hidden" in values:
        values["mlp_hidden"] = _parse_int_list(values["mlp_hidden"])
    return TrainConfig(**values)


def run_training(config: TrainConfig, out: Path, seeds: tuple[int, ...] | None, quiet: bool) -> list[RunSummary]:
    """Trains and handles the ways it can end; returns the summaries."""
    from grokspec.lab.config import ConfigMismatch
    from grokspec.lab.train import TrainingWriteError, train, train_seeds

    view = ProgressBar(quiet, config.steps, "step")
    log = (lambda m: None) if quiet else view.log
    try:
        if seeds is None:
            return [train(config, out, log=log, progress=view.update)]
        return train_seeds(config, list(seeds), out, log=log, progress=view.update)
    except KeyboardInterrupt:
        view.stop()
        click.echo("interrupted; run the same command again to resume from the newest checkpoint", err=True)
        sys.exit(130)
    except (ConfigMismatch, ValueError) as error:
        view.stop()
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except TrainingWriteError as error:
        view.stop()
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_REPORTED_FAILURES)
    except OSError as error:  # the run folder cannot be created or read
        view.stop()
        click.echo(f"error: cannot use {error.filename or out}: {error.strerror or error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        view.stop()


_TRAINING_COLUMNS = (
    "run",
    "steps",
    "alarm (test acc)",
    "crossing (H̃<θ)",
    "T_grok",
    "H̃ at T_grok",
    "test acc",
    "seconds",
    "stopped",
)


def print_training_summaries(summaries: list[RunSummary]) -> None:
    """One row per run: rich on a terminal, aligned plain text otherwise."""
    rows = [
        [
            s.run_dir,
            str(s.steps),
            alarm_cell(s.alarm),
            str(s.crossing_step),
            str(s.t_grok),
            "—" if s.entropy_at_grok is None else f"{s.entropy_at_grok:.3f}",
            f"{s.final_test_acc:.3f}",
            f"{s.wall_seconds:.0f}",
            s.stopped,
        ]
        for s in summaries
    ]
    if not sys.stdout.isatty():
        click.echo(plain_table("training", _TRAINING_COLUMNS, rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="training")
    for column in _TRAINING_COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@main.command(name="train")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run dir (or the parent of seed_<n>/ dirs with --seeds).",
)
@click.option("--seeds", default=None, help="Train several seeds at once, e.g. 0-9 or 0,3,7 (overrides --seed).")
@click.option("--quiet", is_flag=True, help="No progress or log lines on stderr.")
@_config_options
def train_command(out: Path, seeds: str | None, quiet: bool, **options: Any) -> None:
    """Train a grokking run (or several seeds at once) into a run directory;
    running it again on the same directory resumes."""
    try:
        config = _config_from_options(options)
        seed_list = _parse_seeds(seeds) if seeds else None
    except (ValueError, TypeError, click.BadParameter) as error:
        click.echo(f"error: {getattr(error, 'message', None) or error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    summaries = run_training(config, out, seed_list, quiet)
    print_training_summaries(summaries)
