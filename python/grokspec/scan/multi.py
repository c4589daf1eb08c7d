"""Files that hold a whole run: many state dicts, their steps, and loss curves.

The grokking community often saves a run as one pickle:

- Neel Nanda's ``full_run_data.pth``: ``state_dicts`` (a list) with
  ``epochs`` (the epoch of each), plus ``train_losses`` / ``test_losses``;
- the TransformerLens grokking demo: ``checkpoints`` with
  ``checkpoint_epochs``, the final ``model``, ``config`` (a
  ``HookedTransformerConfig``) and ``train_losses`` / ``test_losses``;
- progress-measures per-epoch files (``{epoch}.pth``: ``model``,
  ``train_loss``, ``test_loss``, ``epoch``), whose scalars are metrics of
  their own checkpoint, and ``final.pth`` with the full loss lists.

:func:`find_multi` recognises the first two shapes generally — any list of
state dicts, with a parallel list of integers whose key names epochs or
steps (else their order, flagged ``"order"``) — and :func:`metric_points`
turns loss and accuracy values into metric rows: a scalar belongs to its
checkpoint's step, a list is indexed by epoch (entry i was logged at epoch
i, as these training loops append one value per epoch). A new format is
added by naming its list key in :data:`LIST_KEYS` and its step key in
:data:`STEP_LIST_KEYS`, or its metrics by extending :data:`_METRIC`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grokspec.scan.roles import is_training_state_key
from grokspec.scan.safe_pickle import resolve
from grokspec.scan.statedict import as_mapping, find_state_dict, is_tensor
from grokspec.scan.torch_pickle import TensorRef

__all__ = ["LIST_KEYS", "STEP_LIST_KEYS", "MetricPoint", "MultiLayout", "find_multi", "metric_points"]

#: Keys of a list of state dicts, tried first (any list of state dicts is found).
LIST_KEYS = ("state_dicts", "checkpoints", "model_checkpoints", "checkpoint_state_dicts", "models")
#: Keys of the step (or epoch) of each entry, tried first (then any key naming epochs or steps).
STEP_LIST_KEYS = ("checkpoint_epochs", "epochs", "checkpoint_steps", "steps", "global_steps", "checkpoint_step")
_METRIC = re.compile(r"^(train|test|val|valid|validation|eval)_?(loss|acc|accuracy)$")
#: The longest loss list read (one value per epoch).
MAX_POINTS = 10_000_000


@dataclass(frozen=True)
class MetricPoint:
    metric: str
    #: None: the step of the checkpoint that holds it.
    step: int | None
    value: float


@dataclass(frozen=True)
class MultiLayout:
    """A file whose checkpoints are the entries of one of its lists."""

    key: str
    entries: tuple[Any, ...]
    steps: tuple[int, ...]
    #: "metadata:<key>" or "order".
    step_source: str


def _is_state_dict(value: Any) -> bool:
    """A model's state dict: it holds a matrix (a list of RNG states holds 1-D tensors only)."""
    found = find_state_dict(resolve(value))
    return found is not None and any(is_tensor(v) and len(getattr(resolve(v), "shape", ())) >= 2 for v in found.values())


def find_multi(value: Any) -> MultiLayout | None:
    """The list of state dicts in `value` and each one's step, if it holds one."""
    if isinstance(value, (list, tuple)) and len(value) > 1 and all(_is_state_dict(v) for v in value):
        return MultiLayout("", tuple(value), tuple(range(len(value))), "order")
    mapping = as_mapping(value)
    if mapping is None:
        return None
    # Training state (Megatron's per-rank `rng_state` list, say) is never a list of checkpoints.
    keys = [k for k in LIST_KEYS if k in mapping] + [
        k for k in mapping if isinstance(k, str) and k not in LIST_KEYS and not is_training_state_key(k)
    ]
    for key in keys:
        entries = mapping[key]
        if not isinstance(entries, (list, tuple)) or not entries or not all(_is_state_dict(v) for v in entries):
            continue
        steps_key = _steps_key(mapping, len(entries))
        if steps_key is None:
            return MultiLayout(key, tuple(entries), tuple(range(len(entries))), "order")
        return MultiLayout(key, tuple(entries), tuple(mapping[steps_key]), f"metadata:{steps_key}")
    return None


def _int_list(value: Any, length: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )


def _steps_key(mapping: Mapping[Any, Any], length: int) -> str | None:
    named = [k for k in STEP_LIST_KEYS if k in mapping]
    others = [k for k in mapping if isinstance(k, str) and ("epoch" in k.lower() or "step" in k.lower()) and k not in named]
    return next((k for k in named + others if _int_list(mapping[k], length)), None)


def _metric_name(key: str) -> str | None:
    name = key.lower()
    for plural, single in (("accuracies", "accuracy"), ("losses", "loss"), ("accs", "acc")):
        if name.endswith(plural):
            name = name[: -len(plural)] + single
            break
    match = _METRIC.match(name)
    return f"{match.group(1)}_{match.group(2)}" if match else None


def _number(value: Any) -> float | None:
    value = resolve(value)
    if isinstance(value, bool) or (not isinstance(value, (int, float, TensorRef)) and not _is_numpy_scalar(value)):
        return None
    if isinstance(value, TensorRef):
        if value.shape not in ((), (1,)) or value.dtype not in ("float16", "bfloat16", "float32", "float64"):
            return None
        value = value.array().reshape(-1)[0]
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _is_numpy_scalar(value: Any) -> bool:
    return (
        isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number)
    )


def metric_points(value: Any) -> tuple[MetricPoint, ...]:
    """Loss and accuracy values kept in a checkpoint (see the module docstring)."""
    mapping = as_mapping(value)
    if mapping is None:
        return ()
    points: list[MetricPoint] = []
    for key, item in mapping.items():
        name = _metric_name(key) if isinstance(key, str) else None
        if name is None:
            continue
        scalar = _number(item)
        if scalar is not None:
            points.append(MetricPoint(name, None, scalar))
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and 0 < len(item) <= MAX_POINTS:
            numbers = [_number(v) for v in item]
            points.extend(MetricPoint(name, i, v) for i, v in enumerate(numbers) if v is not None and not math.isnan(v))
    return tuple(points)
