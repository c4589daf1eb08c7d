"""The ``grokspec`` command group and its exit codes.

Exit codes: 0 ok; 1 the work ran but something was reported as failed;
2 bad usage or input that cannot be processed at all."""

from __future__ import annotations

import click

from grokspec import __version__

EXIT_OK = 0
EXIT_REPORTED_FAILURES = 1
EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grokspec")
def main() -> None:
    """Predict grokking from the collapse of spectral entropy."""
