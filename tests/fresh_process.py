"""`grokspec scan` in a fresh Python process, and which of the heavy modules
it imported: the measure of issue #12's fixed overhead in the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def modules_loaded_by_scan(
    directory: Path, *extra: str, runs: int = 1, watched: tuple[str, ...] = ("pandas", "matplotlib", "torch")
) -> str:
    """Runs ``grokspec scan DIRECTORY --quiet EXTRA...`` `runs` times in one
    fresh process (each run must succeed) and returns the `watched` modules
    it imported, comma-separated ("" for none)."""
    code = (
        "import sys; from grokspec.cli import main\n"
        f"for _ in range({runs}):\n"
        f"    try: main(['scan', {str(directory)!r}, '--quiet', *{list(extra)!r}])\n"
        "    except SystemExit as e: assert not e.code, e.code\n"
        f"print('LOADED:' + ','.join(m for m in {watched!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return result.stdout.rsplit("LOADED:", 1)[1].strip()
