"""Scalars from TensorBoard event files, read without TensorFlow or tensorboard.

Lightning's default logger (``TensorBoardLogger``, ``version_N/events.out.tfevents.*``
beside ``version_N/checkpoints/``) and torch's ``SummaryWriter`` keep the logged
metrics only there. An event file is a sequence of TFRecords (a little-endian
u64 length, a u32 checksum, the bytes, a u32 checksum), each an ``Event``
protocol buffer: ``step`` (field 2) and a ``Summary`` (field 5) whose ``Value``
entries (field 1) carry a ``tag`` (1) and either a ``simple_value`` (2, float32:
``add_scalar``) or a scalar ``TensorProto`` (8: ``add_scalar(new_style=True)``,
its ``float_val`` 5 or ``double_val`` 6). Everything else (histograms, images,
graphs, text) is skipped by its length.

A file is read defensively: every length is checked against what is left, a
record or field that does not parse ends the reading of that file with a
problem reported (the records before it are kept), and nothing larger than
:data:`MAX_RECORD_BYTES` is held at once. Checksums are not verified (CRC-32C
is not in the standard library); a damaged record is caught by the parser's
bounds instead.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

from grokspec.scan.protobuf_wire import Malformed, fields, signed

__all__ = ["MAX_RECORDS", "MAX_RECORD_BYTES", "EventScalars", "is_event_file", "read_scalars"]

#: The largest record read (an image summary can be megabytes; a scalar event is ~50 bytes).
MAX_RECORD_BYTES = 64 << 20
#: Records read from one file, at most (a hostile file of tiny records would keep the
#: parser busy for minutes; a long real run logs well under a million events).
MAX_RECORDS = 2_000_000
_PREFIX = "events.out.tfevents."


@dataclass(frozen=True)
class EventScalars:
    #: One {"step": s, tag: value, ...} per event that held a scalar.
    records: list[dict[str, float | int]]
    #: Why the reading stopped early, if it did.
    problem: str | None


def is_event_file(name: str) -> bool:
    return name.startswith(_PREFIX)


def read_scalars(path: Path) -> EventScalars:
    """The scalars of one event file (OSError when it cannot be opened)."""
    records: list[dict[str, float | int]] = []
    with open(path, "rb") as handle:
        offset = 0
        for _ in range(MAX_RECORDS):
            header = handle.read(12)
            if not header:
                return EventScalars(records, None)
            if len(header) < 12:
                return EventScalars(records, f"truncated record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            if length > MAX_RECORD_BYTES:
                return EventScalars(records, f"a record of {length} bytes at byte {offset} (damaged?)")
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                return EventScalars(records, f"truncated record at byte {offset}")
            try:
                record = _event(data)
            except Malformed as error:
                return EventScalars(records, f"damaged record at byte {offset}: {error}")
            if record is not None:
                records.append(record)
            offset += 16 + length
        return EventScalars(records, f"stopped after {MAX_RECORDS:,} records")


def _event(data: bytes) -> dict[str, float | int] | None:
    step = 0  # a protocol buffer leaves out fields at their default: step 0 is not written
    scalars: dict[str, float | int] = {}
    for field, wire, value in fields(data):
        if field == 2 and isinstance(value, int):
            step = signed(value)
        elif field == 5 and wire == 2:
            assert isinstance(value, bytes)
            for v_field, v_wire, entry in fields(value):
                if v_field == 1 and v_wire == 2:
                    assert isinstance(entry, bytes)
                    tag, number = _value(entry)
                    if tag and number is not None and math.isfinite(number):
                        scalars[tag] = number
    if step < 0 or not scalars:
        return None
    return {**scalars, "step": step}


def _value(data: bytes) -> tuple[str | None, float | None]:
    tag: str | None = None
    number: float | None = None
    for field, wire, value in fields(data):
        if field == 1 and wire == 2:
            assert isinstance(value, bytes)
            tag = value.decode("utf-8", "replace")
        elif field == 2 and wire == 5:
            assert isinstance(value, bytes)
            (number,) = struct.unpack("<f", value)
        elif field == 8 and wire == 2:
            assert isinstance(value, bytes)
            number = _tensor_scalar(value)
    return tag, number


def _tensor_scalar(data: bytes) -> float | None:
    """The one value of a scalar TensorProto (float_val 5, double_val 6; packed or not)."""
    for field, wire, value in fields(data):
        if field == 5 and wire == 5:
            assert isinstance(value, bytes)
            return float(struct.unpack("<f", value)[0])
        if field == 5 and wire == 2 and isinstance(value, bytes) and len(value) >= 4:
            return float(struct.unpack("<f", value[:4])[0])
        if field == 6 and wire == 1:
            assert isinstance(value, bytes)
            return float(struct.unpack("<d", value)[0])
        if field == 6 and wire == 2 and isinstance(value, bytes) and len(value) >= 8:
            return float(struct.unpack("<d", value[:8])[0])
    return None
