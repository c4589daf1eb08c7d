"""Whether trajectories.png already shows what a scan would draw.

Drawing the figure (importing matplotlib, laying out the panels) costs most
of a cached rescan of a run with a trajectory (~1 s of ~1.3 s measured on a
2-core Xeon). The figure is a function of the table, the report and the
plotting code, so its digest is stored in the PNG itself (a ``tEXt`` chunk,
written by matplotlib's ``metadata``) and a rescan redraws only when the
digest differs. Reading stops at the first image-data chunk and never reads
more than a few kilobytes: a foreign file of that name is just "not current".
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from grokspec import __version__
from grokspec.scan.report import ScanReport
from grokspec.scan.table import ScanTable

__all__ = ["DIGEST_KEY", "plot_digest", "plot_is_current"]

#: The PNG text key holding the digest.
DIGEST_KEY = "grokspec-digest"
#: Bump when the figure's drawing changes, so that old PNGs are redrawn.
PLOT_FORMAT = "trajectories/2"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_HEADER_BYTES = 1 << 16


def plot_digest(table: ScanTable, report: ScanReport) -> str:
    """A digest of everything the figure shows (and of the code that draws it)."""
    digest = hashlib.sha256(f"{PLOT_FORMAT}\0{__version__}\0".encode())
    digest.update(json.dumps(report.to_json(), sort_keys=True, default=str).encode())
    for row in table:
        digest.update(repr(tuple(row)).encode("utf-8", "backslashreplace"))
    return digest.hexdigest()


def plot_is_current(path: Path, digest: str) -> bool:
    """True when `path` is a PNG whose text chunks hold `digest` under DIGEST_KEY."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(_MAX_HEADER_BYTES)
    except OSError:
        return False
    if not header.startswith(_PNG_SIGNATURE):
        return False
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(header):
        length, kind = struct.unpack(">I4s", header[position : position + 8])
        if kind == b"IDAT":
            return False
        data = header[position + 8 : position + 8 + length]
        if kind == b"tEXt" and len(data) == length:
            key, _, value = data.partition(b"\0")
            if key == DIGEST_KEY.encode():
                return value == digest.encode()
        position += 12 + length
    return False
