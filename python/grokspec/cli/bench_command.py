"""``grokspec bench``: the side-by-side benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from grokspec.cli.app import main
from grokspec.cli.console import status_printer


@main.command()
@click.option("--quick", is_flag=True, help="Small matrices only (a smoke test, seconds).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads for every contender (default: all cores).")
@click.option(
    "--budget",
    type=click.FloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="Seconds per contender and case, shared by its three rounds.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for the README).")
@click.option(
    "--scan",
    "scan_bench",
    is_flag=True,
    help="Also the scan benchmarks (100 checkpoints vs plain torch; a 1.2 GB sharded checkpoint's peak memory).",
)
@click.option(
    "--approx",
    "approx_bench",
    is_flag=True,
    help="Instead: the approximate entropy's accuracy over seeds and its speed against the exact engine (docs/APPROX.md).",
)
@click.option(
    "--isa",
    type=click.Choice(["native", "avx2", "portable"]),
    default="native",
    show_default=True,
    help="Force the engine's kernel path (GROKSPEC_ISA) and limit MKL (torch) to the same ISA, "
    "to measure an AVX2 or a portable machine's paths here.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def bench(
    quick: bool,
    threads: int | None,
    budget: float,
    json_path: Path | None,
    markdown: bool,
    scan_bench: bool,
    approx_bench: bool,
    isa: str,
    quiet: bool,
) -> None:
    """Side-by-side benchmark against torch.linalg, numpy and scipy on this machine."""
    limits = _force_isa(isa)
    from dataclasses import asdict

    from grokspec import _core
    from grokspec.bench.load import load_since, snapshot
    from grokspec.bench.spectral import DEFAULT_CASES, QUICK_CASES, as_records, markdown_table, run_benchmark, speedup_text
    from grokspec.io_atomic import write_json

    threads = threads or _core.default_threads()
    if approx_bench:
        _approx_bench(quick, threads, json_path, quiet, limits)
        return
    update, stop = status_printer(quiet)
    before = snapshot()
    try:
        results = run_benchmark(QUICK_CASES if quick else DEFAULT_CASES, threads=threads, budget=budget, progress=update)
    finally:
        stop()
    load = load_since(before, snapshot())
    machine = _machine_line(threads, limits)
    load_line = f"Load during the run: {load.describe()}" if load else "Load during the run: unknown (no /proc/stat)"
    if markdown:
        click.echo(f"Machine: {machine}\n{load_line}\n")
        click.echo(markdown_table(results))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"grokspec bench ({machine})")
        for column in ("case", "dtype", "contender", "time", "grokspec speedup", "entropy error"):
            table.add_column(column, justify="right" if column in ("time", "grokspec speedup", "entropy error") else "left")
        for r in results:
            table.add_row(r.case, r.dtype, r.contender, f"{r.seconds:.4g} s", speedup_text(r), f"{r.entropy_error:.1e}")
        Console().print(table)
        click.echo(load_line)
    scan_results: dict[str, Any] = {}
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
                f"sharded checkpoint of {memory['total_bytes'] / mb:.0f} MB "
                f"(largest shard {memory['largest_shard_bytes'] / mb:.0f} MB): "
                f"peak RSS {memory['peak_rss_bytes'] / mb:.0f} MB = {memory['peak_over_largest_shard']:.2f}x the largest shard "
                f"(Python baseline {memory['python_baseline_rss_bytes'] / mb:.0f} MB), {memory['seconds']:.1f} s"
            )
    if json_path is not None:
        record = {"machine": machine, "threads": threads, "load": asdict(load) if load else None}
        write_json(json_path, record | {"results": as_records(results), "scan": scan_results})


#: MKL's name for the widest ISA it may use (MKL_ENABLE_INSTRUCTIONS).
_MKL_ISA = {"avx2": "AVX2", "portable": "SSE4_2"}


def _force_isa(isa: str) -> str:
    """Sets the environment that narrows the engine's kernels and MKL to `isa`,
    before either reads it (the engine picks its path once per process, MKL
    when torch loads). Returns what to add to the machine line."""
    import os
    import sys

    if isa == "native":
        return ""
    if "torch" in sys.modules:
        raise click.UsageError("--isa must be set before torch is loaded; run grokspec bench in a fresh process")
    os.environ["GROKSPEC_ISA"] = isa
    os.environ["MKL_ENABLE_INSTRUCTIONS"] = _MKL_ISA[isa]
    from grokspec import _core

    if _core.isa() != isa:
        raise click.UsageError(f"this CPU cannot run the {isa} path (the engine chose {_core.isa()})")
    # faer's GEMM (the Gram product) picks its own micro-kernels and has no switch.
    return f" (forced; torch's MKL limited to {_MKL_ISA[isa]}; faer GEMM native)"


def _machine_line(threads: int, limits: str) -> str:
    """The machine a table was measured on: CPU, kernel path (and what was forced), threads, Python."""
    import platform

    from grokspec.bench.spectral import kernel_isa
    from grokspec.cpu import cpu_model

    return f"{cpu_model()}, kernels {kernel_isa()}{limits}, {threads} threads, Python {platform.python_version()}"


def _approx_bench(quick: bool, threads: int, json_path: Path | None, quiet: bool, limits: str) -> None:
    """``grokspec bench --approx``: both tables as Markdown (they go to docs/APPROX.md)."""
    from grokspec.bench.approx import accuracy_markdown, as_records, run_accuracy, run_speed, speed_markdown
    from grokspec.io_atomic import write_json

    update, stop = status_printer(quiet)
    try:
        size, seeds = ((512, 512), 10) if quick else ((1024, 1024), 20)
        accuracy = run_accuracy(size, seeds, threads=threads, progress=update)
        shapes = ((2048, 2048),) if quick else ((4096, 4096), (4096, 11008), (8192, 8192))
        speed = run_speed(shapes, threads=threads, progress=update)
    finally:
        stop()
    from grokspec.block_products import describe_choice

    machine = f"{_machine_line(threads, limits)}; estimate's products: {describe_choice()}"
    click.echo(f"Machine: {machine}\n\nAccuracy (normalized entropy, against the exact engine):\n")
    click.echo(accuracy_markdown(accuracy))
    click.echo("\nSpeed (power 2, normalize dim; the faster of two exact runs against the median of three estimates):\n")
    click.echo(speed_markdown(speed))
    if json_path is not None:
        write_json(
            json_path, {"machine": machine, "threads": threads, "accuracy": as_records(accuracy), "speed": as_records(speed)}
        )
