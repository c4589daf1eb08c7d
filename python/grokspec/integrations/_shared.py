"""What the framework callbacks share: the monitor's settings, the journal
beside the checkpoints, and the stop rule."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from grokspec.monitor import DEFAULT_EVERY, EntropyMonitor, MetricsJournal, MonitorRecord
from grokspec.monitor.alarm import MonitorAlarm
from grokspec.monitor.capture import Capture, Layer, Position
from grokspec.monitor.errors import MonitorError
from grokspec.monitor.record import LOG_PREFIX, METRICS_FILE, unwrap_scalar

__all__ = ["MonitorSettings", "Session", "numeric_metrics", "train_accuracy_from"]

#: Framework metrics about speed, not about the model: kept out of metrics.jsonl.
_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


@dataclass(frozen=True)
class MonitorSettings:
    """A callback's arguments for the EntropyMonitor it builds once the model is known."""

    probe: object
    every: int = DEFAULT_EVERY
    layer: Layer = None
    position: Position = "last"
    capture: Capture = "input"
    weights: bool | Sequence[str] = False
    alarm: MonitorAlarm | str | None = None
    center: bool = False
    stop_after_alarm: int | None = None
    #: The logged metric holding the train accuracy (for rules that wait for memorization).
    train_accuracy: str | None = None

    def __post_init__(self) -> None:
        after = self.stop_after_alarm
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise MonitorError(f"stop_after_alarm must be a non-negative number of steps or None, got {after!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise MonitorError(f"every must be a positive number of steps, got {self.every!r}")

    def monitor(self, model: nn.Module) -> EntropyMonitor:
        return EntropyMonitor(
            model,
            probe=self.probe,
            layer=self.layer,
            every=self.every,
            position=self.position,
            capture=self.capture,
            weights=self.weights,
            alarm=self.alarm,
            center=self.center,
        )


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The framework's evaluation numbers worth keeping beside H̃ (not its
    speed, and not the monitor's own values, which it may echo back)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or key.endswith(_SPEED_SUFFIXES) or key.startswith(LOG_PREFIX):
            continue
        value = unwrap_scalar(value)
        if isinstance(value, numbers.Real):
            out[str(key)] = float(value)
    return out


def _number_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def train_accuracy_from(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The train accuracy among a framework's logged metrics, when asked for and present."""
    if name is None or name not in metrics:
        return None
    value = numeric_metrics({name: metrics[name]})
    return value.get(name)


class Session:
    """One training run's monitor and journal: measures when due, merges the
    framework's evaluation metrics into the same step's line, and says when
    the warning asks training to stop."""

    def __init__(self, settings: MonitorSettings, model: nn.Module, directory: Path | None, start_step: int):
        self.settings = settings
        self.monitor = settings.monitor(model)
        self.journal = MetricsJournal(None if directory is None else directory / METRICS_FILE)
        rows = self.journal.resume(start_step)
        # A resumed run continues its series, so that the warning sees the whole of it.
        self.monitor.restore(
            [
                MonitorRecord(
                    step=row["step"],
                    repr_entropy=float(row["repr_entropy"]),
                    n_probe=0,
                    width=0,
                    train_acc=_number_or_none(row.get("train_acc")),
                )
                for row in rows
                if isinstance(row.get("repr_entropy"), (int, float))
            ]
        )

    def measured(self, step: int) -> bool:
        latest = self.monitor.latest
        return latest is not None and latest.step == step

    def measure(self, step: int, train_acc: float | None = None) -> MonitorRecord:
        record = self.monitor.measure(step, train_acc=train_acc)
        self.journal.add(step, record.journal_values())
        return record

    def add_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = numeric_metrics(metrics)
        if values:
            self.journal.add(step, values)

    def should_stop(self, step: int) -> bool:
        after = self.settings.stop_after_alarm
        return after is not None and self.monitor.should_stop(step, after)
