"""The probe: a fixed set of inputs that the monitor runs through the model
at every evaluation (SPEC §1: by default the first 512 training examples).

Accepted forms: a tensor (``model(x)``); a dict of tensors, or of lists as a
Hugging Face ``dataset[:512]`` slice gives (``model(**batch)``); a
DataLoader (every batch it yields, read once, so a shuffling loader still
gives a fixed probe); a dataset slice (a torch ``Dataset``/``Subset`` or a
list of examples, collated once). From a batch that is a tuple ``(x, y)``
only ``x`` is kept, and label keys are dropped from dict batches: the probe
pass needs no loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from grokspec.monitor.errors import MonitorError

__all__ = ["LABEL_KEYS", "Batch", "Probe"]

#: One model input: a tensor, or keyword arguments.
Batch = torch.Tensor | dict[str, Any]
#: Keys of a dict batch that hold targets, not inputs.
LABEL_KEYS = frozenset({"labels", "label", "label_ids", "targets"})


def _as_input(batch: Any, where: str) -> Batch:
    """The model input in one collated batch."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0 or batch.shape[0] == 0:
            raise MonitorError(f"{where}: expected a batch of probe inputs, got a tensor of shape {tuple(batch.shape)}")
        return batch
    if isinstance(batch, Mapping):
        inputs = {str(k): v for k, v in batch.items() if k not in LABEL_KEYS}
        inputs = {k: torch.as_tensor(v) if isinstance(v, list) else v for k, v in inputs.items()}
        if not any(isinstance(v, torch.Tensor) for v in inputs.values()):
            raise MonitorError(f"{where}: a dict probe needs tensors (or lists) of inputs; it has keys {sorted(map(str, batch))}")
        return inputs
    if isinstance(batch, (tuple, list)) and batch:
        return _as_input(batch[0], where)  # (inputs, targets)
    raise MonitorError(f"{where}: cannot use a batch of type {type(batch).__name__} as model input")


def _read(probe: object) -> list[Batch]:
    if isinstance(probe, (torch.Tensor, Mapping)):
        return [_as_input(probe, "the probe")]
    if isinstance(probe, DataLoader):
        batches = [_as_input(batch, f"probe batch {i}") for i, batch in enumerate(probe)]
        if not batches:
            raise MonitorError("the probe DataLoader yielded no batches")
        return batches
    if isinstance(probe, (Dataset, Sequence)) or (hasattr(probe, "__getitem__") and hasattr(probe, "__len__")):
        if isinstance(probe, (str, bytes)):
            raise MonitorError(f"the probe must be model inputs, got a {type(probe).__name__}")
        count = len(probe)
        if count == 0:
            raise MonitorError("the probe dataset is empty")
        examples = [probe[i] for i in range(count)]
        return [_as_input(default_collate(examples), "the probe dataset")]
    raise MonitorError(
        f"the probe must be a tensor, a dict of tensors, a DataLoader or a dataset slice; got {type(probe).__name__}"
    )


def _first_tensor(batch: Batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    return next(v for v in batch.values() if isinstance(v, torch.Tensor))


def _moved(value: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if dtype is not None and value.is_floating_point() and value.dtype != dtype:
        return value.to(device=device, dtype=dtype)
    return value.to(device)


class Probe:
    """The probe's batches, read once, kept as given and moved (with a cache)
    to the device of the model at each evaluation."""

    def __init__(self, probe: object):
        self.batches = _read(probe)
        self._placed: tuple[torch.device, torch.dtype | None, list[Batch]] | None = None

    def __len__(self) -> int:
        return sum(int(_first_tensor(batch).shape[0]) for batch in self.batches)

    def on(self, device: torch.device, dtype: torch.dtype | None = None) -> list[Batch]:
        """The batches on `device`; floating-point inputs in the model's
        floating dtype `dtype` (a half-precision model gets half inputs)."""
        if self._placed is None or self._placed[:2] != (device, dtype):
            placed: list[Batch] = [
                _moved(b, device, dtype) if isinstance(b, torch.Tensor) else {k: _moved(v, device, dtype) for k, v in b.items()}
                for b in self.batches
            ]
            self._placed = (device, dtype, placed)
        return self._placed[2]
