"""The Ray executor: a local cluster computes the same table as a local
scan, and a worker that dies mid-task is retried without loss."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from grokspec.bench.llm import TINY_LLAMA, write_series  # noqa: E402
from grokspec.scan.ray_executor import FAIL_ONCE_ENV, plan_chunks  # noqa: E402
from grokspec.scan.scan import ScanOptions, scan  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    marker = tmp_path_factory.mktemp("ray") / "failed-once"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {FAIL_ONCE_ENV: str(marker)}},
    )
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("series")
    write_series(root / "run", [0, 100, 200, 300], layers=1, model=TINY_LLAMA)
    # One more checkpoint as in-memory arrays (.npz), so both kinds of source travel.
    rng = np.random.default_rng(0)
    np.savez(root / "other_step_50.npz", w=rng.standard_normal((40, 30)).astype(np.float32), step=np.array(50))
    # And a series of torch.distributed checkpoint folders, whose tensors are read on the driver.
    import torch
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.simplefilter("ignore")
        for step in (10, 20):
            weights = torch.from_numpy(rng.standard_normal((36, 28)).astype(np.float32))
            dcp.save({"model": {"w": weights}, "step": step}, checkpoint_id=root / "sharded" / f"step_{step}")
    return root


def _entropy_table(result):
    table = result.table[result.table["tensor"] != ""]
    return table.sort_values(["run", "step", "tensor", "metric"]).reset_index(drop=True)


def test_ray_scan_equals_the_local_scan_and_survives_a_killed_worker(cluster, series):
    local = scan(series, ScanOptions(), cache_path=None)
    assert not cluster.exists()
    distributed = scan(series, ScanOptions(executor="ray"), cache_path=None)
    assert cluster.exists()  # a task's worker died (os._exit) and Ray ran the task again
    a, b = _entropy_table(local), _entropy_table(distributed)
    assert len(a) == len(b) > 0
    assert sorted(set(b[b["run"] == "sharded"]["step"])) == [10, 20]  # the DCP folders went through Ray too
    assert a.drop(columns="value").equals(b.drop(columns="value"))
    np.testing.assert_allclose(a["value"].to_numpy(float), b["value"].to_numpy(float), rtol=0, atol=1e-12)
    assert distributed.failed_checkpoints == 0


def test_ray_approx_scan_equals_the_local_approx_scan(cluster, series, tmp_path):
    from grokspec.bench.llm import ModelShape, write_checkpoint

    wide = ModelShape("wide", hidden=320, intermediate=400, vocab=300, layers=1)
    write_checkpoint(tmp_path / "checkpoint-7", layers=1, model=wide, seed=7)
    options = ScanOptions(approx=True, include=("*mlp*",))
    one_thread = _entropy_table(scan(tmp_path, dataclasses.replace(options, threads=1), cache_path=None))
    all_threads = _entropy_table(scan(tmp_path, options, cache_path=None))
    distributed = _entropy_table(scan(tmp_path, dataclasses.replace(options, executor="ray"), cache_path=None))
    assert set(distributed["metric"]) >= {"entropy", "entropy_error"}
    # A Ray task computes on one thread: the same numbers as a local scan on one thread.
    assert one_thread.drop(columns="value").equals(distributed.drop(columns="value"))
    np.testing.assert_allclose(one_thread["value"].to_numpy(float), distributed["value"].to_numpy(float), rtol=0, atol=1e-12)
    # On more threads numpy's BLAS may round the estimate's float32 products
    # differently (seen on an AMD EPYC: 2e-6 relative at most, entropies 2e-9
    # apart), far inside the estimate's own interval (~1e-3).
    assert all_threads.drop(columns="value").equals(distributed.drop(columns="value"))
    np.testing.assert_allclose(all_threads["value"].to_numpy(float), distributed["value"].to_numpy(float), rtol=1e-5, atol=0)
    entropy = distributed["metric"] == "entropy"
    np.testing.assert_allclose(
        all_threads["value"][entropy].to_numpy(float), distributed["value"][entropy].to_numpy(float), rtol=0, atol=1e-7
    )


def test_chunks_share_small_matrices_and_isolate_large_ones():
    small = np.zeros((10, 10), dtype=np.float32)
    big = ("f", "w", 4096, 4096)  # 64 MiB as float32
    assert plan_chunks([small, small, big, small], limit=64 * 2**20) == [[0, 1], [2], [3]]
    assert plan_chunks([], limit=10) == []
