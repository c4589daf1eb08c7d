"""LLM-shaped checkpoints: the synthetic generator, scanning it exactly and
approximately in bounded memory, and subsampling a series."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from grokspec.bench.llm import LLAMA2_7B, TINY_LLAMA, ModelShape, tensor_specs, time_scan, write_checkpoint, write_series
from grokspec.cli import main
from grokspec.scan.dispatch import read_matrix
from grokspec.scan.scan import ScanOptions, scan
from grokspec.scan.subsample import parse_steps


def test_llama_2_7b_layout():
    specs = dict(tensor_specs(LLAMA2_7B, LLAMA2_7B.layers))
    matrices = [s for s in specs.values() if len(s) == 2]
    assert len(matrices) == 7 * 32 + 2  # 224 layer matrices, embed and lm_head
    assert specs["model.layers.31.self_attn.q_proj.weight"] == (4096, 4096)
    assert specs["model.layers.0.mlp.gate_proj.weight"] == (11008, 4096)
    assert specs["model.layers.0.mlp.down_proj.weight"] == (4096, 11008)
    assert specs["lm_head.weight"] == specs["model.embed_tokens.weight"] == (32000, 4096)
    assert specs["model.norm.weight"] == (4096,)
    params = sum(int(np.prod(s)) for s in specs.values())
    assert 6.7e9 < params < 6.8e9  # Llama-2-7B has 6.74 billion


def test_sharded_bf16_checkpoint_reads_back_as_torch_writes_it(tmp_path):
    written = write_checkpoint(tmp_path / "ck", layers=2, model=TINY_LLAMA, max_shard_bytes=100_000, seed=3, step=42)
    assert len(written.shards) > 1
    index = json.loads(written.index.read_text())["weight_map"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in written.shards:
        tensors.update(load_file(str(shard)))
    assert set(index) == set(tensors) == {n for n, _ in tensor_specs(TINY_LLAMA, 2)}
    for name, tensor in tensors.items():
        assert tensor.dtype == torch.bfloat16
        assert (written.directory / index[name]).exists()
    name = "model.layers.1.mlp.down_proj.weight"
    source = (str(written.directory / index[name]), name, 64, 172)
    np.testing.assert_array_equal(read_matrix(source), tensors[name].float().numpy())
    again = write_checkpoint(tmp_path / "again", layers=2, model=TINY_LLAMA, max_shard_bytes=100_000, seed=3, step=42)
    assert [p.read_bytes() for p in again.shards] == [p.read_bytes() for p in written.shards]


def test_scan_reads_the_step_and_approx_adds_error_rows(tmp_path):
    wide = ModelShape("wide", hidden=260, intermediate=300, vocab=280, layers=1)
    write_checkpoint(tmp_path / "ck", layers=1, model=wide, step=1234)
    # One thread: an oversubscribed BLAS spins on a busy runner.
    exact = scan(tmp_path, ScanOptions(representation=False, threads=1), cache_path=None)
    estimated = scan(tmp_path, ScanOptions(representation=False, approx=True, threads=1), cache_path=None)
    assert set(exact.table["step"]) == {1234}
    assert "entropy_error" not in set(exact.table["metric"])
    e = exact.table[exact.table["metric"] == "entropy"].set_index("tensor")["value"]
    a = estimated.table[estimated.table["metric"] == "entropy"].set_index("tensor")["value"]
    bars = estimated.table[estimated.table["metric"] == "entropy_error"].set_index("tensor")["value"]
    assert len(e) == len(a) == len(bars) == 9
    assert (bars > 0).all()  # every matrix here has a short side of at least 256: estimated
    assert ((a - e).abs() <= bars).all()
    assert ((a - e).abs() <= 2e-3).all()


@pytest.mark.slow
def test_scan_memory_stays_under_twice_the_largest_shard(tmp_path):
    """What the checkpoint costs the scan's own process (VmHWM), over a baseline
    taken after its imports and the engines' first use (bench.llm's probe)."""
    medium = ModelShape("medium", hidden=1024, intermediate=2816, vocab=8192, layers=2)
    written = write_checkpoint(tmp_path / "ck", layers=2, model=medium, max_shard_bytes=40 * 2**20)
    for method in ("auto", "approx"):
        timing = time_scan(written.directory, method=method, threads=1)
        assert timing.matrices == 16
        assert timing.peak_rss_bytes - timing.baseline_rss_bytes < 2 * written.largest_shard_bytes, method


def test_every_and_steps_subsample_a_series(tmp_path):
    write_series(tmp_path / "run", [0, 100, 200, 300, 400, 500], model=TINY_LLAMA)
    steps = lambda **kw: sorted(set(scan(tmp_path, ScanOptions(**kw), cache_path=None).table["step"]))
    assert steps() == [0, 100, 200, 300, 400, 500]
    assert steps(every=2) == [0, 200, 400]
    assert steps(steps=(100, 400)) == [100, 200, 300, 400]
    assert steps(steps=(None, 250), every=2) == [0, 200]
    assert parse_steps("10:") == (10, None) and parse_steps(":7") == (None, 7)
    for bad in ("7", "a:b", "9:3"):
        with pytest.raises(ValueError):
            parse_steps(bad)
    with pytest.raises(ValueError, match="every"):
        scan(tmp_path, ScanOptions(every=0), cache_path=None)


def test_command_line_options(tmp_path):
    write_series(tmp_path / "run", [0, 100, 200, 300], model=TINY_LLAMA)
    out = tmp_path / "out"
    done = CliRunner().invoke(
        main, ["scan", str(tmp_path), "--every", "2", "--steps", "0:250", "--approx", "--quiet", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    table = pd.read_csv(out / "spectra.csv")
    assert sorted(set(table["step"])) == [0, 200]
    assert "entropy_error" in set(table["metric"])
    bad = CliRunner().invoke(main, ["scan", str(tmp_path), "--steps", "x", "--quiet"])
    assert bad.exit_code == 2 and "steps must look like" in bad.output
