"""The ``grokspec`` command group and its exit codes.

Exit codes: 0 ok; 1 the work ran but something was reported as failed;
2 bad usage or input that cannot be processed at all; 3 an internal error
(a bug in grokspec), reported in one line with the version and how to
report it — never a bare traceback (``GROKSPEC_DEBUG=1`` shows it)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from grokspec import __version__
from grokspec._extras import exit_missing_extra
from grokspec.errors import GrokspecError

EXIT_OK = 0
EXIT_REPORTED_FAILURES = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3
DEBUG_ENV = "GROKSPEC_DEBUG"


#: Each command and the module that defines it. A module is imported when its
#: command runs (or the help lists them): importing every command's
#: dependencies would cost every invocation of any one of them.
COMMAND_MODULES = {
    "alarms": "alarms_command",
    "bench": "bench_command",
    "calibrate": "scan_command",
    "demo": "demo_command",
    "reproduce": "reproduce_command",
    "scan": "scan_command",
    "train": "train_command",
}


class _Group(click.Group):
    """Loads commands on demand; turns an exception no command expected into
    one line and exit 3."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMAND_MODULES:
            try:
                importlib.import_module(f"grokspec.cli.{COMMAND_MODULES[name]}")  # registers itself on `main`
            except ModuleNotFoundError as error:
                exit_missing_extra(f"grokspec {name}", error.name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except GrokspecError as error:  # a problem grokspec recognized, which the command did not catch itself
            click.echo(f"error: {' '.join(str(error).split())}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except Exception as error:
            if os.environ.get(DEBUG_ENV):
                raise
            detail = " ".join(str(error).split())[:300]
            what = "ran out of memory" if isinstance(error, MemoryError) else f"{type(error).__name__}: {detail}"
            click.echo(
                f"internal error: {what} (grokspec {__version__}). This is a bug in grokspec; please report it "
                f"with the command you ran. Set {DEBUG_ENV}=1 to see the traceback.",
                err=True,
            )
            sys.exit(EXIT_INTERNAL_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grokspec")
def main() -> None:
    """Predict grokking from the collapse of spectral entropy."""
