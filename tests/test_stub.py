"""The type stub of the Rust module matches the module, and the package type-checks against it."""

import subprocess
import sys
from pathlib import Path


def test_core_stub_matches_the_extension_module():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "grokspec._core", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_type_checks():
    # The stub is only worth something if the package is checked against it.
    package = Path(__file__).resolve().parent.parent / "python" / "grokspec"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", str(package)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
