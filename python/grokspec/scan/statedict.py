"""Finding the model's tensors inside whatever a checkpoint pickle holds.

The state dict is found at the top level or under ``state_dict``,
``model_state_dict``, ``model`` or ``module`` (SPEC §5); training state kept
beside it (optimizer, scheduler, RNG, Lightning's loops and callbacks — by
its key, or by its content under any other key: a GAN's ``optimizer_G``) is
never read as weights. A whole pickled ``nn.Module`` — read as an opaque
object, so none of its code is needed — yields its parameters and buffers
under their usual dotted names. Walks are bounded in depth and in the
number of objects visited, and visit a shared object once, so a pickle that
nests deeply or refers to one object many times costs no more than its size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from grokspec.scan.dcp import ChunkedTensor
from grokspec.scan.roles import content_role, is_training_state_key
from grokspec.scan.safe_pickle import NumpyArray, Opaque, opaque_fields, resolve
from grokspec.scan.torch_pickle import TensorRef

__all__ = ["MAX_DEPTH", "MAX_NODES", "NESTED_KEYS", "Walk", "as_mapping", "find_state_dict", "is_tensor", "tensor_leaves"]

#: Where a state dict may sit inside a pickled checkpoint, in search order
#: (Composer keeps everything under ``state``, the model under ``state.model``;
#: ultralytics' training checkpoints hold the model as ``ema``, with ``model`` None).
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "state", "ema")
#: How deep a walk goes, and how many objects it visits at most.
MAX_DEPTH = 48
MAX_NODES = 2_000_000


def is_tensor(value: Any) -> bool:
    """A tensor of any reader: TensorRef (safe reader), ChunkedTensor (DCP), numpy array, torch tensor (trusted reader)."""
    value = resolve(value)
    return isinstance(value, (TensorRef, ChunkedTensor, np.ndarray)) or (hasattr(value, "detach") and hasattr(value, "shape"))


def as_mapping(value: Any) -> Mapping[Any, Any] | None:
    """A dict, or the named state of an opaque object (a dict subclass, a
    Namespace, a module ...), as a mapping; None for anything else."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, Opaque):
        return opaque_fields(value)
    return None


def _has_tensors(mapping: Mapping[Any, Any]) -> bool:
    return any(is_tensor(v) for v in mapping.values())


def _module_fields(value: Any) -> Mapping[str, Any] | None:
    """The __dict__ of a pickled nn.Module (it has _parameters and _modules)."""
    fields = opaque_fields(value) if isinstance(value, Opaque) else getattr(value, "__dict__", None)
    if isinstance(fields, Mapping) and "_parameters" in fields and "_modules" in fields:
        return fields
    return None


def find_state_dict(value: Any, depth: int = 0) -> Mapping[Any, Any] | None:
    """The mapping that holds the model's tensors, or None."""
    if depth > 4:
        return None
    if _module_fields(value) is not None:
        return dict(_module_leaves(value, "", 0, set()))
    if hasattr(value, "state_dict") and callable(value.state_dict) and not isinstance(value, (Mapping, Opaque)):
        return dict(value.state_dict())  # a real module from a trusted load
    mapping = as_mapping(value)
    if mapping is None:
        return None
    for key in NESTED_KEYS:
        inner = mapping.get(key)
        if inner is None:
            continue
        found = find_state_dict(inner, depth + 1)
        if found:
            return found
    if "hyper_parameters" in mapping and "state_dict" in mapping:
        return None
    return mapping


class Walk:
    """The bounds of one walk, and whether it reached them (tensors beyond are not read)."""

    def __init__(self) -> None:
        self.budget = MAX_NODES
        self.truncated = False


def tensor_leaves(mapping: Mapping[Any, Any], walk: Walk | None = None) -> Iterator[tuple[str, Any]]:
    """(dotted name, tensor) pairs; nested dicts are flattened, training-state
    subtrees skipped, and each object visited once."""
    yield from _leaves(mapping, "", 0, set(), walk or Walk())


def _leaves(value: Any, prefix: str, depth: int, seen: set[int], walk: Walk) -> Iterator[tuple[str, Any]]:
    walk.budget -= 1
    if walk.budget < 0 or depth > MAX_DEPTH:
        walk.truncated = True
        return
    value = resolve(value)
    if is_tensor(value):
        yield prefix, value
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    if _module_fields(value) is not None:
        yield from _module_leaves(value, prefix, depth, seen)
        return
    mapping = as_mapping(value)
    if mapping is None or (depth > 0 and content_role(mapping) is not None):
        return  # training state under a key of the user's choosing: a GAN's optimizer_G, scheduler_D
    for key, item in mapping.items():
        name = str(key)
        if is_training_state_key(name) or (isinstance(item, NumpyArray) and item.value is None):
            continue
        yield from _leaves(item, f"{prefix}.{name}" if prefix else name, depth + 1, seen, walk)


def _module_leaves(module: Any, prefix: str, depth: int, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """nn.Module naming: parameters and buffers, then submodules, dotted."""
    fields = _module_fields(module)
    if fields is None or depth > MAX_DEPTH:
        return
    for group in ("_parameters", "_buffers"):
        entries = as_mapping(fields.get(group)) or {}
        for name, tensor in entries.items():
            if is_tensor(tensor):
                yield (f"{prefix}.{name}" if prefix else str(name)), resolve(tensor)
    for name, child in (as_mapping(fields.get("_modules")) or {}).items():
        if id(child) not in seen:
            seen.add(id(child))
            yield from _module_leaves(child, f"{prefix}.{name}" if prefix else str(name), depth + 1, seen)
