"""What the CPU is, as far as choices of code path and benchmark tables need
to know: its name and its vendor, read from /proc/cpuinfo (Linux) or, where
that is missing, from what :mod:`platform` reports."""

from __future__ import annotations

import platform

__all__ = ["cpu_model", "cpu_vendor", "cpuinfo_field", "is_intel"]


def cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        return None
    return None


def cpu_model() -> str:
    """The CPU's name: /proc/cpuinfo's "model name", else what platform knows."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The x86 vendor string ("GenuineIntel", "AuthenticAMD", ...): /proc/cpuinfo's
    "vendor_id", else the last word of ``platform.processor()`` (Windows ends
    it with the vendor), else ""."""
    vendor = cpuinfo_field("vendor_id")
    if vendor:
        return vendor
    words = platform.processor().replace(",", " ").split()
    return words[-1] if words else ""


def is_intel() -> bool:
    """Whether the CPU is Intel's: MKL takes its fast kernels there only (on a
    2-core AMD EPYC its float32 products were slower than OpenBLAS's,
    docs/APPROX.md)."""
    return cpu_vendor() == "GenuineIntel"
