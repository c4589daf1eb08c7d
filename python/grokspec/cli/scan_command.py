"""``grokspec scan`` and ``grokspec calibrate``, and the scan's summary table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from grokspec.cli.app import EXIT_BAD_INPUT, EXIT_REPORTED_FAILURES, main
from grokspec.cli.console import ProgressBar, alarm_cell, plain_table

if TYPE_CHECKING:
    from grokspec.scan.scan import ScanResult


_SUMMARY_COLUMNS = (
    "run",
    "ckpts",
    "status",
    "threshold (source, series)",
    "crossing",
    "T_collapse",
    "alarm (test acc)",
    "onset",
    "T_grok",
    "lead cross",
    "lead collapse",
    "weights collapsed first",
)


def _summary_rows(result: ScanResult) -> list[list[str]]:
    def show(value: object) -> str:
        return "—" if value is None else str(value)

    rows = []
    for run in result.report.runs:
        threshold = "—" if run.threshold is None else f"{run.threshold:.3f} ({run.threshold_source}, {run.primary_series})"
        weights = f"{run.weight_series_collapsed_before_grok}/{run.weight_series}" if run.weight_series else "—"
        rows.append([
            run.run, str(run.checkpoints), run.status, threshold, show(run.crossing), show(run.t_collapse),
            alarm_cell(run.alarm), show(run.onset), show(run.t_grok), show(run.lead_cross), show(run.lead_collapse), weights,
        ])  # fmt: skip
        if run.prediction is not None:
            p = run.prediction
            rows.append(["", "", f"predicted T_grok {p.predicted_t_grok} [{p.interval[0]}, {p.interval[1]}]", *[""] * 9])
    return rows


def print_scan_summary(result: ScanResult, paths: dict[str, Path]) -> None:
    """The summary table, the first warnings and the output paths on stdout:
    drawn by rich on a terminal, as plain aligned text otherwise (a pipe or a
    file gets no box drawing, and a scan does not pay for importing rich)."""
    lines = [f"{kind}: {path}" for kind, path in paths.items()]
    notes = []
    if result.warnings:
        notes.append(f"{len(result.warnings)} warning(s):")
        notes.extend(f"  {warning}" for warning in result.warnings[:20])
        if len(result.warnings) > 20:
            notes.append(f"  … and {len(result.warnings) - 20} more (all in report.json)")
    if not sys.stdout.isatty():
        click.echo("\n".join([plain_table("grokspec scan", _SUMMARY_COLUMNS, _summary_rows(result)), *notes, *lines]))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="grokspec scan")
    for column in _SUMMARY_COLUMNS:
        table.add_column(column)
    for row in _summary_rows(result):
        table.add_row(*row)
    console.print(table)
    for index, note in enumerate(notes):
        console.print(f"[yellow]{note}[/yellow]" if index == 0 else note, markup=index == 0, highlight=False)
    for line in lines:
        console.print(line, markup=False, highlight=False)


@main.command(name="scan")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output dir (default: DIR/grokspec-scan)."
)
@click.option(
    "--threshold", type=float, default=None, help="Threshold of the representation entropy (default 0.61, or the calibration's)."
)
@click.option(
    "--format",
    "table_format",
    type=click.Choice(["csv", "parquet", "json"]),
    default="csv",
    show_default=True,
    help="Format of the tidy table.",
)
@click.option("--include", multiple=True, help="Only tensors whose name matches this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip tensors whose name matches this glob (repeatable).")
@click.option(
    "--min-dim", type=click.IntRange(min=1), default=2, show_default=True, help="Skip matrices whose shorter side is smaller."
)
@click.option(
    "--metrics",
    "metrics_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Extra metrics: CSV/JSONL with a step column, a TensorBoard events.out.tfevents.* file or a W&B run-<id>.wandb file.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="calibration.json from grokspec calibrate.",
)
@click.option("--power", type=float, default=2.0, show_default=True, help="Weights sigma**power in the entropy.")
@click.option(
    "--normalize",
    type=click.Choice(["dim", "cols", "rank", "none"]),
    default="dim",
    show_default=True,
    help="Normalization of weight-matrix entropies.",
)
@click.option("--method", type=click.Choice(["auto", "svd", "gram"]), default="auto", show_default=True)
@click.option("--grok-metric", default=None, help="Accuracy metric that defines T_grok (default: test_acc, eval_accuracy, ...).")
@click.option(
    "--persist",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Evaluations the value must stay below the threshold.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Load pickles with their original classes (runs their code!); by default they are read as inert data.",
)
@click.option("--no-representation", is_flag=True, help="Skip the forward pass that computes H̃ for grokspec runs.")
@click.option("--no-cache", is_flag=True, help="Recompute everything (do not read or write cache.sqlite).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Engine threads (default: all cores).")
@click.option(
    "--approx", is_flag=True, help="Estimate each entropy with an error bar (entropy_error rows; power 1 or 2; docs/APPROX.md)."
)
@click.option(
    "--every", type=click.IntRange(min=1), default=1, show_default=True, help="Scan every K-th checkpoint of each series."
)
@click.option(
    "--steps", "steps_range", default=None, metavar="A:B", help="Only checkpoints whose step lies in [A, B] (A: or :B)."
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Compute on a Ray cluster (ADDRESS, e.g. auto or ray://host:10001; none: a local one). docs/DISTRIBUTED.md",
)
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the summary.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def scan_command(
    directory: Path,
    out: Path | None,
    table_format: str,
    as_json: bool,
    quiet: bool,
    no_cache: bool,
    no_representation: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    **options: Any,
) -> None:
    """Scan checkpoints under DIRECTORY into entropy trajectories and a threshold-crossing report."""
    import json

    from grokspec.scan.outputs import OutputError, check_output_dir, write_scan_outputs
    from grokspec.scan.scan import ScanInputError, ScanOptions, check_options, default_output_dir, scan
    from grokspec.scan.subsample import parse_steps

    def fail(error: Exception, code: int = EXIT_BAD_INPUT) -> NoReturn:
        click.echo(f"error: {error}", err=True)
        sys.exit(code)

    if not directory.is_dir():
        fail(ScanInputError(f"{directory} is not a directory"))
    out = out or default_output_dir(directory)
    try:
        steps_range, ray_address = options.pop("steps_range"), options.pop("ray_address")
        options["steps"] = None if steps_range is None else parse_steps(steps_range)
        options["executor"], options["ray_address"] = ("local", None) if ray_address is None else ("ray", ray_address or None)
        scan_options = ScanOptions(
            include=tuple(include), exclude=tuple(exclude), representation=not no_representation, **options
        )
        check_options(scan_options)
        check_output_dir(out, table_format, cache=not no_cache)  # before any work, not after it
    except (OutputError, ValueError) as error:
        fail(error)
    bar = ProgressBar(quiet, 0, "checkpoint")
    try:
        result = scan(directory, scan_options, cache_path=None if no_cache else out / "cache.sqlite", progress=bar.update)
    except (ScanInputError, ValueError) as error:
        bar.stop()
        fail(error)
    finally:
        bar.stop()
    try:
        paths = write_scan_outputs(result, out, table_format)
    except OutputError as error:
        fail(error, EXIT_REPORTED_FAILURES)
    if as_json:
        click.echo(json.dumps(result.report.to_json(), indent=2))
    else:
        print_scan_summary(result, paths)
    if result.failed_checkpoints:
        sys.exit(EXIT_REPORTED_FAILURES)


@main.command(name="calibrate")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to write calibration.json.")
@click.option("--grok-metric", default=None, help="Accuracy metric that defines T_grok (default: test_acc, eval_accuracy, ...).")
@click.option("--no-representation", is_flag=True, help="Skip the forward pass that computes H̃ for grokspec runs.")
def calibrate_command(run_dirs: tuple[Path, ...], out: Path, grok_metric: str | None, no_representation: bool) -> None:
    """Fit thresholds H* and the time-to-grok law ΔT = C1 (v − H*)^γ on runs that grokked."""
    from grokspec.io_atomic import write_json
    from grokspec.scan.calibrate import calibrate
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
            click.echo(
                f"ΔT = {law['c1']:.3g} (H̃ − H*)^{law['gamma']:.2f}, R² = {law['r2']:.2f}, ±{law['interval_steps']:.0f} steps"
            )
    click.echo(f"{len(calibration['series'])} series written to {out}")
