"""Metrics that Weights & Biases logged for a run whose checkpoints Lightning saved.

Lightning's ``WandbLogger`` puts ``ModelCheckpoint``'s files in
``<save_dir>/<project>/<run id>/checkpoints/`` and W&B keeps the run's
history, online or offline, in ``<save_dir>/wandb/<offline->run-<time>-<run
id>/run-<run id>.wandb`` (a run resumed later gets a folder per session).
grokspec looks for that ``wandb/`` folder in the run's folder and the three
above it and reads every such file of the run id, without the wandb package.

The file is W&B's "datastore": a 7-byte header (``:W&B``, the magic 0xBEE1,
version 0), then LevelDB's log format — 32 KiB blocks of records, each a
7-byte header (checksum u32, length u16, type u8: 1 whole, 2 first, 3 middle,
4 last piece) and its bytes; a block's last bytes are zero padding when a
header does not fit. A record is a ``Record`` protocol buffer; its
``history`` (field 2) holds ``item``s (1: ``key`` 1, ``nested_key`` 2,
``value_json`` 16) and the ``_step`` (2: ``num`` 1). Lightning logs its own
step as the item ``trainer/global_step`` (the HF Trainer's callback as
``train/global_step``); where one is there it is the row's step, else
``_step``. Only numbers are taken (histograms, tables and media are JSON
objects and are skipped).

Read defensively: checksums are not verified (W&B's is CRC-32C, not in the
standard library), every length is checked against the block, a record that
does not parse ends the reading with a problem (the rows before it are kept),
at most :data:`MAX_RECORDS` records (:data:`MAX_PIECES` pieces) and
:data:`MAX_RECORD_BYTES` per record.
"""

from __future__ import annotations

import glob
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from grokspec.scan.guards import is_regular_file
from grokspec.scan.protobuf_wire import Malformed, fields, signed

__all__ = ["MAX_RECORDS", "MAX_RECORD_BYTES", "is_run_file", "read_history", "run_logs"]

#: Records read from one file, at most (a long run logs well under a million).
MAX_RECORDS = 2_000_000
#: Pieces read from one file, at most (a record is one piece, or a few when it crosses a block).
MAX_PIECES = 2 * MAX_RECORDS
#: The largest record assembled from its pieces (a history row is ~100 bytes to kilobytes).
MAX_RECORD_BYTES = 64 << 20
_HEADER = b":W&B\xe1\xbe\x00"
_BLOCK = 32 * 1024
_PIECE_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
#: W&B's run ids: 8 characters by default, any of these when the user sets one.
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The logged items that are the training step, in the order they are preferred.
_STEP_KEYS = ("trainer/global_step", "train/global_step")


def run_logs(checkpoints: Path) -> tuple[Path, ...]:
    """For Lightning's ``<project>/<run id>/checkpoints/`` folder of a W&B run:
    the run's ``.wandb`` files (one per session, in time order); () when
    there are none."""
    run = checkpoints.parent
    if checkpoints.name != "checkpoints" or _RUN_ID.fullmatch(run.name) is None:
        return ()
    pattern = f"*-{glob.escape(run.name)}/run-{glob.escape(run.name)}.wandb"
    for folder in [run, *run.parents][:4]:
        wandb = folder / "wandb"
        if wandb.is_dir() and not wandb.is_symlink():
            found = sorted(p for p in wandb.glob(pattern) if is_regular_file(p) and not p.is_symlink())
            if found:
                return tuple(found)
    return ()


def is_run_file(path: Path) -> bool:
    """A path :func:`run_logs` gave."""
    return path.suffix == ".wandb" and path.name.startswith("run-")


def read_history(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """``{"step": s, key: value, ...}`` per history row of one ``.wandb``
    file (OSError when it cannot be opened); problems are appended."""
    rows: list[dict[str, Any]] = []
    with open(path, "rb") as handle:
        if handle.read(len(_HEADER)) != _HEADER:
            problems.append("not a W&B run file (its header is not :W&B)")
            return rows
        try:
            for count, record in enumerate(_records(handle)):
                if count >= MAX_RECORDS:
                    problems.append(f"only the first {MAX_RECORDS:,} records are read")
                    break
                row = _history_row(record)
                if row is not None:
                    rows.append(row)
        except Malformed as error:
            problems.append(f"a damaged record ({error}); the rows before it are kept")
    return rows


def _records(handle: BinaryIO) -> Iterator[bytes]:
    """The records of the log, each assembled from its pieces (at most
    :data:`MAX_PIECES` pieces are read: empty ones would otherwise let a
    hostile file keep the loop busy without yielding a record)."""
    position = len(_HEADER)
    pending: bytearray | None = None
    for _ in range(MAX_PIECES):
        left = _BLOCK - position % _BLOCK
        if left < _PIECE_HEADER:  # the block's zero padding
            handle.read(left)
            position += left
            continue
        header = handle.read(_PIECE_HEADER)
        if len(header) < _PIECE_HEADER:
            if pending is not None:
                raise Malformed("the file ends inside a record")
            return
        length, kind = int.from_bytes(header[4:6], "little"), header[6]
        if length > left - _PIECE_HEADER:
            raise Malformed("a piece runs past its block")
        data = handle.read(length)
        if len(data) < length:
            raise Malformed("the file ends inside a record")
        position += _PIECE_HEADER + length
        if kind == _FULL and pending is None:
            yield bytes(data)
        elif kind == _FIRST and pending is None:
            pending = bytearray(data)
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending += data
            if len(pending) > MAX_RECORD_BYTES:
                raise Malformed(f"a record larger than {MAX_RECORD_BYTES >> 20} MB")
            if kind == _LAST:
                yield bytes(pending)
                pending = None
        elif kind == 0 and length == 0:  # zeros written ahead of a crash: nothing more was logged
            return
        else:
            raise Malformed(f"a piece of type {kind} out of order")
    raise Malformed(f"more than {MAX_PIECES:,} pieces")


def _history_row(record: bytes) -> dict[str, Any] | None:
    history = next((v for f, w, v in fields(record) if f == 2 and w == 2), None)
    if not isinstance(history, bytes):
        return None
    values: dict[str, float] = {}
    step: int | None = None
    for field, wire, value in fields(history):
        if field == 1 and wire == 2 and isinstance(value, bytes):
            item = _item(value)
            if item is not None and not item[0].startswith("_"):  # W&B's own _step, _runtime, _timestamp
                values[item[0]] = item[1]
        elif field == 2 and wire == 2 and isinstance(value, bytes):
            step = next((signed(v) for f, w, v in fields(value) if f == 1 and isinstance(v, int)), 0)
    logged_step = next((values[k] for k in _STEP_KEYS if k in values), None)
    if logged_step is not None and logged_step == int(logged_step):
        step = int(logged_step)
    if step is None or not values:
        return None
    return {"step": step, **values}


def _item(data: bytes) -> tuple[str, float] | None:
    """A history item's key (nested keys joined by "/") and its value, if a number."""
    key, nested, text = "", [], None
    for field, wire, value in fields(data):
        if wire != 2 or not isinstance(value, bytes):
            continue
        if field == 1:
            key = value.decode("utf-8", "replace")
        elif field == 2:
            nested.append(value.decode("utf-8", "replace"))
        elif field == 16:
            text = value
    if text is None or len(text) > 64:
        return None
    try:
        number = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        return None
    return "/".join(nested) if nested else key, float(number)
