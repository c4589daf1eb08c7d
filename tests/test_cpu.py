"""The CPU facts that pick code paths (grokspec.cpu): the vendor and model
from /proc/cpuinfo, and the fallbacks where that file does not exist."""

from __future__ import annotations

import builtins
import platform

import pytest

from grokspec import cpu

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
cpu family\t: 25
model name\t: {model}
flags\t\t: fpu avx2 fma

processor\t: 1
vendor_id\t: SomethingElse
model name\t: Other
"""


def _fake_cpuinfo(monkeypatch, tmp_path, vendor, model):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(vendor=vendor, model=model))
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        return real_open(path if file == "/proc/cpuinfo" else file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize(("vendor", "intel"), [("GenuineIntel", True), ("AuthenticAMD", False), ("HygonGenuine", False)])
def test_the_first_processor_names_the_vendor(monkeypatch, tmp_path, vendor, intel):
    _fake_cpuinfo(monkeypatch, tmp_path, vendor, "Some CPU @ 2.0GHz")
    assert cpu.cpu_vendor() == vendor
    assert cpu.is_intel() is intel
    assert cpu.cpu_model() == "Some CPU @ 2.0GHz"
    assert cpu.cpuinfo_field("flags") == "fpu avx2 fma"
    assert cpu.cpuinfo_field("no such field") is None


def test_without_proc_cpuinfo_platform_answers(monkeypatch):
    real_open = builtins.open

    def no_cpuinfo(file, *args, **kwargs):
        if file == "/proc/cpuinfo":
            raise FileNotFoundError(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.setattr(platform, "processor", lambda: "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel")
    assert cpu.cpu_vendor() == "GenuineIntel"
    assert cpu.is_intel()
    assert cpu.cpu_model() == "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu.cpu_vendor() == ""
    assert not cpu.is_intel()
    assert cpu.cpu_model() == platform.machine()
