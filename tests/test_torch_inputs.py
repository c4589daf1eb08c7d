"""Torch tensors as inputs: every float dtype, any strides, autograd, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokspec import DTypeError, ShapeError, singular_values, spectral_entropy
from reference import reference_entropy, reference_singular_values

ENTROPY_TOL = 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_float_dtype_is_analysed_exactly_as_stored(dtype):
    t = torch.randn(80, 30, generator=torch.Generator().manual_seed(0)).to(dtype)
    # The reference sees the stored (rounded) values, upcast exactly.
    stored = t.to(torch.float64).numpy()
    assert abs(spectral_entropy(t) - reference_entropy(stored)) <= ENTROPY_TOL
    sigma = singular_values(t)
    assert np.max(np.abs(sigma - reference_singular_values(stored))) <= 1e-5 * sigma[0]


def test_non_contiguous_and_autograd_tensors():
    base = torch.randn(64, 48, dtype=torch.float64, requires_grad=True)
    want = reference_entropy(base.detach().numpy())
    assert abs(spectral_entropy(base) - want) <= ENTROPY_TOL
    assert abs(spectral_entropy(base.t()) - want) <= ENTROPY_TOL
    wide = torch.randn(64, 96, dtype=torch.float32)
    stepped = wide[:, ::2]
    assert not stepped.is_contiguous()
    assert abs(spectral_entropy(stepped) - reference_entropy(stepped.numpy())) <= ENTROPY_TOL


def test_stacks_and_lists_of_tensors_are_batches():
    stack = torch.randn(5, 20, 10)
    got = spectral_entropy(stack)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, [reference_entropy(m.numpy()) for m in stack], atol=ENTROPY_TOL)
    mixed = [torch.randn(7, 3), np.ones((4, 4)), torch.randn(3, 9, dtype=torch.bfloat16)]
    assert spectral_entropy(mixed).shape == (3,)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.complex64])
def test_non_float_tensors_raise_dtype_error(dtype):
    with pytest.raises(DTypeError, match="dtype"):
        spectral_entropy(torch.ones(3, 3, dtype=dtype))


def test_one_dimensional_tensor_raises_shape_error():
    with pytest.raises(ShapeError):
        spectral_entropy(torch.ones(5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_copied_to_the_host():
    t = torch.randn(128, 64, device="cuda")
    want = reference_entropy(t.cpu().numpy())
    assert abs(spectral_entropy(t) - want) <= ENTROPY_TOL
