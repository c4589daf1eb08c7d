"""The side-by-side benchmark behind ``grokspec bench``.

Every contender computes the same normalized spectral entropy (power 2,
``normalize="dim"``) of the same matrices in one process, with the same
number of threads (torch via ``set_num_threads``, numpy/scipy's BLAS via
threadpoolctl, grokspec via ``threads=``), after a warm-up. The contenders
take turns: ``ROUNDS`` rounds in which each is timed for a share of the
budget, in a rotated order, so that a busy minute on a shared machine lands
on every contender rather than on one. A contender's time is the median of
its rounds' medians; its speed-up is the median, over rounds, of its time
divided by grokspec's in the same round. Each contender's entropy is compared
with a float64 LAPACK reference, so speed is never reported without its
accuracy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np

from grokspec.cpu import cpuinfo_field
from grokspec.spectral import spectral_entropy

__all__ = [
    "DEFAULT_CASES",
    "QUICK_CASES",
    "BenchCase",
    "BenchResult",
    "kernel_isa",
    "markdown_table",
    "paired_rounds",
    "run_benchmark",
    "settle",
    "speedup_text",
]

_ISA_RANK = {"portable": 0, "avx2": 1, "avx512": 2}


def kernel_isa() -> str:
    """The vector path of the engine's hand-written kernels.

    The extension answers when it exposes ``isa()``; otherwise this applies the
    dispatcher's rule (rust/src/simd.rs): the widest of avx512 (avx512f +
    avx512vl), avx2 (avx2 + fma) and portable that the CPU's flags allow,
    narrowed by ``GROKSPEC_ISA`` but never widened.
    """
    import os

    from grokspec import _core

    exposed = getattr(_core, "isa", None)
    if callable(exposed):
        return str(exposed())
    flags = set((cpuinfo_field("flags") or "").split())
    best = "portable"
    if {"avx2", "fma"} <= flags:
        best = "avx512" if {"avx512f", "avx512vl"} <= flags else "avx2"
    wanted = os.environ.get("GROKSPEC_ISA", best)
    return wanted if _ISA_RANK.get(wanted, 99) <= _ISA_RANK[best] else best


@dataclass(frozen=True)
class BenchCase:
    """One workload: a batch of `count` matrices of `shape`, of `dtype`."""

    name: str
    shape: tuple[int, int]
    count: int = 1
    dtype: str = "float32"

    def matrices(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(self.shape).astype(self.dtype) for _ in range(self.count)]


@dataclass(frozen=True)
class BenchResult:
    case: str
    dtype: str
    contender: str
    #: Median over the rounds of the round's median wall time of one call
    #: over the whole case, in seconds.
    seconds: float
    #: Timed calls, all rounds together.
    runs: int
    #: max |H̃(contender) − H̃(float64 LAPACK)| over the case's matrices.
    entropy_error: float
    #: Median over the rounds of this contender's time divided by grokspec's
    #: in the same round (> 1: grokspec is faster).
    grokspec_speedup: float
    #: The same ratio, lowest and highest round: how much the machine moved.
    speedup_range: tuple[float, float] = (1.0, 1.0)


def _cases(dtypes: tuple[str, ...], specs: list[tuple[str, tuple[int, int], int]]) -> list[BenchCase]:
    return [BenchCase(name, shape, count, dtype) for dtype in dtypes for name, shape, count in specs]


DEFAULT_CASES = _cases(
    ("float32", "float64"),
    [
        ("128x512", (128, 512), 1),
        ("1024x1024", (1024, 1024), 1),
        ("2048x2048", (2048, 2048), 1),
        ("4096x4096", (4096, 4096), 1),
        ("64 x (512x128)", (512, 128), 64),
    ],
)

QUICK_CASES = _cases(("float32",), [("128x512", (128, 512), 1), ("8 x (256x64)", (256, 64), 8), ("600x600", (600, 600), 1)])


def entropy_of_squares(squares: np.ndarray, k: int) -> float:
    """Normalized entropy (dim) from the eigenvalues of WᵀW, in float64."""
    w = np.clip(np.asarray(squares, dtype=np.float64), 0.0, None)
    total = w.sum()
    if total == 0 or k <= 1:
        return float("nan")
    p = w[w > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(k))


def _reference(mats: list[np.ndarray]) -> np.ndarray:
    import scipy.linalg

    return np.array([entropy_of_squares(scipy.linalg.svdvals(m.astype(np.float64)) ** 2, min(m.shape)) for m in mats])


def _contenders(threads: int) -> dict[str, Callable[[list[np.ndarray]], np.ndarray]]:
    import scipy.linalg
    import torch

    def per_matrix(values: Callable[[np.ndarray], np.ndarray], squared: bool) -> Callable[[list[np.ndarray]], np.ndarray]:
        def run(mats: list[np.ndarray]) -> np.ndarray:
            out = []
            for m in mats:
                v = np.asarray(values(m), dtype=np.float64)
                out.append(entropy_of_squares(v if squared else v**2, min(m.shape)))
            return np.array(out)

        return run

    def torch_svdvals(m: np.ndarray) -> np.ndarray:
        return np.asarray(torch.linalg.svdvals(torch.from_numpy(m)).numpy())

    def torch_eigvalsh_gram(m: np.ndarray) -> np.ndarray:
        w = torch.from_numpy(m)
        gram = w.T @ w if m.shape[0] >= m.shape[1] else w @ w.T
        return np.asarray(torch.linalg.eigvalsh(gram).numpy())

    return {
        "grokspec": lambda mats: np.asarray(spectral_entropy(mats, threads=threads)),
        "torch.linalg.svdvals": per_matrix(torch_svdvals, squared=False),
        "torch.linalg.eigvalsh(WᵀW)": per_matrix(torch_eigvalsh_gram, squared=True),
        "numpy.linalg.svd": per_matrix(lambda m: np.linalg.svd(m, compute_uv=False), squared=False),
        "scipy.linalg.svdvals": per_matrix(scipy.linalg.svdvals, squared=False),
    }


@contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(previous)


#: Seconds to let other libraries' worker threads fall asleep before a
#: timing. OpenBLAS (numpy, scipy) busy-waits for a while after each call; on
#: two cores its spinning threads took the CPU from whichever contender ran
#: next (measured: 12.4 ms -> 19.8 ms for grokspec's 64-matrix batch).
SETTLE_SECONDS = 0.3


def settle() -> None:
    time.sleep(SETTLE_SECONDS)


#: Turns each contender takes per case (see the module's docstring).
ROUNDS = 3


def _time(run: Callable[[], object], budget: float, max_runs: int, *, warm_up: bool) -> tuple[float, int]:
    """Median time of runs until `budget` seconds or `max_runs` (at least one),
    after one warm-up run if asked; a warm-up slower than the budget is
    itself the timing (its start-up costs are small beside it)."""
    settle()
    if warm_up:
        start = time.perf_counter()
        run()
        first = time.perf_counter() - start
        if first > budget:
            return first, 1
    times: list[float] = []
    while not times or (len(times) < max_runs and sum(times) < budget):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def _append_run(out: list[np.ndarray], contender: Callable[[list[np.ndarray]], np.ndarray], mats: list[np.ndarray]) -> None:
    """One timed run that keeps its result (the last one is checked for accuracy)."""
    out.append(contender(mats))


def run_benchmark(
    cases: list[BenchCase] | None = None,
    *,
    threads: int | None = None,
    budget: float = 2.0,
    max_runs: int = 15,
    rounds: int = ROUNDS,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Times every contender on every case, `rounds` turns each sharing
    `budget` seconds and `max_runs` runs; returns one result per pair."""
    from grokspec import _core

    cases = DEFAULT_CASES if cases is None else cases
    threads = threads or _core.default_threads()
    rounds = max(1, rounds)
    results: list[BenchResult] = []
    with _thread_limits(threads):
        contenders = _contenders(threads)
        names = list(contenders)
        for case in cases:
            mats = case.matrices()
            reference = _reference(mats)
            rounds_of: dict[str, list[float]] = {name: [] for name in names}
            runs_of = dict.fromkeys(names, 0)
            values_of: dict[str, list[np.ndarray]] = {name: [] for name in names}
            for turn in range(rounds):
                # Rotated, so that no contender always runs right after the same one.
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    if progress:
                        progress(f"{case.name} {case.dtype}: {name} (round {turn + 1} of {rounds})")
                    run = partial(_append_run, values_of[name], contenders[name], mats)
                    seconds, runs = _time(run, budget / rounds, max(1, max_runs // rounds), warm_up=turn == 0)
                    rounds_of[name].append(seconds)
                    runs_of[name] += runs
            for name in names:
                seconds, speedup, speedup_range = paired_rounds(rounds_of[name], rounds_of["grokspec"])
                error = float(np.nanmax(np.abs(values_of[name][-1] - reference)))
                results.append(BenchResult(case.name, case.dtype, name, seconds, runs_of[name], error, speedup, speedup_range))
    return results


def paired_rounds(theirs: list[float], ours: list[float]) -> tuple[float, float, tuple[float, float]]:
    """A contender's time (the median of its rounds), its speed-up (the
    median of its per-round ratios to grokspec's time in the same round) and
    the lowest and highest of those ratios."""
    ratios = [t / o for t, o in zip(theirs, ours, strict=True)]
    return statistics.median(theirs), statistics.median(ratios), (min(ratios), max(ratios))


def as_records(results: list[BenchResult]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]


def _format_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def speedup_text(r: BenchResult) -> str:
    """`2.0×`, with the lowest and highest round where they differ in print:
    `2.0× (1.8–2.1)`; a dash for grokspec itself."""
    if r.contender == "grokspec":
        return "—"
    low, high = r.speedup_range
    spread = f" ({low:.1f}–{high:.1f})" if f"{low:.1f}" != f"{high:.1f}" else ""
    return f"{r.grokspec_speedup:.1f}×{spread}"


def markdown_table(results: list[BenchResult]) -> str:
    """The table for the README: one row per case and contender."""
    lines = [
        "| case | dtype | contender | time | grokspec speedup (rounds' range) | max abs entropy error |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in results:
        speedup = speedup_text(r)
        lines.append(
            f"| {r.case} | {r.dtype} | {r.contender} | {_format_seconds(r.seconds)} | {speedup} | {r.entropy_error:.1e} |"
        )
    return "\n".join(lines)
