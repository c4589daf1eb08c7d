"""The monitor's one error type."""

from __future__ import annotations

from grokspec.errors import GrokspecError

__all__ = ["MonitorError"]


class MonitorError(GrokspecError, ValueError):
    """The monitor cannot do what it was asked: no readout to hook, a probe it
    cannot use, a representation it cannot measure. The message names the
    problem and what to pass instead."""
