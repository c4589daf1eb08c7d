"""What a PyTorch pickle (``.pt/.pth/.bin/.ckpt``) holds, as a scan needs it.

By default the file is read by :mod:`grokspec.scan.torch_pickle`: no code
runs, no foreign library (nor torch) is needed. ``trust_pickle`` loads it
with ``torch.load(weights_only=False)`` instead, for the rare file whose
tensors only its original classes can rebuild; where that fails for a
missing module, the safe reader is used after all.

The content is then sorted out: training state (:func:`~grokspec.scan.roles.content_role`)
is refused as :class:`TrainingStateFile` — not a failure; a file holding a
list of state dicts (:mod:`grokspec.scan.multi`) gives its entry `entry`;
otherwise the state dict (:mod:`grokspec.scan.statedict`) and its tensors,
the step in its metadata, and loss/accuracy values kept beside them.
"""

from __future__ import annotations

import lzma
import textwrap
import threading
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokspec.errors import CheckpointError
from grokspec.scan import dcp, guards
from grokspec.scan.multi import MetricPoint, find_multi, metric_points
from grokspec.scan.pt2 import PT2_SUFFIX, load_pt2
from grokspec.scan.roles import content_role
from grokspec.scan.safe_pickle import Opaque, UnreadablePickle, resolve
from grokspec.scan.statedict import MAX_DEPTH, MAX_NODES, Walk, as_mapping, find_state_dict, tensor_leaves
from grokspec.scan.torch_pickle import load_torch_file

__all__ = [
    "PICKLE_SUFFIXES",
    "STEP_KEYS",
    "PickleContent",
    "TrainingStateFile",
    "count_entries",
    "holds_torch_file",
    "read_pickle",
    "step_from_metadata",
]

#: Metadata keys that carry the step, in order of preference: SPEC §5's, then the
#: optimizer-step and iteration counters of litgpt (``step_count``; its ``iter_num`` counts
#: micro-batches), nanoGPT (``iter_num``), Megatron-LM (``iteration``) and
#: fairseq (``num_updates``) before the coarser ``epoch``.
STEP_KEYS = ("step", "global_step", "step_count", "iter_num", "iteration", "num_updates", "epoch")
#: Names of files written by ``torch.save``. ``.tar`` is the PyTorch tutorials' convention for
#: a general checkpoint (the ImageNet example's ``model_best.pth.tar``, timm's
#: ``checkpoint-N.pth.tar``); a bare ``.tar`` is read only when it holds a torch file
#: (:func:`holds_torch_file`), a real tar archive is not a checkpoint. ``.pt2`` is torch.export's
#: archive (:mod:`grokspec.scan.pt2`): not a pickle, but read through the same path.
PICKLE_SUFFIXES = (".pth.tar", ".pt.tar", ".ckpt.tar", ".tar", ".pt", ".pth", ".bin", ".ckpt", PT2_SUFFIX)
#: The first bytes of torch.save's two formats: a zip archive, or the legacy
#: format's protocol-2 pickle of its 10-byte magic number.
_TORCH_MAGICS = (b"PK\x03\x04", b"\x80\x02\x8a\x0a")


def holds_torch_file(path: Path) -> bool:
    """Whether a bare ``.tar`` file is a torch.save file (not a tar archive); never blocks."""
    return guards.first_bytes(path, 4).startswith(_TORCH_MAGICS)


class TrainingStateFile(CheckpointError):
    """The file holds training state (optimizer, scheduler, RNG, arguments), not weights."""

    def __init__(self, path: Path, role: str, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}, not model weights")
        self.role = role
        self.reason = reason


@dataclass(frozen=True)
class PickleContent:
    #: name -> tensor (TensorRef, numpy array, or torch tensor from a trusted load).
    tensors: dict[str, Any]
    metadata_step: tuple[int, str] | None
    metrics: tuple[MetricPoint, ...]
    #: Things the scan should say about the file (code it asked for, no tensors).
    notes: tuple[str, ...]


def step_from_metadata(metadata: Mapping[Any, Any]) -> tuple[int, str] | None:
    for key in STEP_KEYS:
        value = resolve(metadata.get(key))
        try:
            if value is not None and not isinstance(value, bool):
                number = float(value)
                if number >= 0 and number == int(number):
                    return int(number), f"metadata:{key}"
        except (TypeError, ValueError, OverflowError):
            continue
    return None


_lock = threading.Lock()
_last: tuple[tuple[str, int, int, bool], tuple[Any, frozenset[str]]] | None = None


def _load(path: Path, trust_pickle: bool) -> tuple[Any, frozenset[str]]:
    """The unpickled value and the suspicious names it referred to. The last
    file is remembered, so the entries of a many-checkpoint file (and the
    discovery's look inside it) unpickle it once."""
    global _last
    if path.is_dir():  # a torch.distributed checkpoint: grokspec's own reader, trusted or not; its metadata is small
        return dcp.load_dcp(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, trust_pickle)
    with _lock:
        if _last is not None and _last[0] == key:
            return _last[1]
    pt2 = path.name.endswith(PT2_SUFFIX)  # torch.load cannot read it: grokspec's reader, trusted or not
    loaded = _trusted_load(path) if trust_pickle and not pt2 else None
    if loaded is None:
        try:
            safe = load_pt2(path) if pt2 else load_torch_file(path)
        except (UnreadablePickle, zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, lzma.LZMAError) as error:
            raise CheckpointError(f"{path.name} cannot be read as a PyTorch checkpoint: {error}") from error
        loaded = (safe.value, safe.suspicious)
    with _lock:
        _last = (key, loaded)
    return loaded


def _trusted_load(path: Path) -> tuple[Any, frozenset[str]] | None:
    """torch.load with the original classes; None when a module it needs is
    missing (the safe reader then reads the file without it)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False), frozenset()
    except ModuleNotFoundError:
        return None
    except Exception as error:  # anything a trusted pickle raises is still just an unreadable checkpoint
        raise CheckpointError(f"{path.name} cannot be read as a PyTorch checkpoint: {_short(error)}") from error


def _short(error: BaseException) -> str:
    """The first line of an error, shortened at a word (never cut mid-word)."""
    text = str(error).strip().splitlines()
    return textwrap.shorten(text[0] if text else type(error).__name__, 300, placeholder=" …")


def count_entries(path: Path) -> int | None:
    """How many checkpoints a many-checkpoint file holds; None for any other file
    (or one that cannot be read: opening it then says why)."""
    if not guards.is_regular_file(path):  # discovery must never block on a FIFO
        return None
    try:
        value, _ = _load(path, trust_pickle=False)
    except Exception:  # whatever a hostile file raises, opening it later reports it
        return None
    layout = find_multi(value)
    return None if layout is None else len(layout.entries)


def read_pickle(path: Path, *, trust_pickle: bool = False, entry: int | None = None) -> PickleContent:
    """See the module docstring. Raises CheckpointError (TrainingStateFile for training state)."""
    value, suspicious = _load(path, trust_pickle)
    notes = []
    if suspicious:
        notes.append(f"the pickle refers to {', '.join(sorted(suspicious))}; nothing of it was run (read as inert data)")
    layout = find_multi(value)
    if layout is not None:
        if entry is None:
            entry = len(layout.entries) - 1
            notes.append(f"holds {len(layout.entries)} checkpoints under '{layout.key}'; opened on its own, the last is read")
        if not 0 <= entry < len(layout.entries):
            raise CheckpointError(f"{path.name} holds {len(layout.entries)} checkpoints, not an entry {entry}")
        step = (int(layout.steps[entry]), layout.step_source)
        entry_state = find_state_dict(resolve(layout.entries[entry])) or {}
        metrics = metric_points(value) if entry == 0 else ()
        return PickleContent(dict(tensor_leaves(entry_state)), step, metrics, tuple(notes))
    if entry is not None:
        raise CheckpointError(f"{path.name} no longer holds many checkpoints")
    role = content_role(as_mapping(value) if not isinstance(value, Opaque) else None, getattr(value, "qualname", None))
    if role is not None:
        raise TrainingStateFile(path, *role)
    state = find_state_dict(value)
    walk = Walk()
    tensors = dict(tensor_leaves(state, walk)) if state is not None else {}
    if walk.truncated:
        notes.append(f"nested deeper than {MAX_DEPTH} levels (or more than {MAX_NODES:,} objects): what lies beyond was not read")
    if not tensors:
        notes.append(f"no tensors found ({_what(value)})")
    metadata = as_mapping(value) or {}
    return PickleContent(tensors, step_from_metadata(metadata), metric_points(value), tuple(notes))


def _what(value: Any) -> str:
    """A short description of what a pickle holds, for a warning."""
    if isinstance(value, Opaque):
        return f"holds a {value.qualname} object"
    mapping = as_mapping(value)
    if mapping is not None:
        keys = [str(k) for k in list(mapping)[:8]]
        return f"holds a dict with keys {', '.join(keys)}{' ...' if len(mapping) > 8 else ''}" if keys else "holds an empty dict"
    return f"holds a {type(value).__name__}"
