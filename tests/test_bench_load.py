"""The machine-load line of ``grokspec bench``: steal and other processes'
cores from two readings of /proc/stat, this process's own time subtracted."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from grokspec.bench.load import LoadSnapshot, load_since, snapshot

TICK = os.sysconf("SC_CLK_TCK")


def _stat(tmp_path, name, user, system, idle, steal):
    path = tmp_path / name
    # user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    return path


def test_steal_and_other_processes_come_from_the_counters(tmp_path):
    before = snapshot(_stat(tmp_path, "a", user=1000, system=100, idle=5000, steal=10))
    after = snapshot(_stat(tmp_path, "b", user=1000 + 3 * TICK, system=100 + TICK, idle=5000 + 4 * TICK, steal=10 + 2 * TICK))
    assert before is not None and after is not None
    # Ten seconds of all CPUs: 4 busy, 4 idle, 2 stolen; over 5 s of wall
    # time, of which this process used 1 s of CPU.
    before = replace(before, own_seconds=0.0, wall_seconds=0.0)
    after = replace(after, own_seconds=1.0, wall_seconds=5.0)
    load = load_since(before, after)
    assert load is not None
    assert load.steal_fraction == pytest.approx(0.2)
    assert load.other_cores == pytest.approx((4 - 1) / 5)
    assert "steal 20.0% of CPU time" in load.describe()


def test_missing_or_foreign_counters_give_no_figure(tmp_path):
    assert snapshot(tmp_path / "absent") is None
    garbled = tmp_path / "garbled"
    garbled.write_text("intr 1 2 3\n")
    assert snapshot(garbled) is None
    assert load_since(None, None) is None
    still = LoadSnapshot(1.0, 0.0, 10.0, 0.0, 3.0)
    assert load_since(still, still) is None, "no time passed"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_this_process_own_work_is_not_counted_as_others():
    before = snapshot()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    load = load_since(before, snapshot())
    assert load is not None
    # The 0.3 s spent here are this process's: others' share stays well
    # below the core it used (a shared CI machine may add a little).
    assert load.other_cores < 0.9
