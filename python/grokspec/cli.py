"""The ``grokspec`` command line: a thin layer over the library.

Each command parses its options, calls one library function, and prints.
Exit codes: 0 ok; 1 the work ran but something was reported as failed;
2 bad usage or input that cannot be processed at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from pathlib import Path

import click

from grokspec import __version__

if TYPE_CHECKING:
    from grokspec.config import TrainConfig

EXIT_OK = 0
EXIT_REPORTED_FAILURES = 1
EXIT_BAD_INPUT = 2


def _stderr_console(quiet: bool):
    """A rich console on stderr for progress, or None when it should be silent."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True)


def _status_printer(quiet: bool) -> tuple[Callable[[str], None] | None, Callable[[], None]]:
    """A callback that shows the current step on a terminal, and its closer."""
    console = _stderr_console(quiet)
    if console is None:
        return None, lambda: None
    status = console.status("starting")
    status.start()
    return (lambda message: status.update(message)), status.stop


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grokspec")
def main() -> None:
    """Predict grokking from the collapse of spectral entropy."""


@main.command()
@click.option("--quick", is_flag=True, help="Small matrices only (a smoke test, seconds).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads for every contender (default: all cores).")
@click.option("--budget", type=click.FloatRange(min=0.0), default=2.0, show_default=True, help="Seconds of repeats per timing.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for the README).")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def bench(quick: bool, threads: int | None, budget: float, json_path: Path | None, markdown: bool, quiet: bool) -> None:
    """Side-by-side benchmark against torch.linalg, numpy and scipy on this machine."""
    import platform

    from grokspec import _core
    from grokspec.bench import DEFAULT_CASES, QUICK_CASES, as_records, markdown_table, run_benchmark
    from grokspec.io_atomic import write_json

    threads = threads or _core.default_threads()
    update, stop = _status_printer(quiet)
    try:
        results = run_benchmark(QUICK_CASES if quick else DEFAULT_CASES, threads=threads, budget=budget, progress=update)
    finally:
        stop()
    machine = f"{platform.processor() or platform.machine()}, {threads} threads, Python {platform.python_version()}"
    if markdown:
        click.echo(f"Machine: {machine}\n")
        click.echo(markdown_table(results))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"grokspec bench ({machine})")
        for column in ("case", "dtype", "contender", "time", "grokspec speedup", "entropy error"):
            table.add_column(column, justify="right" if column in ("time", "grokspec speedup", "entropy error") else "left")
        for r in results:
            speedup = "—" if r.contender == "grokspec" else f"{r.grokspec_speedup:.1f}×"
            table.add_row(r.case, r.dtype, r.contender, f"{r.seconds:.4g} s", speedup, f"{r.entropy_error:.1e}")
        Console().print(table)
    if json_path is not None:
        write_json(json_path, {"machine": machine, "threads": threads, "results": as_records(results)})


def _parse_int_list(text: str) -> tuple[int, ...]:
    """'512' or '512,256' -> (512,) or (512, 256); '0-3' or '0,1,2,3' for seeds."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part[1:]:
            first, last = part.split("-", 1)
            values.extend(range(int(first), int(last) + 1))
        elif part:
            values.append(int(part))
    if not values:
        raise click.BadParameter(f"expected integers such as 3, 0-9 or 512,256; got {text!r}")
    return tuple(values)


def _config_options(command: Callable) -> Callable:
    """Adds one --option per TrainConfig field, typed and documented from the dataclass."""
    import dataclasses
    import typing

    from grokspec.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for field in reversed(dataclasses.fields(TrainConfig)):
        hint = hints[field.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        name = "--" + field.name.replace("_", "-")
        if field.name == "mlp_hidden":
            option = click.option(name, field.name, default=None, help=field.metadata["help"] + f"  [default: {','.join(map(str, field.default))}]")
        else:
            option = click.option(
                name, field.name, type=base, default=None, help=field.metadata["help"] + f"  [default: {field.default}]"
            )
        command = option(command)
    return command


def _config_from_options(options: dict) -> TrainConfig:
    from grokspec.config import TrainConfig

    values = {k: v for k, v in options.items() if v is not None}
    if "mlp_hidden" in values:
        values["mlp_hidden"] = _parse_int_list(values["mlp_hidden"])
    return TrainConfig(**values)


class _TrainingProgress:
    """A progress bar on stderr (terminal only) driven by the trainer's callback."""

    def __init__(self, quiet: bool, total: int):
        self.console = _stderr_console(quiet)
        self.bar = None
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def update(self, step: int, total: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, total=total, description=text)

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run_training(config, out: Path, seeds: tuple[int, ...] | None, quiet: bool):
    """Trains and handles the ways it can end; returns the summaries."""
    from grokspec.config import ConfigMismatch
    from grokspec.train import TrainingWriteError, train, train_seeds

    view = _TrainingProgress(quiet, config.steps)
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
    finally:
        view.stop()


def _print_training_summaries(summaries) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="training")
    for column in ("run", "steps", "crossing (H̃<θ)", "T_grok", "H̃ at T_grok", "test acc", "seconds", "stopped"):
        table.add_column(column)
    for s in summaries:
        table.add_row(
            s.run_dir, str(s.steps), str(s.crossing_step), str(s.t_grok),
            "—" if s.entropy_at_grok is None else f"{s.entropy_at_grok:.3f}", f"{s.final_test_acc:.3f}",
            f"{s.wall_seconds:.0f}", s.stopped,
        )
    Console().print(table)


@main.command(name="train")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run dir (or the parent of seed_<n>/ dirs with --seeds).")
@click.option("--seeds", default=None, help="Train several seeds at once, e.g. 0-9 or 0,3,7 (overrides --seed).")
@click.option("--quiet", is_flag=True, help="No progress or log lines on stderr.")
@_config_options
def train_command(out: Path, seeds: str | None, quiet: bool, **options) -> None:
    """Train a grokking run (or several seeds at once) into a run directory;
    running it again on the same directory resumes."""
    try:
        config = _config_from_options(options)
    except (ValueError, click.BadParameter) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    summaries = _run_training(config, out, _parse_int_list(seeds) if seeds else None, quiet)
    _print_training_summaries(summaries)


if __name__ == "__main__":
    main()
