"""The type stub of the Rust module matches what the module exports."""

import subprocess
import sys


def test_core_stub_matches_the_extension_module():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "grokspec._core", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
