"""grokspec in Lightning: ``GrokspecCallback``.

    from grokspec.integrations.lightning import GrokspecCallback

    trainer = lightning.Trainer(max_steps=3000,
                                callbacks=[GrokspecCallback(probe=x_probe, every=100)])

Every `every` optimizer steps (and at step 0 and when training ends) the
callback measures H̃ of the probe and
- sends ``grokspec/repr_entropy``, ``grokspec/alarm`` (1 while the warning
  stands), ``grokspec/alarm_step`` and, with ``weights=``,
  ``grokspec/weight_entropy/<name>`` to every logger of the trainer
  (TensorBoard, CSV, W&B, MLflow, ...) at the trainer's global step — directly,
  so ``log_every_n_steps`` does not thin them out — and through
  ``pl_module.log`` into ``trainer.callback_metrics``, where ModelCheckpoint
  and EarlyStopping can watch them;
- keeps ``metrics.jsonl`` beside the checkpoints (the ModelCheckpoint's
  folder, else ``default_root_dir``; ``output_dir=`` chooses), one object
  per evaluation: step, repr_entropy, the alarm, and after each validation
  the trainer's ``callback_metrics`` (val_loss, val_acc, ...);
- with ``stop_after_alarm=N``, sets ``trainer.should_stop`` N steps after
  the warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grokspec.integrations._shared import MonitorSettings, Session, train_accuracy_from
from grokspec.monitor import DEFAULT_EVERY, MonitorRecord
from grokspec.monitor.alarm import MonitorAlarm
from grokspec.monitor.capture import Capture, Layer, Position

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("grokspec.integrations.lightning needs lightning: pip install 'grokspec[lightning]'") from error

__all__ = ["GrokspecCallback"]


class GrokspecCallback(pl.Callback):
    """The representation entropy H̃ live in a Lightning run (see the module notes).

    `probe`: the fixed inputs (a tensor, a dict of tensors, a DataLoader or
    a dataset slice), moved to the module's device at each evaluation; the
    module is called as ``pl_module(x)`` (or ``pl_module(**batch)``).
    `layer`, `position`, `capture`, `weights`, `center` and `alarm` as in
    :class:`grokspec.monitor.EntropyMonitor`; `train_accuracy`: the name of a
    logged metric holding the train accuracy, which ``alarm="plateau-fall"``
    (the project's default rule for training runs) needs.
    """

    def __init__(
        self,
        probe: object,
        *,
        every: int = DEFAULT_EVERY,
        layer: Layer = None,
        position: Position = "last",
        capture: Capture = "input",
        weights: bool | Sequence[str] = False,
        alarm: MonitorAlarm | str | None = None,
        center: bool = False,
        stop_after_alarm: int | None = None,
        train_accuracy: str | None = None,
        output_dir: str | Path | None = None,
    ):
        self.settings = MonitorSettings(
            probe, every, layer, position, capture, weights, alarm, center, stop_after_alarm, train_accuracy
        )
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.session: Session | None = None

    @property
    def records(self) -> tuple[MonitorRecord, ...]:
        """Every evaluation of this run so far."""
        return () if self.session is None else self.session.monitor.records

    def _directory(self, trainer: pl.Trainer) -> Path | None:
        if not trainer.is_global_zero:
            return None
        if self.output_dir is not None:
            return self.output_dir
        checkpoints = trainer.checkpoint_callback
        dirpath = getattr(checkpoints, "dirpath", None)
        return Path(dirpath) if dirpath else Path(trainer.default_root_dir)

    def _session(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Session:
        if self.session is None or self.session.monitor.model is not pl_module:
            self.session = Session(self.settings, pl_module, self._directory(trainer), trainer.global_step)
        return self.session

    def _measure(self, session: Session, trainer: pl.Trainer, pl_module: pl.LightningModule, *, module_log: bool) -> None:
        step = trainer.global_step
        train_acc = train_accuracy_from(trainer.callback_metrics, self.settings.train_accuracy)
        values = session.measure(step, train_acc).log_values()
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        if module_log:  # Lightning allows self.log only in some hooks (not at the start or end of training)
            for name, value in values.items():
                pl_module.log(name, value, on_step=True, on_epoch=False, logger=False, batch_size=1)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        session = self._session(trainer, pl_module)
        if trainer.global_step == 0:
            self._measure(session, trainer, pl_module, module_log=False)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        session = self._session(trainer, pl_module)
        step = trainer.global_step
        stop = session.should_stop(step)
        if session.monitor.due(step) or (stop and not session.measured(step)):
            self._measure(session, trainer, pl_module, module_log=True)
        if stop:
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        session = self._session(trainer, pl_module)
        if not session.measured(trainer.global_step):
            self._measure(session, trainer, pl_module, module_log=False)
        session.add_metrics(trainer.global_step, trainer.callback_metrics)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        session = self._session(trainer, pl_module)
        if not session.measured(trainer.global_step):
            self._measure(session, trainer, pl_module, module_log=False)
