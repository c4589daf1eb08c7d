"""The benchmark code runs and reports correct answers (timings are not asserted)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from grokspec.bench.scan import run_scan_speed_benchmark
from grokspec.bench.spectral import QUICK_CASES, BenchResult, markdown_table, paired_rounds, run_benchmark, speedup_text
from grokspec.cli import main


def test_every_contender_is_timed_and_checked_against_lapack():
    results = run_benchmark(QUICK_CASES[:2], budget=0.0, max_runs=1)
    contenders = {r.contender for r in results}
    assert contenders == {
        "grokspec",
        "torch.linalg.svdvals",
        "torch.linalg.eigvalsh(WᵀW)",
        "numpy.linalg.svd",
        "scipy.linalg.svdvals",
    }
    for r in results:
        assert r.seconds > 0 and r.runs >= 3, "one run per round at least"
        low, high = r.speedup_range
        assert low <= r.grokspec_speedup <= high
        assert r.entropy_error < 1e-5, r  # float32 contenders land near 1e-8
        if r.contender == "grokspec":
            assert r.entropy_error <= 1e-6 and r.grokspec_speedup == 1.0
    table = markdown_table(results)
    assert table.count("\n") == len(results) + 1 and "grokspec speedup" in table


def test_the_speedup_pairs_each_round_with_grokspecs_own():
    # A busy second round slows both: paired, the ratios are 2, 2, 3 and the
    # speed-up 2; the ratio of the medians (30 / 10) would say 3.
    seconds, speedup, (low, high) = paired_rounds([20.0, 60.0, 30.0], [10.0, 30.0, 10.0])
    assert (seconds, speedup, low, high) == (30.0, 2.0, 2.0, 3.0)
    seconds, speedup, (low, high) = paired_rounds([3.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert (seconds, speedup, low, high) == (2.0, 2.0, 1.0, 3.0)


def test_the_table_shows_the_rounds_range_where_it_matters():
    def row(contender: str, speedup: float, low: float, high: float) -> BenchResult:
        return BenchResult("1024x1024", "float32", contender, 0.1, 9, 1e-9, speedup, (low, high))

    assert speedup_text(row("grokspec", 1.0, 1.0, 1.0)) == "—"
    assert speedup_text(row("torch.linalg.svdvals", 2.04, 1.83, 2.11)) == "2.0× (1.8–2.1)"
    assert speedup_text(row("torch.linalg.svdvals", 2.04, 2.01, 2.03)) == "2.0×"


def test_scan_benchmark_agrees_with_plain_torch():
    result = run_scan_speed_benchmark(checkpoints=3, repeats=1)
    assert result["matrices"] == 3 * 7
    assert result["max_entropy_difference"] < 1e-6


def test_bench_command_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--quick", "--budget", "0", "--json", str(out), "--markdown"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["threads"] >= 1 and len(data["results"]) == 5 * len(QUICK_CASES)
    assert "| case |" in result.output and "Load during the run:" in result.output
    load = data["load"]
    assert load is None or (0.0 <= load["steal_fraction"] <= 1.0 and load["other_cores"] >= 0.0)


def test_bench_can_force_the_portable_path_and_says_so(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    code = (
        "from grokspec.cli import main; "
        f"main(['bench', '--quick', '--isa', 'portable', '--budget', '0', '--quiet', '--json', {str(out)!r}])"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    data = json.loads(out.read_text())
    assert "kernels portable (forced; torch's MKL limited to SSE4_2" in data["machine"]
    grokspec_rows = [r for r in data["results"] if r["contender"] == "grokspec"]
    assert grokspec_rows and all(r["entropy_error"] <= 1e-6 for r in grokspec_rows)
