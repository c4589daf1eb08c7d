"""The training configuration: one frozen record, validated on creation,
written to ``RUN_DIR/config.json`` and read back for resuming and scanning.

The defaults are the demo run: the paper authors' companion setup on
(a + b) mod 97 with train fraction 0.5 and batch 512, which groks on two CPU
cores in about a minute.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from grokspec.events import GROK_LEVEL, REPRESENTATION_THRESHOLD
from grokspec.lab.budget import size_problems
from grokspec.lab.tasks import TASKS, is_prime

__all__ = ["TrainConfig", "ConfigMismatch", "CONFIG_FORMAT", "RESUMABLE_FIELDS", "ACTIVATION_NAMES"]

#: Activations a model may use (grokspec.lab.models implements each).
ACTIVATION_NAMES = ("gelu", "relu", "silu", "tanh")

CONFIG_FORMAT = "grokspec-config/1"

#: Fields that may change when a run is continued (the budget, the stopping
#: rules, where it runs, how often it reports); everything else defines the run.
RESUMABLE_FIELDS = frozenset(
    {"steps", "stop_after_crossing", "stop_after_grok", "stop_after_alarm", "alarm_rule", "log_weight_entropies", "device"}
)

#: How a run may shuffle its labels (negative controls; docs/ALARMS.md).
SHUFFLE_LABELS = ("none", "train", "test")

#: Devices a config may name (torch checks that the device exists when training starts).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")
#: Integers in a config stay far from any overflow (steps, seeds, widths).
INT_LIMIT = 2**62
#: config.json is a few hundred bytes; a larger file is not one.
CONFIG_SIZE_LIMIT = 2**20


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: Field type (as annotated) -> (check, what a value must be).
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "float": (_is_number, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "tuple[int, ...]": (lambda v: isinstance(v, tuple) and all(_is_int(w) for w in v), "a list of integers"),
}


def _type_problems(config: Any) -> list[str]:
    """Fields whose value has the wrong type (a hand-edited or hostile
    config.json); the value checks assume the right types."""
    out = []
    for f in fields(config):
        kind = str(f.type)
        optional = kind.endswith(" | None")
        value = getattr(config, f.name)
        if value is None and optional:
            continue
        check, what = _KINDS.get(kind.removesuffix(" | None"), (lambda v: True, ""))
        if not check(value):
            out.append(f"{f.name} must be {what}{' or null' if optional else ''}, got {repr(value)[:60]}")
        elif _is_int(value) and abs(value) > INT_LIMIT:
            out.append(f"{f.name} is out of range, got {repr(value)[:60]}")
    return out


def read_config_json(path: Path) -> dict[str, Any]:
    """config.json as a JSON object; ValueError naming the file otherwise."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode) or status.st_size > CONFIG_SIZE_LIMIT:
            raise ValueError("not a regular file of at most 1 MB")
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, RecursionError) as error:  # JSON and UTF-8 errors are ValueErrors
        raise ValueError(f"{path} is not a grokspec config: {str(error)[:120]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a grokspec config: a JSON {type(data).__name__}, not an object")
    if data.get("format") != CONFIG_FORMAT:
        raise ValueError(f"{path} is not a grokspec config (format {data.get('format')!r})")
    return data


class ConfigMismatch(ValueError):
    """A run directory holds a run with a different configuration."""


def _help(text: str, default: Any, **extra: Any) -> Any:
    return field(default=default, metadata={"help": text, **extra})


@dataclass(frozen=True)
class TrainConfig:
    # --- the task
    task: str = _help("(a∘b) mod p for add, sub, mul, div; or s5 (permutation composition)", "add")
    p: int = _help("the modulus (prime for div; ignored by s5)", 97)
    train_fraction: float = _help("fraction of all pairs used for training", 0.5)
    seed: int = _help("seed of the split, the initialization and the batches", 0)
    # --- the model
    model: str = _help("transformer or mlp (the control)", "transformer")
    d_model: int = _help("width of the representation z (and of the transformer)", 128)
    n_heads: int = _help("attention heads (transformer)", 4)
    d_ff: int = _help("feed-forward width (transformer)", 512)
    n_layers: int = _help("encoder layers (transformer)", 1)
    mlp_hidden: tuple[int, ...] = _help("hidden widths before z (mlp), e.g. 512 or 512,256", (512,))
    activation: str = _help("gelu, relu, silu, tanh; empty = gelu (transformer) / relu (mlp)", "")
    # --- optimization
    lr: float = _help("AdamW learning rate", 1e-3)
    weight_decay: float = _help("AdamW weight decay", 1.0)
    beta1: float = _help("AdamW beta1", 0.9)
    beta2: float = _help("AdamW beta2 (torch's default; the paper's companion code names no betas)", 0.999)
    batch_size: int = _help("examples per step, resampled each step; 0 = full batch", 512)
    warmup_steps: int = _help("linear learning-rate warm-up steps", 0)
    steps: int = _help("training budget in steps", 3000)
    # --- measurement
    eval_every: int = _help("steps between evaluations (metrics.jsonl)", 100)
    checkpoint_every: int = _help("steps between checkpoints", 500)
    probe_size: int = _help("probe inputs for the representation entropy (first of the train split)", 512)
    threshold: float = _help("early-warning threshold on the representation entropy", REPRESENTATION_THRESHOLD)
    grok_level: float = _help("test accuracy that counts as grokked", GROK_LEVEL)
    stop_after_crossing: int | None = _help("stop this many steps after the entropy falls below the threshold", None)
    stop_after_grok: int | None = _help("stop this many steps after test accuracy reaches grok_level", None)
    alarm_rule: str = _help("early-warning rule: plateau-fall, threshold or collapse (docs/ALARMS.md)", "plateau-fall")
    stop_after_alarm: int | None = _help("stop this many steps after the early-warning alarm", None)
    log_weight_entropies: bool = _help("also log each weight matrix's spectral entropy at every evaluation", False)
    shuffle_labels: str = _help("none; train (permuted training labels: a negative control); test", "none")
    # --- the intervention (representation mixing)
    mixing_start: int | None = _help("first step of representation mixing (None = no intervention)", None)
    mixing_end: int | None = _help("step at which mixing ends (exclusive)", None)
    mixing_fraction: float = _help(
        "fraction of each batch whose z is replaced by another example's (1.0 makes z useless and collapses it)", 0.5
    )
    norm_reference: str | None = _help("run dir whose param-norm trajectory mixing runs are rescaled to", None)
    # --- where it runs
    device: str = _help("auto (cuda, else mps, else cpu), cpu, cuda, cuda:1, mps", "auto")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        out: list[str] = _type_problems(self)
        if out:
            return out
        if self.task not in TASKS:
            out.append(f"unknown task {self.task!r} (choose from {', '.join(TASKS)})")
        if self.task != "s5" and self.p < 2:
            out.append(f"p must be an integer >= 2, got {self.p!r}")
        elif self.task != "s5" and not out:
            sizes = size_problems(self)
            out.extend(sizes)  # before the primality test, which an absurd p would make endless
            if not sizes and self.task == "div" and not is_prime(self.p):
                out.append(f"division mod p needs a prime p, and {self.p} is not prime")
        if self.seed < 0:
            out.append(f"seed must be >= 0, got {self.seed}")
        if not DEVICE_PATTERN.match(self.device):
            out.append(f"unknown device {self.device!r} (auto, cpu, cuda, cuda:N, mps)")
        if not 0.0 < self.train_fraction < 1.0:
            out.append(f"train_fraction must lie strictly between 0 and 1, got {self.train_fraction}")
        if self.model not in ("transformer", "mlp"):
            out.append(f"unknown model {self.model!r} (transformer or mlp)")
        if self.activation and self.activation not in ACTIVATION_NAMES:
            out.append(f"unknown activation {self.activation!r} (choose from {', '.join(ACTIVATION_NAMES)})")
        for name in ("d_model", "n_heads", "d_ff", "n_layers", "steps", "eval_every", "checkpoint_every", "probe_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                out.append(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.d_model, int) and isinstance(self.n_heads, int) and self.n_heads > 0 and self.d_model % self.n_heads:
            out.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not self.mlp_hidden or any(not isinstance(w, int) or w < 1 for w in self.mlp_hidden):
            out.append(f"mlp_hidden must be positive widths, got {self.mlp_hidden!r}")
        if not self.lr > 0:
            out.append(f"lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            out.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            out.append(f"betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        for name in ("batch_size", "warmup_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                out.append(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not 0 < self.grok_level <= 1:
            out.append(f"grok_level must lie in (0, 1], got {self.grok_level}")
        if self.alarm_rule not in ("plateau-fall", "threshold", "collapse"):
            out.append(f"unknown alarm_rule {self.alarm_rule!r} (plateau-fall, threshold or collapse)")
        if self.shuffle_labels not in SHUFFLE_LABELS:
            out.append(f"unknown shuffle_labels {self.shuffle_labels!r} (choose from {', '.join(SHUFFLE_LABELS)})")
        for name in ("stop_after_crossing", "stop_after_grok", "stop_after_alarm"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                out.append(f"{name} must be a non-negative integer or None, got {value!r}")
        if (self.mixing_start is None) != (self.mixing_end is None):
            out.append("mixing needs both mixing_start and mixing_end")
        elif self.mixing_start is not None and self.mixing_end is not None and not 0 <= self.mixing_start < self.mixing_end:
            out.append(f"the mixing window [{self.mixing_start}, {self.mixing_end}) is empty or negative")
        if not 0 < self.mixing_fraction <= 1:
            out.append(f"mixing_fraction must lie in (0, 1], got {self.mixing_fraction}")
        if self.norm_reference is not None and self.mixing_start is None:
            out.append("norm_reference only applies to a mixing run (set mixing_start and mixing_end)")
        return out

    # --- derived values
    @property
    def resolved_activation(self) -> str:
        return self.activation or ("gelu" if self.model == "transformer" else "relu")

    @property
    def has_intervention(self) -> bool:
        return self.mixing_start is not None

    def mixing_active(self, step: int) -> bool:
        """Whether the update that follows evaluation step `step` is mixed."""
        return self.mixing_start is not None and self.mixing_end is not None and self.mixing_start <= step < self.mixing_end

    def with_seed(self, seed: int) -> TrainConfig:
        return dataclasses.replace(self, seed=seed)

    # --- serialization
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mlp_hidden"] = list(self.mlp_hidden)
        return data

    def to_json(self) -> str:
        return json.dumps({"format": CONFIG_FORMAT, **self.to_dict()}, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("mlp_hidden"), list):  # anything else is reported by the type check
            values["mlp_hidden"] = tuple(values["mlp_hidden"])
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """ValueError with one line naming the file for anything unusable."""
        try:
            return cls.from_dict(read_config_json(Path(path)))
        except ValueError as error:
            message = str(error)
            raise ValueError(message if str(path) in message else f"{path}: {message}") from None

    def identity_differences(self, other: TrainConfig) -> list[str]:
        """The fields (outside RESUMABLE_FIELDS) in which two configs differ."""
        return [
            f"{f.name}: {getattr(other, f.name)!r} vs {getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in RESUMABLE_FIELDS and getattr(self, f.name) != getattr(other, f.name)
        ]
