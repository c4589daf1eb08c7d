"""The ``grokspec`` command line: a thin layer over the library.

Each command parses its options, calls one library function, and prints.
Exit codes: 0 ok; 1 the work ran but something was reported as failed;
2 bad usage or input that cannot be processed at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from grokspec import __version__

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


if __name__ == "__main__":
    main()
