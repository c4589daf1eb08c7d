"""Training on a CUDA device (skipped cleanly where there is none)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grokspec.lab.rundir import RunDir
from grokspec.lab.train import train, train_seeds

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

from configs import TINY  # noqa: E402  (after the skip marker on purpose)

GPU_TINY = dataclasses.replace(TINY, device="cuda")


def test_training_on_the_gpu_learns_and_resumes(tmp_path):
    train(GPU_TINY, tmp_path / "straight")
    train(dataclasses.replace(GPU_TINY, steps=100), tmp_path / "resumed")
    train(GPU_TINY, tmp_path / "resumed")
    straight = RunDir(tmp_path / "straight").read_metrics()
    resumed = RunDir(tmp_path / "resumed").read_metrics()
    assert straight[-1]["train_acc"] > straight[0]["train_acc"] + 0.5
    for a, b in zip(straight, resumed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_many_seeds_share_one_gpu(tmp_path):
    summaries = train_seeds(GPU_TINY, list(range(8)), tmp_path / "group")
    assert len(summaries) == 8
    single = train(dataclasses.replace(GPU_TINY, seed=5), tmp_path / "single")
    assert summaries[5].final_train_acc == pytest.approx(single.final_train_acc, abs=0.02)


def test_cuda_tensors_give_the_host_engines_entropy():
    from grokspec import spectral_entropy

    # The CUDA path (float64 Gram eigenvalues on the device) and the host
    # engine are different float64 algorithms: they agree far inside the 1e-6 bar.
    z = torch.randn(512, 128, device="cuda")
    assert abs(spectral_entropy(z) - spectral_entropy(z.cpu())) < 1e-9
