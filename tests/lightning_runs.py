"""A tiny Lightning classifier and the short fit that the logger tests give it
(test modules never import each other): 8 steps, validation and a checkpoint
every 2, every value logged."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

#: What Lightning itself warns about in these fits (the suite turns warnings into errors).
LIGHTNING_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


class Classifier(pl.LightningModule):
    def __init__(self, accuracy_key: str = "val_acc") -> None:
        super().__init__()
        self.accuracy_key = accuracy_key
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log(self.accuracy_key, (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit(logger: Any, accuracy_key: str = "val_acc", default_root_dir: str | None = None) -> None:
    """Trains the classifier for 8 steps with `logger` (one or a list);
    ModelCheckpoint places its files where the first logger says."""
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    trainer = pl.Trainer(
        max_steps=8,
        val_check_interval=2,
        log_every_n_steps=1,
        logger=logger,
        callbacks=[ModelCheckpoint(every_n_train_steps=2, save_top_k=-1)],
        default_root_dir=default_root_dir,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Classifier(accuracy_key), data, data)
