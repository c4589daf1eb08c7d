"""trajectories.png is redrawn only when what it shows changed (issue #12:
a cached rescan must not pay for matplotlib), and a foreign file of that
name is replaced, never trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from fresh_process import modules_loaded_by_scan
from grokspec.scan.plot_cache import DIGEST_KEY, plot_digest, plot_is_current
from grokspec.scan.scan import ScanOptions, scan


@pytest.fixture
def series(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    for step in (100, 200, 300):
        weights = {"w": (rng.standard_normal((12, 6)) * (1 + step / 100)).astype(np.float32)}
        save_file(weights, str(tmp_path / f"step_{step}.safetensors"))
    return tmp_path


def _scan_in_a_fresh_process(directory: Path, *extra: str) -> str:
    return modules_loaded_by_scan(directory, *extra, watched=("matplotlib",))


def test_an_unchanged_rescan_keeps_the_figure_and_a_changed_one_redraws(series: Path):
    png = series / "grokspec-scan" / "trajectories.png"
    assert _scan_in_a_fresh_process(series) == "matplotlib", "the first scan draws"
    first = png.read_bytes()
    assert _scan_in_a_fresh_process(series) == "", "nothing changed: matplotlib is not even imported"
    assert png.read_bytes() == first
    assert _scan_in_a_fresh_process(series, "--threshold", "0.5") == "matplotlib", "another report: redrawn"
    assert png.read_bytes() != first


def test_the_digest_follows_the_table_and_the_report(series: Path):
    result = scan(series, cache_path=None)
    other = scan(series, ScanOptions(threshold=0.3), cache_path=None)
    assert plot_digest(result.rows, result.report) == plot_digest(scan(series, cache_path=None).rows, result.report)
    assert plot_digest(result.rows, result.report) != plot_digest(result.rows, other.report)
    fewer = type(result.rows)(list(result.rows)[1:])
    assert plot_digest(result.rows, result.report) != plot_digest(fewer, result.report)


def test_foreign_and_damaged_files_are_never_current(tmp_path: Path, series: Path):
    png = series / "grokspec-scan" / "trajectories.png"
    _scan_in_a_fresh_process(series)
    digest = plot_digest(scan(series, cache_path=None).rows, scan(series, cache_path=None).report)
    assert plot_is_current(png, digest)
    data = png.read_bytes()
    for name, content in {
        "empty": b"",
        "text": b"not a png at all",
        "truncated": data[:40],
        "huge length": data[:8] + b"\xff\xff\xff\xfftEXt" + DIGEST_KEY.encode() + b"\0" + digest.encode(),
    }.items():
        (tmp_path / name).write_bytes(content)
        assert not plot_is_current(tmp_path / name, digest), name
    assert not plot_is_current(tmp_path / "missing.png", digest)
    png.write_bytes(b"garbage")
    _scan_in_a_fresh_process(series)
    assert png.read_bytes().startswith(b"\x89PNG") and plot_is_current(png, digest), "a foreign file is replaced"
