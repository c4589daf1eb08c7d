"""The hand-written SIMD kernels compile to instructions, not calls.

A closure (or a function without `#[target_feature]`) inside a kernel is
compiled for the baseline CPU, and each AVX intrinsic in it becomes a call to
a one-instruction function: the single-column kernel of the tridiagonal
reduction ran that way, silently, until 28 Nov 2026. No timing can catch
that reliably on a shared machine; the disassembly can.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from grokspec import _core

# `call ... <core::core_arch::x86::avx::_mm256_loadu_pd>` and the like;
# `_xgetbv` (feature detection in the standard library) is a legitimate call.
INTRINSIC_CALL = re.compile(r"\bcall\b.*<core::core_arch::x86(?:_64)?::(?!xsave::)\w+::(\w+)>")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernels only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_no_kernel_calls_an_intrinsic_as_a_function():
    library = Path(_core.__file__)
    listing = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "grokspec_core::" not in listing:
        pytest.skip("the extension was built without symbols")
    calls = []
    function = "?"
    for line in listing.splitlines():
        if line.endswith(">:"):
            function = line
        elif match := INTRINSIC_CALL.search(line):
            calls.append(f"{function} calls {match.group(1)}")
    assert not calls, "intrinsics compiled as calls:\n" + "\n".join(sorted(set(calls)))
