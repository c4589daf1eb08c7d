"""Checkpoints named ``.tar``, the PyTorch tutorials' convention for a general
checkpoint: timm's ``CheckpointSaver`` (``checkpoint-N.pth.tar``, ``last.pth.tar``,
``model_best.pth.tar``), the PyTorch ImageNet example (``checkpoint.pth.tar`` and
its copy ``model_best.pth.tar``), and bare ``.tar`` files — which are read only
when they hold a torch.save file, not when they are tar archives.

Written with ``torch.save`` in those scripts' exact structures (timm's
``CheckpointSaver._save``: epoch, arch, state_dict, optimizer, args as an
``argparse.Namespace``, version, state_dict_ema, metric)."""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from grokspec.scan.scan import ScanResult, scan
from reference import reference_entropy


def small_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8, 10))


def reference(model: torch.nn.Module) -> dict[str, float]:
    out = {}
    for name, value in model.state_dict().items():
        if value.ndim >= 2:
            out[name] = reference_entropy(value.detach().to(torch.float64).numpy().reshape(value.shape[0], -1))
    return out


def entropies(result: ScanResult, run: str) -> dict[int, dict[str, float]]:
    t = result.table
    rows = t[(t["run"] == run) & (t["metric"] == "entropy")]
    out: dict[int, dict[str, float]] = {}
    for r in rows.itertuples():
        out.setdefault(int(r.step), {})[r.tensor] = float(r.value)
    return out


def assert_matches(got: dict[str, float], model: torch.nn.Module) -> None:
    want = reference(model)
    assert set(got) == set(want) and len(want) == 2
    for name, value in want.items():
        assert abs(got[name] - value) <= 1e-6, name


def timm_save(path: Path, model: torch.nn.Module, epoch: int, metric: float) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save(
        {
            "epoch": epoch,
            "arch": "resnet-tiny",
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "args": argparse.Namespace(model="resnet-tiny", lr=0.1, epochs=3),
            "version": 2,
            "state_dict_ema": {k: v * 0.5 for k, v in model.state_dict().items()},
            "metric": metric,
        },
        path,
    )


def test_timm_checkpoint_saver_folder_is_one_run_with_its_aliases(tmp_path):
    out = tmp_path / "train" / "20261127-resnet-tiny"
    out.mkdir(parents=True)
    models = {epoch: small_model(epoch) for epoch in range(3)}
    for epoch, model in models.items():
        timm_save(out / f"checkpoint-{epoch}.pth.tar", model, epoch, metric=[10.0, 30.0, 20.0][epoch])
    os.link(out / "checkpoint-2.pth.tar", out / "last.pth.tar")  # timm links (or copies) the newest and the best
    shutil.copyfile(out / "checkpoint-1.pth.tar", out / "model_best.pth.tar")
    (out / "summary.csv").write_text("epoch,train_loss,eval_top1\n0,2.3,10\n")
    result = scan(out)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {r.run: r.steps for r in result.report.runs} == {out.name: (0, 2)}
    assert {s.path: s.role for s in result.report.skipped} == {"last.pth.tar": "duplicate", "model_best.pth.tar": "duplicate"}
    got = entropies(result, out.name)
    assert sorted(got) == [0, 1, 2]
    for epoch, model in models.items():
        assert_matches(got[epoch], model)  # state_dict, not state_dict_ema
    assert set(result.table[result.table["run"] == out.name]["step_source"]) == {"metadata:epoch"}


def test_imagenet_example_checkpoint_and_best_copy(tmp_path):
    """examples/imagenet: `checkpoint.pth.tar` rewritten every epoch, `model_best.pth.tar`
    copied from it when the accuracy improved — two checkpoints of one run."""
    last, best = small_model(9), small_model(4)
    for path, model, epoch in ((tmp_path / "checkpoint.pth.tar", last, 90), (tmp_path / "model_best.pth.tar", best, 61)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        state = {"epoch": epoch, "arch": "tiny", "state_dict": model.state_dict(), "best_acc1": torch.tensor(71.2)}
        torch.save({**state, "optimizer": optimizer.state_dict()}, path)
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0
    got = entropies(result, tmp_path.name)
    assert sorted(got) == [61, 90]
    assert_matches(got[90], last)
    assert_matches(got[61], best)


@pytest.mark.parametrize("zip_format", [True, False])
def test_bare_tar_files_are_read_when_they_hold_torch_files_and_archives_are_passed_over(tmp_path, zip_format):
    models = {epoch: small_model(epoch) for epoch in (1, 2)}
    for epoch, model in models.items():
        torch.save(
            {"model_state_dict": model.state_dict()}, tmp_path / f"epoch_{epoch}.tar", _use_new_zipfile_serialization=zip_format
        )
    with tarfile.open(tmp_path / "dataset_3.tar", "w") as archive:  # a real tar archive, numbered like the series
        (tmp_path / "x.txt").write_text("data")
        archive.add(tmp_path / "x.txt", arcname="x.txt")
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0 and not result.warnings
    got = entropies(result, tmp_path.name)
    assert sorted(got) == [1, 2]
    for epoch, model in models.items():
        assert_matches(got[epoch], model)
    assert "dataset_3.tar" not in set(result.table["checkpoint"])


def test_a_damaged_pth_tar_is_reported_and_the_scan_goes_on(tmp_path):
    timm_save(tmp_path / "checkpoint-0.pth.tar", small_model(0), 0, 1.0)
    (tmp_path / "checkpoint-1.pth.tar").write_bytes(np.random.default_rng(0).bytes(300))
    result = scan(tmp_path)
    assert result.failed_checkpoints == 1
    assert any("checkpoint-1.pth.tar" in w for w in result.warnings)
    assert sorted(entropies(result, tmp_path.name)) == [0]
