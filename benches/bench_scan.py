"""Scan benchmarks: 100 checkpoints against the plain-torch way, and the
peak memory of a sharded checkpoint.

    pytest benches/bench_scan.py -s
"""

from __future__ import annotations

from grokspec.bench.scan import run_scan_speed_benchmark, run_sharded_memory_benchmark


def test_scan_speed(benchmark):
    result = benchmark.pedantic(run_scan_speed_benchmark, kwargs={"checkpoints": 100, "repeats": 3}, rounds=1)
    benchmark.extra_info.update(result)
    assert result["max_entropy_difference"] < 1e-6


def test_sharded_checkpoint_memory(benchmark):
    result = benchmark.pedantic(run_sharded_memory_benchmark, rounds=1)
    benchmark.extra_info.update(result)
    assert result["failed_checkpoints"] == 0
