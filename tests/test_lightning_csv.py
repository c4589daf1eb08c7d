"""Lightning's default layout with its CSVLogger: ``lightning_logs/version_N/``
holding ``checkpoints/epoch=E-step=S.ckpt`` and ``metrics.csv``. The validation
accuracy logged there is the run's test accuracy for the events (T_grok), as
``trainer_state.json`` is for an HF Trainer's run. Written by a real Trainer."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from grokspec.scan.scan import scan

pl = pytest.importorskip("lightning.pytorch")
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


@pytest.fixture(scope="module")
def lightning_logs(tmp_path_factory) -> Path:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    root = tmp_path_factory.mktemp("lit")
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    trainer = pl.Trainer(
        max_steps=8,
        val_check_interval=2,
        log_every_n_steps=1,
        logger=CSVLogger(root),  # the default logger when tensorboard is not installed
        callbacks=[ModelCheckpoint(every_n_train_steps=2, save_top_k=-1)],  # dirpath: version_0/checkpoints
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Classifier(), data, data)
    return root / "lightning_logs"


def logged(path: Path, column: str) -> dict[int, float]:
    with open(path, newline="") as handle:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(handle) if r.get(column)}


def test_the_folder_is_lightnings_default_layout(lightning_logs):
    version = lightning_logs / "version_0"
    assert (version / "metrics.csv").is_file()
    assert sorted(p.name for p in (version / "checkpoints").iterdir())[:1] == ["epoch=0-step=2.ckpt"]
    assert logged(version / "metrics.csv", "val_acc"), "the logger wrote validation accuracies"


def test_the_csv_loggers_metrics_join_the_checkpoints_run(lightning_logs):
    result = scan(lightning_logs)
    run = "version_0/checkpoints"
    assert result.failed_checkpoints == 0 and not result.warnings
    assert [r.run for r in result.report.runs] == [run]
    t = result.table
    for metric in ("val_acc", "train_loss"):
        want = logged(lightning_logs / "version_0" / "metrics.csv", metric)
        rows = t[(t["run"] == run) & (t["metric"] == metric)]
        got = dict(zip(rows["step"].astype(int), rows["value"]))
        assert got.keys() == want.keys() and all(math.isclose(got[s], want[s]) for s in want), metric
    assert set(t[(t["metric"] == "val_acc")]["step_source"]) == {"log"}
    # val_acc is the run's test accuracy: the report's accuracy series is built from it
    (series,) = [r for r in result.report.runs if r.run == run]
    assert series.grok_metric == "val_acc"


def test_a_damaged_metrics_csv_is_a_warning_not_a_failure(lightning_logs, tmp_path):
    import shutil

    copy = tmp_path / "logs"
    shutil.copytree(lightning_logs, copy)
    (copy / "version_0" / "metrics.csv").write_bytes(b"step,val_acc\n\xff\xfe,0.5\n")
    result = scan(copy)
    assert result.failed_checkpoints == 0
    assert any("metrics.csv" in w for w in result.warnings)
