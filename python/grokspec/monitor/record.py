"""What one monitoring pass produces (:class:`MonitorRecord`) and where the
integrations keep it on disk (:class:`MetricsJournal`, a grokspec-style
``metrics.jsonl`` that ``grokspec scan`` reads)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokspec.io_atomic import write_text

__all__ = ["LOG_PREFIX", "METRICS_FILE", "MetricsJournal", "MonitorRecord", "unwrap_scalar"]

#: Prefix of every value the integrations hand to a framework's loggers.
LOG_PREFIX = "grokspec/"
#: The journal's file name, as in a grokspec run dir (SPEC §4).
METRICS_FILE = "metrics.jsonl"


def unwrap_scalar(value: Any) -> Any:
    """A 0-d tensor or numpy scalar as its Python value; anything else as it is."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


@dataclass(frozen=True)
class MonitorRecord:
    """One evaluation of the monitor at training step ``step``."""

    step: int
    #: H̃ of the probe's representation (SPEC §1), NaN if it is undefined.
    repr_entropy: float
    #: Rows (probe vectors) and columns (width d) of the representation.
    n_probe: int
    width: int
    #: The warning on the series so far: the rule that raised it and its
    #: step (None while there is none). The whole series is re-read at every
    #: evaluation, as ``grokspec train`` does (with ``persist > 1`` a
    #: crossing is confirmed only by the evaluations after it).
    alarm_rule: str | None = None
    alarm_step: int | None = None
    #: True at the evaluation that raised the warning.
    alarm_raised: bool = False
    #: Spectral entropy (SPEC §1, power 2, normalize "dim") of each monitored weight matrix.
    weight_entropies: Mapping[str, float] = field(default_factory=dict)
    #: Wall time of this evaluation (forward pass and entropies), seconds.
    seconds: float = 0.0
    #: The train accuracy the caller gave with this evaluation (None: not given).
    train_acc: float | None = None

    @property
    def alarm(self) -> bool:
        return self.alarm_step is not None

    def log_values(self, prefix: str = LOG_PREFIX) -> dict[str, float]:
        """Flat float values for a framework's loggers (TensorBoard, W&B, CSV...)."""
        out = {f"{prefix}repr_entropy": self.repr_entropy, f"{prefix}alarm": float(self.alarm)}
        if self.alarm_step is not None:
            out[f"{prefix}alarm_step"] = float(self.alarm_step)
        out.update({f"{prefix}weight_entropy/{name}": value for name, value in self.weight_entropies.items()})
        return out

    def journal_values(self) -> dict[str, Any]:
        """The record as a metrics.jsonl object: ``step`` and ``repr_entropy``
        as in a grokspec run, the alarm and weight entropies nested (a scan
        reads numbers at the top level only; these are not checkpoint metrics)."""
        out: dict[str, Any] = {"step": self.step, "repr_entropy": self.repr_entropy}
        if self.train_acc is not None:
            out["train_acc"] = self.train_acc
        out["alarm"] = None if self.alarm_step is None else {"rule": self.alarm_rule, "step": self.alarm_step}
        if self.weight_entropies:
            out["weight_entropy"] = dict(self.weight_entropies)
        return out


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or Infinity: a missing measurement is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value


class MetricsJournal:
    """``metrics.jsonl``: one JSON object per evaluation, ordered by step.

    Values recorded at one step (the monitor's, then the framework's eval
    metrics) are merged into that step's object. The whole file is rewritten
    atomically after each change, so a crash never leaves half a line.
    ``path=None`` keeps the journal in memory (non-zero ranks, tests).
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._rows: dict[int, dict[str, Any]] = {}

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [dict(self._rows[step]) for step in sorted(self._rows)]

    def resume(self, up_to_step: int) -> list[dict[str, Any]]:
        """Keeps the rows of an existing file up to `up_to_step` (a resumed
        run continues its journal; a fresh run, step 0, starts a new one)."""
        self._rows = {}
        if self.path is not None and up_to_step > 0 and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line from an older writer
                step = row.get("step") if isinstance(row, dict) else None
                if isinstance(step, int) and not isinstance(step, bool) and step <= up_to_step:
                    self._rows[step] = row
        self._write()
        return self.rows

    def add(self, step: int, values: Mapping[str, Any]) -> None:
        row = self._rows.setdefault(int(step), {"step": int(step)})
        row.update({k: _json_safe(v) for k, v in values.items() if k != "step"})
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        text = "".join(json.dumps(self._rows[step], allow_nan=False) + "\n" for step in sorted(self._rows))
        write_text(self.path, text)
