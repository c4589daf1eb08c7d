"""What a scan says about a checkpoint it could not read: one line.

Anything raised while one checkpoint is discovered, opened, read or
computed becomes such a line in the report's warnings; the scan goes on.
Errors grokspec raises on purpose (:class:`~grokspec.errors.GrokspecError`)
carry their own message; operating-system errors name the file and the
reason; anything else is called what it is — an unexpected error, a bug to
report — with grokspec's version.
"""

from __future__ import annotations

import os

from grokspec import __version__
from grokspec.errors import GrokspecError
from grokspec.scan.guards import display_name

__all__ = ["MESSAGE_LIMIT", "REPORT_HINT", "describe_failure"]

#: The longest message one failure gets in the report.
MESSAGE_LIMIT = 400
REPORT_HINT = "please report it to the grokspec maintainers with the command that caused it"


def _one_line(text: str) -> str:
    return display_name(" ".join(text.split()))[:MESSAGE_LIMIT]


def describe_failure(error: BaseException) -> str:
    """One printable line for `error`."""
    if isinstance(error, GrokspecError):
        return _one_line(str(error)) or type(error).__name__
    if isinstance(error, UnicodeEncodeError) and "surrogate" in str(error):
        return "its path is not valid UTF-8, which the engine cannot open; rename it"
    if isinstance(error, OSError):
        name = os.fsdecode(error.filename) if isinstance(error.filename, (str, bytes, os.PathLike)) else ""
        where = f" {os.path.basename(name)}" if name else ""
        return _one_line(f"cannot read{where}: {error.strerror or error}")
    if isinstance(error, MemoryError):
        return "ran out of memory while reading it"
    if isinstance(error, RecursionError):
        return "nested too deeply to read (RecursionError)"
    detail = _one_line(str(error))
    return f"unexpected {type(error).__name__}{': ' + detail if detail else ''} (grokspec {__version__}: a bug; {REPORT_HINT})"
