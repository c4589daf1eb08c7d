"""Live monitoring where users train (SPEC §6): the representation entropy
H̃ of a fixed probe, every N steps, with the early warning.

``from grokspec.monitor import EntropyMonitor`` (needs torch; ``import
grokspec`` alone never imports it). The transformers and Lightning callbacks
in :mod:`grokspec.integrations` are built on :class:`EntropyMonitor`.
"""

from grokspec.monitor.alarm import ALARM_RULES, AlarmConfig
from grokspec.monitor.core import DEFAULT_EVERY, EntropyMonitor
from grokspec.monitor.errors import MonitorError
from grokspec.monitor.record import METRICS_FILE, MetricsJournal, MonitorRecord

__all__ = [
    "ALARM_RULES",
    "DEFAULT_EVERY",
    "METRICS_FILE",
    "AlarmConfig",
    "EntropyMonitor",
    "MetricsJournal",
    "MonitorError",
    "MonitorRecord",
]
