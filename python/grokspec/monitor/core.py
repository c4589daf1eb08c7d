"""EntropyMonitor: the paper's order parameter H̃, live, in a plain torch loop.

monitor = EntropyMonitor(model, probe=x_probe, every=100)
for step in range(1, steps + 1):
    ...  # one optimizer step
    record = monitor.step(step)  # a MonitorRecord every 100 steps, else None
    if monitor.should_stop(step, after=1000):
        break
"""

from __future__ import annotations

import fnmatch
import logging
import numbers
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from grokspec.monitor.alarm import AlarmConfig, MonitorAlarm, _alarm, needs_train_accuracy, resolve_alarm, rule_name
from grokspec.monitor.capture import Capture, Layer, Position, representation, resolve_site
from grokspec.monitor.errors import MonitorError
from grokspec.monitor.probe import Probe
from grokspec.monitor.record import MonitorRecord, unwrap_scalar
from grokspec.scan.formats import matrix_shape
from grokspec.spectral import representation_entropy, spectral_entropy

__all__ = ["DEFAULT_EVERY", "EntropyMonitor"]

#: Steps between evaluations by default: grokspec train's eval_every.
DEFAULT_EVERY = 100
logger = logging.getLogger("grokspec.monitor")


def _model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    """The device of the model's parameters and its floating dtype."""
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
    return device, dtype


class EntropyMonitor:
    """Measures H̃ = representation_entropy(z) of a fixed probe every `every`
    steps, optionally the spectral entropy of weight matrices, and applies
    the warning rule (`alarm`) to the series so far.

    - `layer`: None (the readout's input, found automatically), a module's
      dotted name, an ``nn.Module`` of the model, or a function
      ``layer(model, batch) -> z`` (for models whose readout is not a module,
      e.g. grokspec's seed-batched models: ``lambda m, x: m.representation(x)[0]``).
    - `capture`: read the module's ``"input"`` (default) or ``"output"``.
    - `position`: for sequence representations (B, T, d): the final position
      (``"last"``), the mean (``"mean"``) or every position (``"all"``); with
      an ``attention_mask`` in a dict probe, only unpadded positions count.
    - `weights`: False, True (every parameter with ≥ 2 dimensions, as a scan
      reads them) or name globs (``["*.weight"]``).
    - `center`: subtract the column means of z first (SPEC §1; default off).
    - `alarm`: the warning rule — an :class:`AlarmConfig` (SPEC §1's crossing,
      the default, or collapse) or a rule of :mod:`grokspec.alarms` or its
      name (``"plateau-fall"``, the project's default for training runs:
      pass the train accuracy to :meth:`step` / :meth:`measure` so that it
      knows when the training set is memorized).

    Each evaluation runs in ``torch.no_grad()`` with the model in eval mode
    and restores every module's train/eval flag afterwards; no hook outlives it.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        probe: object,
        layer: Layer = None,
        every: int = DEFAULT_EVERY,
        position: Position = "last",
        capture: Capture = "input",
        weights: bool | Sequence[str] = False,
        alarm: MonitorAlarm | str | None = None,
        center: bool = False,
        on_alarm: Callable[[MonitorRecord], None] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise MonitorError(f"every must be a positive number of steps, got {every!r}")
        if position not in ("last", "mean", "all"):
            raise MonitorError(f"position must be 'last', 'mean' or 'all', got {position!r}")
        self.model = model
        self.probe = Probe(probe)
        self.site = resolve_site(model, layer, capture)
        self.every = every
        self.position: Position = position
        self.alarm_config = resolve_alarm(alarm)
        self._said_train_accuracy = False
        self.center = center
        self.on_alarm = on_alarm
        self._weight_names = self._select_weights(weights)
        self._records: list[MonitorRecord] = []

    def _select_weights(self, weights: bool | Sequence[str]) -> list[str]:
        if weights is False:
            return []
        if isinstance(weights, str):
            weights = [weights]
        matrices = [name for name, p in self.model.named_parameters() if matrix_shape(tuple(p.shape)) is not None]
        chosen = matrices if weights is True else [n for n in matrices if any(fnmatch.fnmatchcase(n, g) for g in weights)]
        if not chosen:
            raise MonitorError(f"no weight matrix of {type(self.model).__name__} matches {weights!r}")
        return chosen

    # --- the series so far
    @property
    def records(self) -> tuple[MonitorRecord, ...]:
        return tuple(self._records)

    @property
    def latest(self) -> MonitorRecord | None:
        return self._records[-1] if self._records else None

    def restore(self, records: Sequence[MonitorRecord]) -> None:
        """Continues an earlier series (a resumed run): later warnings see it."""
        self._records = sorted(records, key=lambda r: r.step)

    def due(self, step: int) -> bool:
        return step % self.every == 0 and (self.latest is None or self.latest.step != step)

    def step(self, step: int, *, train_acc: float | None = None) -> MonitorRecord | None:
        """Call after each training step with the number of steps done (and,
        for rules that wait for memorization, the current train accuracy): an
        evaluation every `every` steps (a MonitorRecord), otherwise None."""
        return self.measure(step, train_acc=train_acc) if self.due(step) else None

    def should_stop(self, step: int, after: int) -> bool:
        """True once `step` is at least `after` steps past the current warning."""
        latest = self.latest
        return latest is not None and latest.alarm_step is not None and step >= latest.alarm_step + after

    # --- one evaluation
    def measure(self, step: int, *, train_acc: float | None = None) -> MonitorRecord:
        """Evaluates now, at training step `step`, whatever the interval."""
        started = time.perf_counter()
        train_acc = self._train_accuracy(train_acc)
        z = self._representation()  # (N, d)
        value = representation_entropy(z, center=self.center)
        weights = self._weight_entropies()
        earlier = [r for r in self._records if r.step != step]
        steps = [r.step for r in earlier] + [step]
        values = [r.repr_entropy for r in earlier] + [value]
        accuracies = [r.train_acc for r in earlier] + [train_acc]
        previous = self.latest.alarm_step if self.latest is not None else None
        alarm = _alarm(steps, values, self.alarm_config, accuracies)
        alarm_step = None if alarm is None else alarm[1]
        record = MonitorRecord(
            step=step,
            repr_entropy=value,
            n_probe=int(z.shape[0]),
            width=int(z.shape[1]),
            alarm_rule=None if alarm is None else alarm[0],
            alarm_step=alarm_step,
            alarm_raised=alarm_step == step and previous != step,
            weight_entropies=weights,
            seconds=time.perf_counter() - started,
            train_acc=train_acc,
        )
        self._records = [r for r in self._records if r.step != step] + [record]
        if record.alarm_raised:
            self._warn(record)
        return record

    def _train_accuracy(self, value: object) -> float | None:
        """`value` as a float (a 0-d tensor or numpy scalar too), or None."""
        value = unwrap_scalar(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise MonitorError(f"train_acc must be a number or None, got {type(value).__name__}")
        train_acc = None if value is None else float(value)
        if train_acc is None and needs_train_accuracy(self.alarm_config) and not self._said_train_accuracy:
            self._said_train_accuracy = True  # once: the rule stays unarmed, which is not an error
            logger.warning(
                "grokspec: the %s rule arms once train accuracy reaches 0.99; pass train_acc= to "
                "step()/measure() (the callbacks: train_accuracy='<logged metric>'), or it never warns",
                rule_name(self.alarm_config),
            )
        return train_acc

    def _representation(self) -> torch.Tensor:
        model = self.model
        modes = [(module, module.training) for module in model.modules()]
        device, dtype = _model_placement(model)
        try:
            model.eval()
            with torch.no_grad():
                parts = [representation(model, self.site, batch, self.position) for batch in self.probe.on(device, dtype)]
        finally:
            model.train(modes[0][1])  # runs any train() override, then each module gets its own flag back
            for module, mode in modes:
                module.training = mode
        widths = {int(p.shape[1]) for p in parts}
        if len(widths) > 1:
            raise MonitorError(f"the probe's batches gave representations of different widths {sorted(widths)}")
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _weight_entropies(self) -> dict[str, float]:
        if not self._weight_names:
            return {}
        parameters = dict(self.model.named_parameters())
        matrices = []
        for name in self._weight_names:
            tensor = parameters[name].detach()
            shape = matrix_shape(tuple(tensor.shape))
            assert shape is not None
            matrices.append(tensor.reshape(shape))
        entropies = np.atleast_1d(spectral_entropy(matrices, power=2, normalize="dim"))
        return {name: float(value) for name, value in zip(self._weight_names, entropies)}

    def _warn(self, record: MonitorRecord) -> None:
        if self.on_alarm is not None:
            self.on_alarm(record)
        rule = self.alarm_config
        if not isinstance(rule, AlarmConfig):
            why = f"fired: {rule.label()}"
        elif rule.rule == "crossing":
            why = f"fell below {rule.threshold}"
        else:
            why = f"fell by more than {rule.drop} over {rule.window} evaluations"
        logger.warning(
            "grokspec: step %d: representation entropy %.3f %s; the paper finds generalization ~1,000 steps later",
            record.step,
            record.repr_entropy,
            why,
        )
