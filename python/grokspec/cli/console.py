"""What the commands show on a terminal: progress bars and status lines on
stderr, silent off a terminal or with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from grokspec.alarms import Alarm


def alarm_cell(alarm: Alarm | None) -> str:
    """An alarm as a table cell: its step and the test accuracy then, or —."""
    if alarm is None:
        return "—"
    return f"{alarm.step}" + ("" if alarm.test_acc is None else f" ({alarm.test_acc:.3f})")


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table as aligned plain text (two spaces between columns), for output
    that is not a terminal."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    return "\n".join([title, line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def stderr_console(quiet: bool) -> Any:
    """A rich console on stderr for progress, or None when it should be silent."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True)


def status_printer(quiet: bool) -> tuple[Callable[[str], None] | None, Callable[[], None]]:
    """A callback that shows the current step on a terminal, and its closer."""
    console = stderr_console(quiet)
    if console is None:
        return None, lambda: None
    status = console.status("starting")
    status.start()
    return (lambda message: status.update(message)), status.stop


class ProgressBar:
    """A progress bar on stderr (terminal only, not with --quiet), driven by a
    library callback `(done, total, text)`; log lines print above it."""

    def __init__(self, quiet: bool, total: int, unit: str):
        self.console = stderr_console(quiet)
        self.bar = None
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(unit),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),  # an LLM series takes hours: say how many
                console=self.console,
                transient=True,
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
            self.bar = None
