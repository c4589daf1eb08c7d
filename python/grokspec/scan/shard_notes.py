"""What a shard index and its shards disagree about, said as notes.

A sharded checkpoint is read shard by shard (every tensor of every file the
index names, as ``transformers`` loads one), so an index whose ``weight_map``
lies does not change what is scanned; but two things the user should hear
of: tensors the index promises that no shard holds (they are missing from the
table), and a tensor held by two shards (only one of them can be scanned —
the later shard's, as a loader that reads the shards in turn would keep)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from grokspec.scan.guards import INDEX_SIZE_LIMIT, display_name

__all__ = ["index_weight_map", "shard_notes"]

#: Names quoted in a note, at most.
SHOWN = 3


def index_weight_map(index: Path) -> dict[str, str]:
    """The tensor names of an index's ``weight_map`` with the shard each is
    said to be in; {} where the index cannot be read again (it was checked,
    by :func:`grokspec.scan.guards.check_shard_index`, when its shards were
    found; these notes are a courtesy and never fail a checkpoint)."""
    try:
        with open(index, "rb") as handle:
            text = handle.read(INDEX_SIZE_LIMIT + 1)
        weight_map = json.loads(text.decode("utf-8"))["weight_map"] if len(text) <= INDEX_SIZE_LIMIT else {}
        return {str(name): str(shard) for name, shard in weight_map.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}


def shard_notes(weight_map: Mapping[str, str], holders: Mapping[str, list[str]]) -> tuple[str, ...]:
    """Notes for tensors of `weight_map` that no shard holds and for tensors
    that several shards hold (`holders`: each tensor's shard file names, in
    the order the shards were read)."""
    notes = []
    missing = [name for name in weight_map if name not in holders]
    if missing:
        shown = ", ".join(repr(display_name(name)) for name in missing[:SHOWN])
        more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
        notes.append(f"the shard index names {len(missing)} tensor(s) that none of its shards holds ({shown}{more}): not scanned")
    doubled = [(name, files) for name, files in holders.items() if len(files) > 1]
    for name, files in doubled[:SHOWN]:
        shards, kept = ", ".join(display_name(f) for f in files), display_name(files[-1])
        notes.append(f"tensor {display_name(name)!r} is in {len(files)} shards ({shards}): the one in {kept} is scanned")
    if len(doubled) > SHOWN:
        notes.append(f"{len(doubled) - SHOWN} more tensors are in more than one shard")
    return tuple(notes)
