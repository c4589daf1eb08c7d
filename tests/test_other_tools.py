"""grokspec's numbers against another tool of the field: WeightWatcher's ``entropy``
column (its "matrix entropy": -Σ p ln p over p = σ²/Σσ², divided by the log of a
numerical rank it computes in float64) is grokspec's default ``spectral_entropy``
(power 2, normalized by ln min(m, n)) for float32 layers — WeightWatcher's rank,
with float64's eps, counts the float32 rounding noise of a low-rank matrix, so
its divisor is ln min(m, n) as ours is; grokspec's ``normalize="rank"`` is a
different number there. WeightWatcher adds 1e-10 to each p, which moves its value
by ~1e-7: the tolerance is 1e-6. Its ``stable_rank``, ``spectral_norm`` (σ_max²) and
``norm`` (‖W‖_F²) are grokspec's ``spectral_stats`` to rounding."""

from __future__ import annotations

import logging

import pytest
import torch

import grokspec

weightwatcher = pytest.importorskip("weightwatcher")


def layers() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.Linear(128, 256),
        torch.nn.Linear(256, 300),
        torch.nn.Linear(300, 40),
        torch.nn.Linear(40, 512),
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(256, 4) @ torch.randn(4, 128))  # rank 4 (in exact arithmetic)
        model[2].weight.copy_(1e3 * torch.randn(300, 1) @ torch.randn(1, 256) + torch.randn(300, 256))  # one spike
        sigma = torch.logspace(0, -6, 40)  # a spectrum spread over six decades
        u, _ = torch.linalg.qr(torch.randn(300, 40))
        v, _ = torch.linalg.qr(torch.randn(40, 40))
        model[3].weight.copy_(((u * sigma) @ v.T).T)
    return model


@pytest.mark.filterwarnings("ignore::Warning:weightwatcher.*")  # its own pandas/numpy deprecations
@pytest.mark.filterwarnings("ignore::Warning:powerlaw.*")
def test_weightwatcher_entropy_is_grokspecs_default_entropy():
    model = layers()
    logging.disable(logging.WARNING)  # WeightWatcher logs every power-law fit
    try:
        frame = weightwatcher.WeightWatcher(model=model).analyze(min_evals=0, randomize=False, plot=False)
    finally:
        logging.disable(logging.NOTSET)
    theirs = {str(name): float(value) for name, value in zip(frame["name"], frame["entropy"])}
    assert sorted(theirs) == ["0", "1", "2", "3", "4"], "every Linear layer analysed"
    for name, value in theirs.items():
        weight = model[int(name)].weight.detach().numpy()
        assert abs(grokspec.spectral_entropy(weight) - value) <= 1e-6, name
    # its norms: stable_rank = ‖W‖_F²/σ_max², spectral_norm = σ_max², norm = ‖W‖_F² (relative 1e-12)
    for _, row in frame.iterrows():
        stats = grokspec.spectral_stats(model[int(row["name"])].weight.detach().numpy())
        assert stats.stable_rank == pytest.approx(row["stable_rank"], rel=1e-12)
        assert stats.sigma_max**2 == pytest.approx(row["spectral_norm"], rel=1e-12)
        assert stats.frobenius_norm**2 == pytest.approx(row["norm"], rel=1e-12)
    low_rank = model[1].weight.detach().numpy()
    assert abs(grokspec.spectral_entropy(low_rank, normalize="rank") - theirs["1"]) > 0.1, "rank is another normalization"
