"""The protocol-buffer wire format, read without a schema or the protobuf
package: enough for the few fields grokspec takes from TensorBoard's event
files (:mod:`grokspec.scan.tensorboard`) and W&B's run files
(:mod:`grokspec.scan.wandb_logs`). Every length is checked against what is
left of the message; anything that does not parse raises :class:`Malformed`."""

from __future__ import annotations

__all__ = ["Malformed", "fields", "signed", "varint"]


class Malformed(ValueError):
    """Bytes that are not a well-formed message."""


def fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one protocol buffer message: varints as int,
    fixed and length-delimited fields as bytes. Groups (wire types 3, 4) are refused."""
    out: list[tuple[int, int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = varint(data, position)
            out.append((field, wire, value))
            continue
        if wire == 2:
            size, position = varint(data, position)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise Malformed(f"wire type {wire}")
        if position + size > len(data):
            raise Malformed("a field runs past its message")
        out.append((field, wire, data[position : position + size]))
        position += size
    return out


def varint(data: bytes, position: int) -> tuple[int, int]:
    """The base-128 number at `position` and the position after it."""
    result = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise Malformed("a number runs past its message")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
    raise Malformed("a number longer than 10 bytes")


def signed(value: int) -> int:
    """An int64 field read as a varint (negative numbers are 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value
