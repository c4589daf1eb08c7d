"""Concurrency: the engine releases the GIL, survives many callers, and
honours the thread settings."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from grokspec import _core, spectral_entropy, spectral_stats


def workload() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((200, 100)).astype(np.float32) for _ in range(12)]
    mats.append(rng.standard_normal((700, 650)))
    return mats


@pytest.mark.timeout(300)
def test_eight_python_threads_at_once_finish_with_the_same_numbers():
    mats = workload()
    expected = spectral_entropy(mats)
    barrier = threading.Barrier(8, timeout=60)
    results: dict[int, list[np.ndarray]] = {}
    failures: list[BaseException] = []

    def hammer(index: int) -> None:
        try:
            barrier.wait()
            results[index] = [spectral_entropy(mats) for _ in range(5)]
        except BaseException as error:  # reported below, in the main thread
            failures.append(error)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a caller deadlocked"
    assert not failures, failures
    assert len(results) == 8
    for runs in results.values():
        for got in runs:
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_the_gil_is_released_while_the_engine_computes():
    big = np.random.default_rng(1).standard_normal((1500, 1500))
    done = threading.Event()
    started = time.perf_counter()

    def compute() -> None:
        spectral_entropy(big, method="svd")  # about a second of pure Rust
        done.set()

    worker = threading.Thread(target=compute)
    worker.start()
    ticks = []
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.002)
    worker.join()
    duration = time.perf_counter() - started
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([duration])
    # Holding the GIL would freeze this loop for the whole computation.
    assert duration > 0.2, "the workload is too small to tell"
    assert gaps.max() < 0.5 * duration, (gaps.max(), duration)


def test_thread_count_argument_gives_identical_results():
    mats = workload()
    one = spectral_entropy(mats, threads=1)
    two = spectral_entropy(mats, threads=2)
    four = spectral_entropy(mats, threads=4)
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one, four, rtol=0, atol=1e-12)


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("GROKSPEC_NUM_THREADS", "3")
    assert _core.default_threads() == 3
    assert spectral_stats(np.eye(4)).entropy == pytest.approx(1.0)
    monkeypatch.setenv("GROKSPEC_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="GROKSPEC_NUM_THREADS"):
        spectral_entropy(np.eye(4))
    monkeypatch.delenv("GROKSPEC_NUM_THREADS")
    assert _core.default_threads() >= 1
