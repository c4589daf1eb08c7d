"""One group of opened checkpoints -> their rows, in one engine batch.

Every selected matrix of a group (up to :data:`GROUP_CHECKPOINTS`
checkpoints, :data:`GROUP_BYTES` of tensors) goes to the engine's parallel
batch at once, so small checkpoints share it; a checkpoint read into memory
that is larger goes in batches of :data:`GROUP_BYTES`, never held whole. A
tensor that cannot be turned into a matrix (a sparse or meta tensor, bytes
that went missing) is a warning about that tensor; a failure of the whole batch raises, and the
scan then retries the group's checkpoints one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from grokspec.scan.discovery import CheckpointRef
from grokspec.scan.dispatch import weight_metrics
from grokspec.scan.executors import compute_sources
from grokspec.scan.failures import describe_failure
from grokspec.scan.float8 import scale_names
from grokspec.scan.formats import Checkpoint, Source, matrix_shape
from grokspec.scan.guards import display_name
from grokspec.scan.logs import finite_or_none
from grokspec.scan.options import ScanOptions
from grokspec.scan.representation import RepresentationProbe
from grokspec.scan.trajectories import REPRESENTATION_METRIC
from grokspec.scan.working_memory import check_working_memory

__all__ = ["GROUP_BYTES", "GROUP_CHECKPOINTS", "WEIGHT_METRICS", "Pending", "compute_group", "selected_matrices"]

#: The per-matrix statistics a scan records (SPEC §1).
WEIGHT_METRICS = ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank", "numerical_rank")
#: Uncached checkpoints are computed together in groups of at most this
#: many, holding at most this many bytes of selected tensors: small
#: checkpoints then share the engine's parallel batch, and memory stays bounded.
GROUP_CHECKPOINTS = 32
GROUP_BYTES = 256 * 2**20

#: (name, rows, cols, dtype) of a tensor chosen for the scan.
Selected = tuple[str, int, int, str]


@dataclass
class Pending:
    """An opened checkpoint waiting for its group to be computed."""

    position: int
    ref: CheckpointRef
    key: str
    #: (device, inode, size, mtime) of each file when it was opened.
    identity: tuple[tuple[int, int, int, int], ...]
    checkpoint: Checkpoint
    selected: list[Selected]

    @property
    def bytes(self) -> int:
        return sum(r * c * 4 for _, r, c, _ in self.selected)


def selected_matrices(checkpoint: Checkpoint, options: ScanOptions) -> list[Selected]:
    """The float tensors of at least 2 dimensions that the options keep."""
    chosen = []
    tensors = checkpoint.tensors()
    scales = scale_names({info.name: info.dtype for info in tensors})  # parts of FP8 weights, not matrices
    for info in tensors:
        if not info.is_float or info.name in scales:
            continue
        shape = matrix_shape(info.shape)
        if shape is None or min(shape) < options.min_dim:
            continue
        if not options.keeps_tensor(info.name):
            continue
        chosen.append((info.name, shape[0], shape[1], info.dtype))
    return chosen


#: Integer dtypes as the formats name them (torch/numpy, safetensors lower-cased).
_INTEGER_DTYPES = frozenset(f"{prefix}{bits}" for bits in (8, 16, 32, 64) for prefix in ("int", "uint", "i", "u"))


def _bnb_4bit(name: str, names: set[str]) -> bool:
    """bitsandbytes' 4-bit weights are packed as an (n, 1) byte column beside their quant state."""
    return any(f"{name}.quant_state.bitsandbytes__{kind}" in names for kind in ("nf4", "fp4"))


def integer_matrices_note(checkpoint: Checkpoint, options: ScanOptions) -> str | None:
    """Names the integer matrices a scan leaves out — quantized weights (GPTQ/AWQ
    ``qweight``, bitsandbytes int8) are stored so, and a scan that covered only a
    model's float tensors must say so — or None."""
    tensors = checkpoint.tensors()
    names = {info.name for info in tensors}
    skipped = [
        display_name(info.name)
        for info in tensors
        if info.dtype in _INTEGER_DTYPES
        and options.keeps_tensor(info.name)
        and (_bnb_4bit(info.name, names) or ((shape := matrix_shape(info.shape)) is not None and min(shape) >= options.min_dim))
    ]
    if not skipped:
        return None
    shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    count = f"{len(skipped)} integer matri{'x' if len(skipped) == 1 else 'ces'}"
    return f"{count} not analysed (quantized weights? grokspec reads float weights): {shown}"


#: A tensor's statistics (metric -> value) or why the engine could not compute it.
Outcome = dict[str, Any] | BaseException


def _compute_all(group: list[Pending], options: ScanOptions) -> tuple[list[list[tuple[Selected, Outcome]]], list[list[str]]]:
    """Every selected tensor's outcome and each checkpoint's warnings. Tensors
    become engine inputs one at a time (one that cannot become a matrix costs
    only itself) and go to the engine in batches holding at most
    :data:`GROUP_BYTES` of in-memory matrices (plus one), so a large checkpoint
    read into memory — a pickle, a DCP folder — is never held whole;
    memory-mapped safetensors sources cost nothing until the engine reads them."""
    outcomes: list[list[tuple[Selected, Outcome]]] = [[] for _ in group]
    warnings: list[list[str]] = [[] for _ in group]
    batch: list[tuple[int, Selected, Source]] = []
    held = 0

    def flush() -> None:
        nonlocal held
        if batch:  # the exact engine or --approx, here or on Ray (scan.dispatch)
            columns, errors = compute_sources([source for _, _, source in batch], options)
            failed = dict(errors)
            for i, (owner, selected, _) in enumerate(batch):
                outcomes[owner].append((selected, failed[i] if i in failed else {k: v[i] for k, v in columns.items()}))
        batch.clear()
        held = 0

    for owner, pending in enumerate(group):
        for selected in pending.selected:
            name, rows, cols, _ = selected
            try:
                check_working_memory(rows, cols, approx=options.approx)
                source = pending.checkpoint.sources([(name, rows, cols)])[0]
            except Exception as error:  # too large, sparse, meta, vanished bytes: a warning about this tensor
                warnings[owner].append(f"tensor {display_name(name)}: {describe_failure(error)}")
                continue
            batch.append((owner, selected, source))
            held += source.nbytes if isinstance(source, np.ndarray) else 0
            if held >= GROUP_BYTES:
                flush()
    flush()
    return outcomes, warnings


def compute_group(group: list[Pending], options: ScanOptions, representation: RepresentationProbe | None) -> list[dict[str, Any]]:
    """Each checkpoint's rows (without run and step), metadata step, warnings
    and kept metrics, as stored in the cache."""
    outcomes, source_warnings = _compute_all(group, options)
    out = []
    for pending, done, tensor_warnings in zip(group, outcomes, source_warnings):
        rows: list[dict[str, Any]] = []
        integer_note = integer_matrices_note(pending.checkpoint, options)
        notes = list(getattr(pending.checkpoint, "notes", ())) + ([integer_note] if integer_note else [])
        warnings: list[str] = notes + tensor_warnings
        if not pending.selected and not warnings:  # a checkpoint never vanishes without a word
            warnings.append("no weight matrix to scan (no floating-point tensor of 2 or more dimensions)")
        for (raw_name, r, c, dtype), outcome in done:
            name = display_name(raw_name)
            if isinstance(outcome, BaseException):
                warnings.append(f"tensor {name}: {_strip_index(describe_failure(outcome))}")
                continue
            for metric in weight_metrics(options):
                value = finite_or_none(float(outcome[metric]))
                rows.append({"tensor": name, "rows": r, "cols": c, "dtype": dtype, "metric": metric, "value": value})
        if representation is not None:
            try:
                value, (n, d) = representation.entropy(pending.checkpoint)
                rows.append(
                    {"tensor": "", "rows": n, "cols": d, "dtype": "float32", "metric": REPRESENTATION_METRIC, "value": value}
                )
            except Exception as error:  # weights that do not fit the rebuilt model
                warnings.append(f"representation entropy not computed: {describe_failure(error)}")
        metrics = [[m.metric, m.step, m.value] for m in getattr(pending.checkpoint, "metrics", ())]
        out.append({
            "metadata_step": pending.checkpoint.metadata_step, "rows": rows, "warnings": warnings,
            "matrices": len(pending.selected), "metrics": metrics,
        })  # fmt: skip
    return out


def _strip_index(message: str) -> str:
    """The engine names a failing matrix by its index in the batch; the
    scan names it by its tensor instead."""
    return re.sub(r"^matrix \d+ of \d+: ", "", message)
