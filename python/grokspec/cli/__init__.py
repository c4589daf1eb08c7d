"""The ``grokspec`` command line: a thin layer over the library.

Each command parses its options, calls one library function, and prints;
one module per command (``*_command.py``), the group in :mod:`app`, terminal
output in :mod:`console`. A command's module is imported, and registers the
command on `main`, only when the command is looked up (``app.COMMAND_MODULES``).
"""

from grokspec.cli.app import EXIT_BAD_INPUT, EXIT_OK, EXIT_REPORTED_FAILURES, main

__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_REPORTED_FAILURES", "main"]
