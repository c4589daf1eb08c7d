"""The ``grokspec`` command line: a thin layer over the library.

Each command parses its options, calls one library function, and prints;
one module per command (``*_command.py``), the group in :mod:`app`, terminal
output in :mod:`console`. Importing this package registers every command.
"""

from grokspec.cli import alarms_command, bench_command, demo_command, reproduce_command, scan_command, train_command
from grokspec.cli.app import EXIT_BAD_INPUT, EXIT_OK, EXIT_REPORTED_FAILURES, main

__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_REPORTED_FAILURES", "main"]

# The command modules register themselves on `main` when imported.
del alarms_command, bench_command, demo_command, reproduce_command, scan_command, train_command
