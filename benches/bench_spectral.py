"""grokspec against torch.linalg, numpy and scipy on the cases of `grokspec bench`.

pytest benches/bench_spectral.py --benchmark-group-by=group
"""

from __future__ import annotations

import numpy as np
import pytest

from grokspec.bench.spectral import DEFAULT_CASES, _contenders, _reference, _thread_limits, settle

CONTENDERS = ["grokspec", "torch.linalg.svdvals", "torch.linalg.eigvalsh(WᵀW)", "numpy.linalg.svd", "scipy.linalg.svdvals"]


@pytest.fixture(scope="module")
def contenders():
    from grokspec import _core

    threads = _core.default_threads()
    with _thread_limits(threads):
        yield _contenders(threads)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: f"{c.name}-{c.dtype}")
def test_entropy(benchmark, contenders, case, contender):
    mats = case.matrices()
    reference = _reference(mats)
    benchmark.group = f"{case.name} {case.dtype}"
    rounds = 1 if case.shape[0] >= 2048 else 5
    settle()  # let OpenBLAS's spinning threads (from the reference) fall asleep
    result = benchmark.pedantic(contenders[contender], args=(mats,), rounds=rounds, warmup_rounds=1)
    error = float(np.nanmax(np.abs(np.asarray(result) - reference)))
    benchmark.extra_info["entropy_error"] = error
    benchmark.extra_info["correct"] = error <= 1e-6 or contender != "grokspec"
    if contender == "grokspec":
        assert error <= 1e-6
