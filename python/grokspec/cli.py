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
    from grokspec.lab.config import TrainConfig

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
@click.option("--scan", "scan_bench", is_flag=True, help="Also the scan benchmarks (100 checkpoints vs plain torch; a 1.2 GB sharded checkpoint's peak memory).")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def bench(quick: bool, threads: int | None, budget: float, json_path: Path | None, markdown: bool, scan_bench: bool, quiet: bool) -> None:
    """Side-by-side benchmark against torch.linalg, numpy and scipy on this machine."""
    import platform

    from grokspec import _core
    from grokspec.bench.spectral import DEFAULT_CASES, QUICK_CASES, as_records, markdown_table, run_benchmark
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
    scan_results: dict = {}
    if scan_bench:
        from grokspec.bench.scan import run_scan_speed_benchmark, run_sharded_memory_benchmark

        speed = run_scan_speed_benchmark(20 if quick else 100, threads=threads)
        scan_results["speed"] = speed
        click.echo(
            f"\nscan of {speed['checkpoints']} checkpoints of the default transformer ({speed['matrices']} matrices): "
            f"plain torch {speed['torch_way_seconds']:.3f} s; grokspec {speed['grokspec_safetensors_seconds']:.3f} s "
            f"(safetensors, {speed['speedup_safetensors']:.1f}x faster), {speed['grokspec_pt_seconds']:.3f} s "
            f"(.pt, {speed['speedup_pt']:.1f}x); max entropy difference {speed['max_entropy_difference']:.1e}"
        )
        if not quick:
            memory = run_sharded_memory_benchmark(threads=threads)
            scan_results["memory"] = memory
            mb = 2**20
            click.echo(
                f"sharded checkpoint of {memory['total_bytes'] / mb:.0f} MB (largest shard {memory['largest_shard_bytes'] / mb:.0f} MB): "
                f"peak RSS {memory['peak_rss_bytes'] / mb:.0f} MB = {memory['peak_over_largest_shard']:.2f}x the largest shard "
                f"(Python baseline {memory['python_baseline_rss_bytes'] / mb:.0f} MB), {memory['seconds']:.1f} s"
            )
    if json_path is not None:
        write_json(json_path, {"machine": machine, "threads": threads, "results": as_records(results), "scan": scan_results})


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

    from grokspec.lab.config import TrainConfig

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
    from grokspec.lab.config import TrainConfig

    values = {k: v for k, v in options.items() if v is not None}
    if "mlp_hidden" in values:
        values["mlp_hidden"] = _parse_int_list(values["mlp_hidden"])
    return TrainConfig(**values)


class _ProgressBar:
    """A progress bar on stderr (terminal only, not with --quiet), driven by a
    library callback `(done, total, text)`; log lines print above it."""

    def __init__(self, quiet: bool, total: int, unit: str):
        self.console = _stderr_console(quiet)
        self.bar = None
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn(unit), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"),
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
            self.bar = None


def _run_training(config, out: Path, seeds: tuple[int, ...] | None, quiet: bool):
    """Trains and handles the ways it can end; returns the summaries."""
    from grokspec.lab.config import ConfigMismatch
    from grokspec.lab.train import TrainingWriteError, train, train_seeds

    view = _ProgressBar(quiet, config.steps, "step")
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


def _print_scan_summary(result, paths: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    # Off a terminal rich assumes 80 columns, too narrow for this table.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    table = Table(title="grokspec scan")
    for column in ("run", "ckpts", "status", "threshold (source, series)", "crossing", "T_collapse", "T_grok", "lead cross", "lead collapse", "weights collapsed first"):
        table.add_column(column)
    def show(value: object) -> str:
        return "—" if value is None else str(value)

    for run in result.report.runs:
        threshold = "—" if run.threshold is None else f"{run.threshold:.3f} ({run.threshold_source}, {run.primary_series})"
        weights = f"{run.weight_series_collapsed_before_grok}/{run.weight_series}" if run.weight_series else "—"
        table.add_row(
            run.run, str(run.checkpoints), run.status, threshold, show(run.crossing), show(run.t_collapse),
            show(run.t_grok), show(run.lead_cross), show(run.lead_collapse), weights,
        )
        if run.prediction is not None:
            p = run.prediction
            table.add_row("", "", f"predicted T_grok {p.predicted_t_grok} [{p.interval[0]}, {p.interval[1]}]", "", "", "", "", "", "", "")
    console.print(table)
    if result.warnings:
        console.print(f"[yellow]{len(result.warnings)} warning(s):[/yellow]")
        for warning in result.warnings[:20]:
            console.print(f"  {warning}", markup=False, highlight=False)
        if len(result.warnings) > 20:
            console.print(f"  … and {len(result.warnings) - 20} more (all in report.json)")
    for kind, path in paths.items():
        console.print(f"{kind}: {path}", markup=False, highlight=False)


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("grokspec-demo"), show_default=True, help="Where the run and the scan go.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def demo(out: Path, quiet: bool) -> None:
    """Train the default grokking run (CPU or GPU), scan it, print the
    crossing report and write the plot. About a minute on two CPU cores."""
    from grokspec.lab.demo import DEMO_CONFIG, demo_run_dir
    from grokspec.scan.outputs import write_scan_outputs
    from grokspec.scan.scan import ScanOptions, default_output_dir, scan

    summaries = _run_training(DEMO_CONFIG, demo_run_dir(out), None, quiet)
    _print_training_summaries(summaries)
    bar = _ProgressBar(quiet, 0, "checkpoint")
    try:
        result = scan(out, ScanOptions(), cache_path=default_output_dir(out) / "cache.sqlite", progress=bar.update)
    finally:
        bar.stop()
    paths = write_scan_outputs(result, default_output_dir(out))
    _print_scan_summary(result, paths)
    if result.failed_checkpoints:
        sys.exit(EXIT_REPORTED_FAILURES)


@main.command(name="scan")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output dir (default: DIR/grokspec-scan).")
@click.option("--threshold", type=float, default=None, help="Threshold of the representation entropy (default 0.61, or the calibration's).")
@click.option("--format", "table_format", type=click.Choice(["csv", "parquet", "json"]), default="csv", show_default=True, help="Format of the tidy table.")
@click.option("--include", multiple=True, help="Only tensors whose name matches this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip tensors whose name matches this glob (repeatable).")
@click.option("--min-dim", type=click.IntRange(min=1), default=2, show_default=True, help="Skip matrices whose shorter side is smaller.")
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Extra metrics: CSV/JSONL with a step column.")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path), default=None, help="calibration.json from grokspec calibrate.")
@click.option("--power", type=float, default=2.0, show_default=True, help="Weights sigma**power in the entropy.")
@click.option("--normalize", type=click.Choice(["dim", "cols", "rank", "none"]), default="dim", show_default=True, help="Normalization of weight-matrix entropies.")
@click.option("--method", type=click.Choice(["auto", "svd", "gram"]), default="auto", show_default=True)
@click.option("--grok-metric", default=None, help="Accuracy metric that defines T_grok (default: test_acc, eval_accuracy, ...).")
@click.option("--persist", type=click.IntRange(min=1), default=1, show_default=True, help="Evaluations the value must stay below the threshold.")
@click.option("--trust-pickle", is_flag=True, help="Allow pickles that need more than weights-only loading (runs their code!).")
@click.option("--no-representation", is_flag=True, help="Skip the forward pass that computes H̃ for grokspec runs.")
@click.option("--no-cache", is_flag=True, help="Recompute everything (do not read or write cache.sqlite).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Engine threads (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the summary.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def scan_command(directory: Path, out: Path | None, table_format: str, as_json: bool, quiet: bool, no_cache: bool, no_representation: bool, include, exclude, **options) -> None:
    """Scan checkpoints under DIRECTORY into entropy trajectories and a threshold-crossing report."""
    import json

    from grokspec.scan.outputs import write_scan_outputs
    from grokspec.scan.scan import ScanInputError, ScanOptions, default_output_dir, scan

    out = out or default_output_dir(directory)
    scan_options = ScanOptions(include=tuple(include), exclude=tuple(exclude), representation=not no_representation, **options)
    bar = _ProgressBar(quiet, 0, "checkpoint")
    try:
        result = scan(directory, scan_options, cache_path=None if no_cache else out / "cache.sqlite", progress=bar.update)
    except (ScanInputError, ValueError) as error:
        bar.stop()
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        bar.stop()
    paths = write_scan_outputs(result, out, table_format)
    if as_json:
        click.echo(json.dumps(result.report.to_json(), indent=2))
    else:
        _print_scan_summary(result, paths)
    if result.failed_checkpoints:
        sys.exit(EXIT_REPORTED_FAILURES)


@main.command(name="calibrate")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write calibration.json.")
@click.option("--grok-metric", default=None, help="Accuracy metric that defines T_grok (default: test_acc, eval_accuracy, ...).")
@click.option("--no-representation", is_flag=True, help="Skip the forward pass that computes H̃ for grokspec runs.")
def calibrate_command(run_dirs: tuple[Path, ...], out: Path, grok_metric: str | None, no_representation: bool) -> None:
    """Fit thresholds H* and the time-to-grok law ΔT = C1 (v − H*)^γ on runs that grokked."""
    from grokspec.scan.calibrate import calibrate
    from grokspec.io_atomic import write_json
    from grokspec.scan.scan import ScanInputError, ScanOptions

    try:
        calibration = calibrate(list(run_dirs), ScanOptions(grok_metric=grok_metric, representation=not no_representation))
    except (ScanInputError, ValueError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    write_json(out, calibration)
    rep = calibration["series"].get("representation")
    click.echo(f"calibrated on {len(calibration['runs'])} runs that grokked ({len(calibration['runs_not_grokked'])} did not)")
    if rep:
        law = rep["power_law"]
        click.echo(f"representation H* = {rep['h_star']:.3f}, 95% CI [{rep['h_star_ci'][0]:.3f}, {rep['h_star_ci'][1]:.3f}]")
        if law:
            click.echo(f"ΔT = {law['c1']:.3g} (H̃ − H*)^{law['gamma']:.2f}, R² = {law['r2']:.2f}, ±{law['interval_steps']:.0f} steps")
    click.echo(f"{len(calibration['series'])} series written to {out}")


@main.command(name="reproduce")
@click.option("--scale", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True, help="cpu: under an hour on 2 cores; paper: the paper's budgets (a GPU).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Where the runs, report.md, report.json and figures go.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def reproduce_command(scale: str, out: Path, quiet: bool) -> None:
    """Run the paper's experiments with grokspec and report our numbers beside the paper's.
    Interrupted, it resumes where it stopped when run again."""
    from grokspec.repro.plan import reproduce

    view = _ProgressBar(quiet, 0, "step")
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


if __name__ == "__main__":
    main()
