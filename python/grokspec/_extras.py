"""The one line that says an optional dependency is missing (the console
script and the lazily loaded commands both say it), and exit code 2."""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["exit_missing_extra"]


def exit_missing_extra(what: str, module: str | None) -> NoReturn:
    """Says which package `what` lacks and how to install it; exits 2."""
    print(
        f"error: {what} needs {module}, which is not installed; install the extras with: pip install 'grokspec[all]'",
        file=sys.stderr,
    )
    sys.exit(2)
