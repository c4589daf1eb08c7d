"""grokspec.gpu: statistics computed where a tensor lives.

The module's logic runs on CPU tensors too, so these tests check it on any
machine against float64 LAPACK; the tests marked `gpu` run it on a CUDA
device and skip cleanly without one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grokspec import NonFiniteError, ShapeError, gpu, spectral_entropy, spectral_stats
from reference import reference_entropy, reference_singular_values, with_singular_values

TOL = 1e-6


def _entropy(x: torch.Tensor, **kw: object) -> float:
    options = {"power": 2.0, "normalize": "dim", "center": False, "method": "auto"} | kw
    columns, errors, _ = gpu.spectral_columns(x, **options)  # type: ignore[arg-type]
    assert not errors
    return float(columns["entropy"][0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(90, 40), (40, 90), (33, 33)])
@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("normalize", ["dim", "cols", "rank", "none"])
def test_device_math_matches_lapack_on_cpu_tensors(dtype, shape, power, normalize):
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    stored = t.to(torch.float64).numpy() if dtype == torch.float64 else t.to(torch.float32).numpy()
    want = reference_entropy(stored, power=power, normalize=normalize)
    assert abs(_entropy(t, power=power, normalize=normalize) - want) <= TOL


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_ill_conditioned_matrices_meet_the_bar_and_centering_matches(power):
    a = with_singular_values(120, 80, np.logspace(0, -8, 80), seed=3)
    for normalize in ("dim", "rank"):
        got = _entropy(torch.from_numpy(a), power=power, normalize=normalize)
        assert abs(got - reference_entropy(a, power=power, normalize=normalize)) <= TOL
    f32 = a.astype(np.float32)
    got = _entropy(torch.from_numpy(f32), power=power, center=True)
    assert abs(got - reference_entropy(f32, power=power, center=True)) <= TOL


def test_auto_recomputes_by_svd_only_when_the_gram_bound_fails():
    well = torch.randn(200, 100, dtype=torch.float64)
    columns, _, _ = gpu.spectral_columns(well, power=2.0, normalize="dim", center=False, method="auto")
    assert columns["method"] == ["gram"]
    ill = torch.from_numpy(with_singular_values(100, 100, np.logspace(0, -12, 100)))
    columns, _, _ = gpu.spectral_columns(ill, power=1.0, normalize="rank", center=False, method="auto")
    assert columns["method"] == ["svd"]


def test_error_bound_holds_for_perturbed_eigenvalues():
    rng = np.random.default_rng(0)
    squares = np.sort(rng.pareto(1.5, 300))[::-1] + 1e-9
    delta = 1e-6 * squares.sum()
    for power in (1.0, 2.0):
        bound = gpu.entropy_error_bound(squares, delta, power)
        assert 0 < bound < 0.1
        for _ in range(20):
            moved = np.clip(squares + rng.uniform(-delta, delta, squares.shape), 0.0, None)
            assert abs(_nats(moved, power) - _nats(squares, power)) <= bound


def _nats(squares: np.ndarray, power: float) -> float:
    w = squares ** (power / 2)
    p = w[w > 0] / w.sum()
    return float(-(p * np.log(p)).sum())


def test_batches_of_mixed_shapes_errors_and_edge_cases():
    mats = [torch.randn(30, 10), torch.randn(10, 30), torch.randn(30, 10), torch.zeros(4, 4), torch.ones(1, 5)]
    mats[2][3, 4] = float("nan")
    columns, errors, batch = gpu.spectral_columns(mats, power=2.0, normalize="dim", center=False, method="auto")
    assert batch and [i for i, _ in errors] == [2]
    assert isinstance(errors[0][1], NonFiniteError) and "matrix 2 of 5" in str(errors[0][1])
    for i in (0, 1):
        assert abs(columns["entropy"][i] - reference_entropy(mats[i].numpy())) <= TOL
    assert np.isnan(columns["entropy"][3]) and np.isnan(columns["entropy"][4])  # zero matrix; K = 1
    stack = torch.randn(3, 12, 7)
    values, batch = gpu.singular_values(stack)
    assert batch and len(values) == 3
    np.testing.assert_allclose(values[1], reference_singular_values(stack[1].numpy()), atol=1e-5 * values[1][0])
    with pytest.raises(ShapeError):
        gpu.spectral_columns(torch.ones(5), power=2.0, normalize="dim", center=False, method="auto")


def test_only_device_tensors_take_the_device_path():
    assert not gpu.is_device_input(torch.ones(3, 3))
    assert not gpu.is_device_input(np.ones((3, 3)))
    assert not gpu.is_device_input([])
    # A meta tensor holds no data anywhere: the host path refuses it with a clear error.
    assert not gpu.is_device_input(torch.empty(3, 3, device="meta"))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_cuda_tensors_are_computed_on_the_device():
    t = torch.randn(300, 200, device="cuda")
    before = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    stats = spectral_stats(t)
    assert not isinstance(stats, list)
    assert stats.method == "gram"
    assert torch.cuda.max_memory_allocated() > 0 or before > 0  # the Gram was built on the device
    assert abs(stats.entropy - reference_entropy(t.cpu().numpy())) <= TOL
    batch = torch.randn(16, 64, 32, device="cuda", dtype=torch.bfloat16)
    got = spectral_entropy(batch, power=1, normalize="rank")
    want = [reference_entropy(m.float().cpu().numpy(), power=1, normalize="rank") for m in batch]
    np.testing.assert_allclose(got, want, atol=TOL)
