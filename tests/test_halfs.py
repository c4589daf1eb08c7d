"""bf16 and f16 tensors widened to float32 a block at a time: exactly torch's
conversion, in either byte order, across block boundaries, and a truncated
file is an error, not zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokspec.scan import halfs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("big_endian", [False, True])
def test_widened_blocks_equal_torch(tmp_path, monkeypatch, dtype, big_endian):
    monkeypatch.setattr(halfs, "BLOCK_ELEMENTS", 1000)  # 10 blocks and a partial one
    values = (torch.randn(10_500, generator=torch.Generator().manual_seed(0)) * 1e3).to(dtype)
    values[:4] = torch.tensor([float("inf"), -0.0, 1e-7, 65504.0]).to(dtype)  # specials and subnormals
    bits = values.view(torch.int16).numpy().astype("<i2")
    stored = bits.byteswap() if big_endian else bits
    path = tmp_path / "halfs.bin"
    path.write_bytes(b"HEADER" + stored.tobytes())
    got = halfs.read_widened(path, 6, values.numel(), dtype == torch.bfloat16, big_endian)
    want = values.to(torch.float32).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit


def test_a_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="truncated"):
        halfs.read_widened(path, 0, 51, bfloat16=True)
