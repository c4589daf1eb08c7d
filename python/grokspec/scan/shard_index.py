"""Shard indexes (``*.safetensors.index.json``, ``*.bin.index.json``): the
check that runs before the files an index names are looked at, and what an
index and its shards disagree about, said as notes.

An index must be a JSON object whose ``weight_map`` names files beside it
(no absolute paths, no ``..``, no NUL, see
:func:`grokspec.scan.guards.confined`), each a regular file. A sharded
checkpoint is then read shard by shard (every tensor of every file the index
names, as ``transformers`` loads one), so a ``weight_map`` that lies does not
change what is scanned; but two things the user should hear of: tensors the
index promises that no shard holds (they are missing from the table), and a
tensor held by two shards (only one of them can be scanned — the later
shard's, as a loader that reads the shards in turn would keep)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from grokspec.errors import CheckpointError
from grokspec.scan.guards import INDEX_SIZE_LIMIT, confined, display_name, format_bytes, json_kind, require_regular_file

__all__ = ["ShardIndex", "check_shard_index", "shard_notes"]

#: Names quoted in a note, at most.
SHOWN = 3


class ShardIndex(NamedTuple):
    """A checked shard index."""

    #: The shard files, sorted, each a regular file beside the index.
    shards: list[Path]
    #: Tensor name -> the shard file name the index says holds it.
    weight_map: dict[str, str]


def _read_index(index: Path) -> Any:
    """The index's JSON, read only if it is a regular file of at most INDEX_SIZE_LIMIT bytes."""
    name = display_name(index.name)
    status = require_regular_file(index)
    if status.st_size > INDEX_SIZE_LIMIT:
        raise CheckpointError(f"{name} is {format_bytes(status.st_size)}, too large for a shard index")
    try:
        return json.loads(index.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{name} is not a valid shard index: not UTF-8 text") from None
    except RecursionError:
        raise CheckpointError(f"{name} is not a valid shard index: nested too deeply") from None
    except ValueError as error:
        raise CheckpointError(f"{name} is not a valid shard index: not JSON ({error})") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {name}: {error.strerror or error}") from None


def check_shard_index(index: Path) -> ShardIndex:
    """The shard files a ``*.index.json`` names, each confined to the index's
    folder and a regular file, with its weight_map; CheckpointError for
    anything malformed."""
    name = display_name(index.name)
    data = _read_index(index)
    if not isinstance(data, dict):
        raise CheckpointError(f"{name} is not a valid shard index: {json_kind(data)}, not an object with a weight_map")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        found = "missing" if "weight_map" not in data else json_kind(weight_map)
        raise CheckpointError(f"{name} is not a valid shard index: its weight_map is {found}, not an object")
    if not weight_map:
        raise CheckpointError(f"{name} is not a valid shard index: its weight_map names no tensors")
    # Each distinct name once (an index names a few shards for thousands of tensors); a non-string is refused first.
    entries = [e for e in weight_map.values() if not isinstance(e, str)][:1] or set(weight_map.values())
    shards = sorted({confined(index.parent, entry, name) for entry in entries})
    suffix = ".bin" if index.name.endswith(".bin.index.json") else ".safetensors"
    strange = [display_name(s.name)[:80] for s in shards if not s.name.endswith(suffix)]
    if strange:  # e.g. the index itself, which would make the checkpoint vanish
        raise CheckpointError(f"{name} is not a valid shard index: it names {strange[0]!r}, not a {suffix} file")
    missing = [display_name(s.name) for s in shards if not os.path.lexists(s)]
    if missing:
        raise CheckpointError(f"{name} lists shards that are missing: {', '.join(missing[:5])}")
    for shard in shards:
        require_regular_file(shard)
    return ShardIndex(shards, weight_map)


def shard_notes(weight_map: Mapping[str, str], contents: Iterable[tuple[str, Iterable[str]]]) -> tuple[str, ...]:
    """Notes for tensors of `weight_map` that no shard holds and for tensors
    that several shards hold (`contents`: each shard's file name and the
    tensor names it holds, in the order the shards were read)."""
    holders: dict[str, list[str]] = {}
    for shard, names in contents:
        for name in names:
            holders.setdefault(name, []).append(shard)
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
