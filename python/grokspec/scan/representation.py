"""The representation entropy H̃ of a grokspec run's checkpoints: its model
is rebuilt from config.json once per run, and each checkpoint's weights run
the probe set forward (SPEC §3's penultimate layer, §1's H̃).

config.json is validated by :class:`~grokspec.lab.config.TrainConfig`,
including its size budgets, before anything is allocated: a hostile run
folder (an absurd modulus, wrong types) costs a warning, not the machine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from grokspec.lab.rundir import RunDir
from grokspec.scan.formats import Checkpoint
from grokspec.scan.guards import display_name

__all__ = ["LazyProbe", "RepresentationProbe"]


class RepresentationProbe:
    """Rebuilds a grokspec run's model and its probe set."""

    def __init__(self, root: Path) -> None:
        import torch

        from grokspec.lab.models import build_model
        from grokspec.lab.tasks import make_dataset, split_indices

        self.config = RunDir(root).read_config()
        dataset = make_dataset(self.config.task, self.config.p)
        train_idx, _ = split_indices(len(dataset), self.config.train_fraction, self.config.seed)
        self.probe = dataset.inputs[train_idx[: self.config.probe_size]].unsqueeze(0)  # (1, probe, 2)
        self.model = build_model(self.config, dataset.vocab_size, [self.config.seed]).eval()
        self.torch: Any = torch

    def entropy(self, checkpoint: Checkpoint) -> tuple[float | None, tuple[int, int]]:
        from grokspec.spectral import representation_entropy

        names = self.model.parameter_names()
        arrays = checkpoint.arrays(names)
        self.model.load_seed_state_dict(0, {k: self.torch.from_numpy(v) for k, v in arrays.items()})
        with self.torch.no_grad():
            z = self.model.representation(self.probe)[0]  # (probe, d)
        value = representation_entropy(z.numpy())
        return (value if math.isfinite(value) else None), (int(z.shape[0]), int(z.shape[1]))


class LazyProbe:
    """The probe of one run, built on first use (a rescan that finds every
    checkpoint cached never rebuilds the model); a failure to build it is one
    warning, and the weights are still scanned."""

    def __init__(self, root: Path, run_name: str, enabled: bool) -> None:
        self._root, self._run_name, self._enabled = root, run_name, enabled
        self._probe: RepresentationProbe | None = None
        self._tried = False
        self.warning: str | None = None

    def get(self) -> RepresentationProbe | None:
        if not self._enabled:
            return None
        if not self._tried:
            self._tried = True
            try:
                self._probe = RepresentationProbe(self._root)
            except Exception as error:  # any hostile config.json: the weights are still worth scanning
                reason = display_name(" ".join(str(error).split()))[:300] or type(error).__name__
                self.warning = (
                    f"{self._run_name}: no representation entropy (cannot rebuild the model from config.json: {reason})"
                )
        return self._probe
