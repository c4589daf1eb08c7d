"""How busy the machine was while a benchmark ran, besides the benchmark.

On a shared virtual machine the same command moved by up to 2× within
minutes; a table is only worth comparing with its machine's load beside it.
Two figures, from /proc/stat (Linux) and this process's own CPU time:
the share of CPU time the hypervisor stole, and how many cores other
processes kept busy on average. Elsewhere both are unknown (None).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadSnapshot", "MachineLoad", "load_since", "snapshot"]

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class LoadSnapshot:
    """The counters at one moment: all CPUs' busy and stolen seconds, this
    process's CPU seconds, and the wall clock."""

    busy_seconds: float
    steal_seconds: float
    total_seconds: float
    own_seconds: float
    wall_seconds: float


@dataclass(frozen=True)
class MachineLoad:
    """The machine between two snapshots."""

    #: Share of all CPU time the hypervisor gave to other machines.
    steal_fraction: float
    #: Cores kept busy by other processes, on average (this one's CPU time
    #: subtracted; never below 0).
    other_cores: float

    def describe(self) -> str:
        return f"steal {self.steal_fraction:.1%} of CPU time, other processes {self.other_cores:.2f} cores on average"


def _cpu_line(path: Path) -> list[int] | None:
    try:
        with path.open(encoding="ascii", errors="replace") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    try:
        return [int(v) for v in first[1:]]
    except ValueError:
        return None


def snapshot(path: Path = PROC_STAT) -> LoadSnapshot | None:
    """The counters now, or None where /proc/stat cannot be read."""
    fields = _cpu_line(path)
    if fields is None or len(fields) < 4:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice; guest
    # time is already inside user (and guest_nice inside nice).
    counted = fields[:8]
    idle = sum(counted[3:5])
    steal = counted[7] if len(counted) > 7 else 0
    total = sum(counted)
    return LoadSnapshot(
        busy_seconds=(total - idle - steal) / tick,
        steal_seconds=steal / tick,
        total_seconds=total / tick,
        own_seconds=time.process_time(),
        wall_seconds=time.monotonic(),
    )


def load_since(before: LoadSnapshot | None, after: LoadSnapshot | None) -> MachineLoad | None:
    """The machine's load between two snapshots (None if either is missing
    or no time passed)."""
    if before is None or after is None:
        return None
    total = after.total_seconds - before.total_seconds
    wall = after.wall_seconds - before.wall_seconds
    if total <= 0 or wall <= 0:
        return None
    others = (after.busy_seconds - before.busy_seconds) - (after.own_seconds - before.own_seconds)
    return MachineLoad(
        steal_fraction=(after.steal_seconds - before.steal_seconds) / total,
        other_cores=max(0.0, others / wall),
    )
