"""FP8 checkpoints: float8_e4m3fn / float8_e5m2 weights decoded exactly and
multiplied by the scale stored beside them (per-tensor, per-row, block-wise),
in safetensors files written by the real safetensors library and in torch.save
files read by grokspec's own unpickler; every entropy within 1e-6 of float64
LAPACK on the dequantized weights; scales are not scanned as matrices; a scale
of unknown layout is a warning, never a wrong number."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from safetensors.torch import save_file

from grokspec.errors import CheckpointError
from grokspec.scan.float8 import decode, dequantize
from grokspec.scan.options import ScanOptions
from grokspec.scan.scan import scan

FLOAT8 = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


def _entropy(w: np.ndarray) -> float:
    s = scipy.linalg.svdvals(np.asarray(w, dtype=np.float64)) ** 2
    p = s[s > 0] / s.sum()
    return float(-(p * np.log(p)).sum() / np.log(min(w.shape)))


@pytest.mark.parametrize("name", sorted(FLOAT8))
def test_every_code_decodes_as_torch_does(name):
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    want = codes.view(FLOAT8[name]).to(torch.float32).numpy()
    got = decode(codes.numpy(), name)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))  # bit for bit, signed zeros too


def _weights(seed: int, rows: int, cols: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # A spectrum with a heavy top, as trained weights have.
    return torch.randn(rows, cols, generator=g) + 3.0 * torch.randn(rows, 3, generator=g) @ torch.randn(3, cols, generator=g)


def _fp8_checkpoint() -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Tensors as FP8 checkpoints store them, and the dequantized weights the
    model computes with (the reference)."""
    tensors: dict[str, torch.Tensor] = {}
    want: dict[str, np.ndarray] = {}
    # Per-tensor scale (Hugging Face FP8 / compressed-tensors "tensor").
    w = _weights(0, 96, 64)
    tensors["a.weight"] = (w / 0.05).to(torch.float8_e4m3fn)
    tensors["a.weight_scale"] = torch.tensor(0.05)
    want["a.weight"] = tensors["a.weight"].float().numpy() * np.float32(0.05)
    # Per-row scale, [out, 1] (compressed-tensors "channel"), in bf16.
    rows = torch.linspace(0.01, 0.2, 80).reshape(80, 1).to(torch.bfloat16)
    tensors["b.weight"] = (_weights(1, 80, 48) / rows.float()).to(torch.float8_e4m3fn)
    tensors["b.weight_scale"] = rows
    want["b.weight"] = tensors["b.weight"].float().numpy() * rows.float().numpy()
    # Block-wise 128x128 scale_inv (DeepSeek-V3), partial blocks at both edges.
    blocks = torch.tensor([[0.1, 2.0], [1.0, 0.05], [3.0, 0.5]])
    tensors["c.weight"] = _weights(3, 300, 200).to(torch.float8_e4m3fn)
    tensors["c.weight_scale_inv"] = blocks
    full = blocks.repeat_interleave(128, 0)[:300].repeat_interleave(128, 1)[:, :200]
    want["c.weight"] = tensors["c.weight"].float().numpy() * full.numpy()
    # Per-column scale, [1, in], on e5m2 codes.
    columns = torch.linspace(0.02, 0.5, 40).reshape(1, 40)
    tensors["f.weight"] = (_weights(6, 48, 40) / columns).to(torch.float8_e5m2)
    tensors["f.weight_scale"] = columns
    want["f.weight"] = tensors["f.weight"].float().numpy() * columns.numpy()
    # e5m2 with no scale, and an ordinary float32 matrix beside them.
    tensors["d.weight"] = _weights(4, 40, 72).to(torch.float8_e5m2)
    want["d.weight"] = tensors["d.weight"].float().numpy()
    tensors["e.weight"] = _weights(5, 32, 32)
    want["e.weight"] = tensors["e.weight"].numpy()
    return tensors, want


def _entropies(result) -> dict[str, float]:
    table = result.table
    rows = table[(table["metric"] == "entropy") & (table["tensor"] != "")]
    return dict(zip(rows["tensor"], rows["value"]))


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
@pytest.mark.parametrize("writer", ["safetensors", "torch.save", "torch.distributed.checkpoint"])
def test_fp8_weights_scan_as_the_dequantized_matrices(tmp_path, writer):
    tensors, want = _fp8_checkpoint()
    run = tmp_path / "run"
    run.mkdir()
    if writer == "safetensors":
        save_file(tensors, str(run / "model.safetensors"))
    elif writer == "torch.save":
        torch.save(tensors, run / "step_100.pt")
    else:
        import torch.distributed.checkpoint as dcp

        dcp.save({"model": tensors}, checkpoint_id=run / "step_100")
    result = scan(run, ScanOptions(), cache_path=None)
    got = _entropies(result)
    assert set(got) == set(want), "the scales are parts of their weights, not matrices"
    for name, matrix in want.items():
        assert got[name] == pytest.approx(_entropy(matrix), abs=1e-6), name
    assert not result.warnings
    # The scale matters: the codes alone are a different matrix (rows and blocks rescaled).
    for name in ("b.weight", "c.weight", "f.weight"):
        assert abs(got[name] - _entropy(tensors[name].float().numpy())) > 1e-3


def test_a_scale_of_unknown_layout_is_a_warning_and_the_rest_scans(tmp_path):
    tensors, want = _fp8_checkpoint()
    tensors["a.weight_scale"] = torch.ones(5, 7)  # fits no layout of a 96x64 matrix
    save_file(tensors, str(tmp_path / "model.safetensors"))
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    got = _entropies(result)
    assert "a.weight" not in got and set(got) == set(want) - {"a.weight"}
    assert any("a.weight" in w and "(5, 7)" in w and "layout" in w for w in result.warnings), result.warnings


def test_dequantize_refuses_a_scale_that_is_not_finite():
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        dequantize("w", np.ones((4, 4), dtype=np.float32), np.array([1.0, np.inf, 1.0, 1.0]))


def test_integer_matrices_left_out_are_named(tmp_path):
    # A GPTQ-style layer: packed int32 weights and their float scales.
    tensors = {
        "q.qweight": torch.randint(-(2**31), 2**31 - 1, (16, 64), dtype=torch.int32),
        "q.qzeros": torch.zeros(1, 8, dtype=torch.int32),  # short side 1: not a matrix
        "q.scales": torch.rand(4, 64),
        "norm.weight": torch.ones(64),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    assert set(_entropies(result)) == {"q.scales"}
    [note] = [w for w in result.warnings if "integer" in w]
    assert "1 integer matrix not analysed" in note and "q.qweight" in note and "qzeros" not in note


def test_bitsandbytes_4bit_weights_are_named_though_packed_as_a_column(tmp_path):
    # bitsandbytes' 4-bit layout as transformers saves it: the weight packed two codes a byte
    # in an (n, 1) uint8 column, with its absmax, quant map and quant state beside it.
    tensors = {
        "fc.weight": torch.randint(0, 255, (64 * 32 // 2, 1), dtype=torch.uint8),
        "fc.weight.absmax": torch.rand(32),
        "fc.weight.quant_map": torch.rand(16),
        "fc.weight.quant_state.bitsandbytes__nf4": torch.zeros(40, dtype=torch.uint8),
        "head.weight": torch.randn(10, 32),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    assert set(_entropies(result)) == {"head.weight"}
    [note] = [w for w in result.warnings if "integer" in w]
    assert "1 integer matrix not analysed" in note and "fc.weight" in note and "quant_state" not in note


@pytest.mark.parametrize("writer", ["safetensors", "torch.save"])
def test_a_scale_stored_as_8_bits_is_refused_not_read_as_numbers(tmp_path, writer):
    # MX formats keep exponent-only 8-bit scales; read as uint8 they would be wrong numbers.
    tensors = {
        "w.weight": torch.randn(64, 32).to(torch.float8_e4m3fn),
        "w.weight_scale": torch.full((64, 1), 127, dtype=torch.uint8),
    }
    if writer == "safetensors":
        save_file(tensors, str(tmp_path / "model.safetensors"))
    else:
        torch.save(tensors, tmp_path / "step_1.pt")
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    assert "w.weight" not in _entropies(result)
    assert any("w.weight" in w and ("uint8" in w or "u8" in w) for w in result.warnings), result.warnings


def test_an_fp8_matrix_above_the_memory_budget_is_refused(tmp_path, monkeypatch):
    from grokspec.scan import guards

    tensors = {"big.weight": torch.randn(256, 256).to(torch.float8_e4m3fn), "small.weight": torch.randn(8, 8)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    monkeypatch.setenv(guards.MEMORY_BUDGET_ENV, str(200_000))  # the decoded 256x256 float32 is 262,144 bytes
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    assert set(_entropies(result)) == {"small.weight"}
    assert any("big.weight" in w and "memory budget" in w for w in result.warnings), result.warnings
