"""grokspec in the Hugging Face Trainer: ``GrokspecCallback``.

    from grokspec.integrations.transformers import GrokspecCallback

    trainer = Trainer(model, args, train_dataset=train, eval_dataset=test,
                      callbacks=[GrokspecCallback(probe={"input_ids": x_probe}, every=100)])

Every `every` optimizer steps (and at each of the Trainer's evaluations, at
step 0 and at the last step) the callback measures H̃ of the probe and
- logs ``grokspec/repr_entropy``, ``grokspec/alarm`` (1 while the warning
  stands), ``grokspec/alarm_step`` and, with ``weights=``,
  ``grokspec/weight_entropy/<name>`` through ``Trainer.log``: they reach
  every reporter the run has (TensorBoard, W&B, MLflow, the console) and
  ``state.log_history`` (trainer_state.json);
- keeps ``args.output_dir/metrics.jsonl`` beside the ``checkpoint-N/``
  folders, one object per evaluation: step, repr_entropy, the alarm, and the
  Trainer's evaluation metrics of that step (eval_loss, eval_accuracy, ...);
- with ``stop_after_alarm=N``, stops training N steps after the warning
  (evaluating and saving that last step as the Trainer does at its end).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grokspec.integrations._shared import MonitorSettings, Session, train_accuracy_from
from grokspec.monitor import DEFAULT_EVERY, MonitorRecord
from grokspec.monitor.alarm import MonitorAlarm
from grokspec.monitor.capture import Capture, Layer, Position

try:
    import transformers
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("grokspec.integrations.transformers needs transformers: pip install 'grokspec[transformers]'") from error

__all__ = ["GrokspecCallback"]


def _calling_trainer() -> transformers.Trainer | None:
    """The Trainer whose callback handler called us.

    A TrainerCallback receives the model, optimizer and dataloaders but not
    the Trainer, and the reporters (TensorBoard, W&B, ...) run before any
    user callback, so values added to another event's `logs` reach none of
    them. ``Trainer.log`` is the one door to all of them; the Trainer is the
    ``self`` of a frame up the stack (``self.callback_handler.on_...``).
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, transformers.Trainer):
                return owner
            frame = frame.f_back
        return None
    finally:
        del frame


class GrokspecCallback(TrainerCallback):
    """The representation entropy H̃ live in a Trainer run (see the module notes).

    `probe`: the fixed inputs (a dict of tensors such as ``{"input_ids": ...,
    "attention_mask": ...}``, a tensor, a DataLoader or a dataset slice),
    moved to the model's device at each evaluation. `layer`, `position`,
    `capture`, `weights`, `center` and `alarm` as in
    :class:`grokspec.monitor.EntropyMonitor`; `train_accuracy`: the name of a
    logged metric holding the train accuracy (e.g. from your own
    ``trainer.log({...})``), which ``alarm="plateau-fall"`` needs.
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
    ):
        self.settings = MonitorSettings(
            probe, every, layer, position, capture, weights, alarm, center, stop_after_alarm, train_accuracy
        )
        self.session: Session | None = None
        self._trainer: weakref.ref[transformers.Trainer] | None = None

    @property
    def records(self) -> tuple[MonitorRecord, ...]:
        """Every evaluation of this run so far."""
        return () if self.session is None else self.session.monitor.records

    def _session(self, args: TrainingArguments, state: TrainerState, model: Any) -> Session:
        if self.session is None or self.session.monitor.model is not model:
            directory = Path(args.output_dir) if state.is_world_process_zero and args.output_dir else None
            self.session = Session(self.settings, model, directory, state.global_step)
        if self._trainer is None or self._trainer() is None:
            trainer = _calling_trainer()
            self._trainer = None if trainer is None else weakref.ref(trainer)
        return self.session

    def _measure(self, session: Session, state: TrainerState) -> None:
        name = self.settings.train_accuracy
        # The newest value of the metric in the log history (the Trainer's own log and trainer.log calls).
        latest = next((entry for entry in reversed(state.log_history) if name is not None and name in entry), {})
        record = session.measure(state.global_step, train_accuracy_from(latest, name))
        trainer = None if self._trainer is None else self._trainer()
        if trainer is not None:
            trainer.log(record.log_values())
        else:  # called outside a Trainer: the log history still gets the values
            state.log_history.append({**record.log_values(), "step": state.global_step})

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        session = self._session(args, state, model)
        if state.global_step == 0:
            self._measure(session, state)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        session = self._session(args, state, model)
        step = state.global_step
        stop = session.should_stop(step) and not control.should_training_stop
        if session.monitor.due(step) or ((stop or step >= state.max_steps) and not session.measured(step)):
            self._measure(session, state)
        if stop:
            control.should_training_stop = True
            # As the Trainer does at its last step: evaluate and save the state it stops in.
            if args.eval_strategy == "steps" and not control.should_evaluate:
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        session = self._session(args, state, model)
        if not session.measured(state.global_step):  # every evaluation gets its H̃
            self._measure(session, state)
        session.add_metrics(state.global_step, metrics or {})
