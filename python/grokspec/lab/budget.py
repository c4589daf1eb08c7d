"""How big a training run is, computed before anything is allocated.

A grokking task holds every pair (a, b) as an example, on the device, once
per seed; the model's parameters cost 16 bytes each while training
(float32 weights, gradients and AdamW's two moments). Both are estimated
from the configuration alone (no torch) and refused above documented
budgets, with the estimate in the message, rather than discovered as an
out-of-memory kill minutes later:

- :data:`MAX_EXAMPLES` examples per task: 2**24, i.e. p <= 4096 for
  (a ∘ b) mod p (the paper's p is 97);
- :data:`MAX_PARAMETERS` parameters, all seeds together: 2**28 (about
  4.3 GB of training state).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "BYTES_PER_PARAMETER",
    "MAX_EXAMPLES",
    "MAX_PARAMETERS",
    "Sized",
    "example_count",
    "parameter_count",
    "size_problems",
    "vocab_size",
]

MAX_EXAMPLES = 2**24
MAX_PARAMETERS = 2**28
#: float32 weights, gradients and AdamW's exp_avg and exp_avg_sq.
BYTES_PER_PARAMETER = 16
_S5_ELEMENTS = 120


class Sized(Protocol):
    """What the estimates read of a TrainConfig (no import: config uses this module)."""

    @property
    def task(self) -> str: ...
    @property
    def p(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def d_model(self) -> int: ...
    @property
    def d_ff(self) -> int: ...
    @property
    def n_layers(self) -> int: ...
    @property
    def mlp_hidden(self) -> Sequence[int]: ...


def vocab_size(task: str, p: int) -> int:
    """Tokens (= classes) of a task: p residues, or the 120 permutations of S5."""
    return _S5_ELEMENTS if task == "s5" else p


def example_count(task: str, p: int) -> int:
    """Every pair of operands: p², p(p−1) for division (no zero divisor), 120² for S5."""
    if task == "s5":
        return _S5_ELEMENTS**2
    return p * (p - 1) if task == "div" else p * p


def parameter_count(config: Sized) -> int:
    """Parameters of one seed's model, exactly as grokspec.lab.models builds it."""
    vocab, d = vocab_size(config.task, config.p), config.d_model
    readout = vocab * d + vocab
    final_norm = 2 * d
    if config.model == "transformer":
        attention = 3 * d * d + 3 * d + d * d + d
        feed_forward = config.d_ff * d + config.d_ff + d * config.d_ff + d
        layer = attention + feed_forward + 4 * d
        return vocab * d + 2 * d + config.n_layers * layer + final_norm + readout
    widths = [2 * d, *config.mlp_hidden, d]
    hidden = sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(widths))
    return vocab * d + hidden + final_norm + readout


def _size(count: int) -> str:
    if count >= 2**50:
        return "more than a petabyte"
    unit = next((u, b) for u, b in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 1)) if count >= b or u == "kB")
    return f"about {count / unit[1]:.1f} {unit[0]}"


def size_problems(config: Sized, seeds: int = 1) -> list[str]:
    """Why a run of `seeds` seeds is too big for its budgets (empty: it fits)."""
    out = []
    examples = example_count(config.task, config.p)
    if examples > MAX_EXAMPLES:
        out.append(
            f"p={config.p} gives {examples:,} examples (every pair), above the budget of {MAX_EXAMPLES:,} "
            f"(p <= 4096); the table alone would take {_size(examples * 24)}"
        )
        return out  # the model's size depends on p too, and the first reason is enough
    parameters = parameter_count(config) * seeds
    if parameters > MAX_PARAMETERS:
        per_seed = "" if seeds == 1 else f" ({seeds} seeds)"
        out.append(
            f"the model has {parameters:,} parameters{per_seed}, above the budget of {MAX_PARAMETERS:,}; "
            f"training would need {_size(parameters * BYTES_PER_PARAMETER)}"
        )
    return out
