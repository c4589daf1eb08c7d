"""Which files of a checkpoint are model weights and which are training state.

Training libraries save much more than weights next to each checkpoint:
optimizer and scheduler state, RNG state, their own arguments. Those are
never scanned as weights and never counted as failures; the report lists
each as a :class:`SkippedFile` with the reason. A file is told apart first
by its name (the names the libraries write, below), then — once opened — by
its content (:func:`content_role`), for files saved under other names.

Names (transformers ``Trainer._save_checkpoint``, accelerate ``save_state``,
DeepSpeed ``save_checkpoint``, grokspec's own ``resume.pt``):
``optimizer.pt``, ``scheduler.pt``, ``scaler.pt``, ``rng_state.pth``,
``rng_state_{rank}.pth``, ``training_args.bin``; ``optimizer.bin``,
``optimizer_{i}.bin``, ``scheduler.bin``, ``scheduler_{i}.bin``,
``sampler.bin``, ``dl_state_dict.bin``, ``random_states_{i}.pkl``,
``custom_checkpoint_{i}.pkl``; ``*optim_states.pt``, ``zero_pp_rank_*``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TRAINING_STATE_KEYS", "SkippedFile", "content_role", "folder_role", "is_training_state_key", "name_role"]


@dataclass(frozen=True)
class SkippedFile:
    """A file that was found and deliberately not scanned."""

    #: Relative to the scanned directory.
    path: str
    #: optimizer, scheduler, rng_state, training_args, grad_scaler, dataloader,
    #: custom_state, deepspeed_partition, resume_state, duplicate, alias (a best/last copy
    #: without a step of its own) or foreign
    #: (another library's weights under a torch-like name: OpenVINO's, GGML's ``.bin``).
    role: str
    reason: str


_NAMES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), role, reason)
    for pattern, role, reason in (
        (r"^optimizer(_\d+)?\.(pt|pth|bin)$", "optimizer", "optimizer state"),
        (r"optim_states\.pt$", "optimizer", "DeepSpeed optimizer state shard"),
        (r"^(bf16_)?zero_pp_rank_\d+", "deepspeed_partition", "DeepSpeed ZeRO partition (consolidate it with zero_to_fp32.py)"),
        (r"^(lr_)?scheduler(_\d+)?\.(pt|pth|bin)$", "scheduler", "learning-rate scheduler state"),
        (r"^scaler(_\d+)?\.(pt|pth|bin)$", "grad_scaler", "mixed-precision gradient scaler state"),
        (r"^rng_state(_\d+)?\.(pth|pt)$", "rng_state", "random number generator state"),
        (r"^random_states_\d+\.pkl$", "rng_state", "random number generator state (accelerate)"),
        (r"^training_args\.bin$", "training_args", "the Trainer's TrainingArguments"),
        (r"^(sampler|dl_state_dict)(_\d+)?\.bin$", "dataloader", "data loader / sampler state (accelerate)"),
        (r"^custom_checkpoint_\d+\.pkl$", "custom_state", "custom object registered with accelerate"),
        (r"^resume\.pt$", "resume_state", "grokspec's optimizer and RNG state for resuming"),
        (r"^recipe_state\.pt$", "resume_state", "torchtune's optimizer state and epoch count for resuming"),
    )
)

#: Keys under which checkpoints keep training state next to the weights;
#: their subtrees are never read as weights.
TRAINING_STATE_KEYS = frozenset(
    {
        "optimizer", "optimizer_state", "optimizer_states", "optimizer_state_dict", "optim", "opt", "optimizers",
        "scheduler", "lr_scheduler", "lr_schedulers", "scheduler_state_dict", "schedulers", "scaler", "grad_scaler",
        "rng", "rng_state", "rng_states", "random_states", "loops", "callbacks", "sampler",
    }
)  # fmt: skip


#: Numbered training-state keys: Lightning's sharded checkpoints keep ``optimizer_0``, ``optimizer_1``, ...
_NUMBERED_STATE_KEY = re.compile(r"^(optimizer|optim|scheduler|lr_scheduler)_\d+$")
#: torch.distributed checkpoint folders of optimizer state (accelerate's ``optimizer_0/``).
_STATE_FOLDER = re.compile(r"^(optimizer|optim)(_\d+)?$")


def is_training_state_key(name: str) -> bool:
    """A key under which a checkpoint keeps training state beside the weights."""
    return name in TRAINING_STATE_KEYS or bool(_NUMBERED_STATE_KEY.match(name))


def folder_role(name: str) -> tuple[str, str] | None:
    """(role, reason) of a checkpoint folder of training state (a DCP folder named optimizer_0, ...)."""
    if _STATE_FOLDER.match(name):
        return "optimizer", "optimizer state (a torch.distributed checkpoint folder)"
    return None


def name_role(name: str) -> tuple[str, str] | None:
    """(role, reason) when the file name is one that libraries use for training state."""
    for pattern, role, reason in _NAMES:
        if pattern.search(name):
            return role, reason
    return None


def content_role(value: Any, qualname: str | None = None) -> tuple[str, str] | None:
    """(role, reason) when an opened pickle holds training state rather than
    weights; `qualname` is the class of an opaque object at its top."""
    if qualname is not None and qualname.rsplit(".", 1)[-1] in ("TrainingArguments", "Seq2SeqTrainingArguments"):
        return "training_args", "the Trainer's TrainingArguments"
    if not isinstance(value, Mapping):
        return None
    keys = {k for k in value if isinstance(k, str)}
    if {"state", "param_groups"} <= keys:
        return "optimizer", "optimizer state (holds 'state' and 'param_groups')"
    if {"optimizer_state_dict", "ds_config"} <= keys or "base_optimizer_state" in keys:
        return "optimizer", "DeepSpeed optimizer state"
    if {"base_lrs", "last_epoch"} <= keys:
        return "scheduler", "learning-rate scheduler state"
    if {"scale", "growth_factor", "backoff_factor"} <= keys:
        return "grad_scaler", "mixed-precision gradient scaler state"
    if {"python", "numpy"} <= keys and keys <= {
        "python",
        "numpy",
        "cpu",
        "cuda",
        "mps",
        "xla",
        "npu",
        "hpu",
        "xpu",
        "mlu",
        "musa",
    }:
        return "rng_state", "random number generator state"
    if {"random_state", "numpy_random_seed", "torch_manual_seed"} & keys and not keys & {"state_dict", "model"}:
        return "rng_state", "random number generator state (accelerate)"
    return None
