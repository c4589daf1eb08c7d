"""What a scan computes and how it reads the results: :class:`ScanOptions`."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grokspec import __version__
from grokspec.events import GROK_LEVEL

__all__ = ["ScanOptions"]


#: Bumped whenever what is read from a checkpoint changes for the same file and options
#: (which tensors, under which names, which step): cached results of an older reader
#: are then recomputed rather than reused. 2: Composer's ``state``, ultralytics' ``ema``;
#: 3: training state known by its content under any key (a GAN's ``optimizer_G``).
READER_REVISION = 3


@dataclass(frozen=True)
class ScanOptions:
    #: Threshold of the representation entropy (None: the calibration's, else 0.61).
    threshold: float | None = None
    power: float = 2.0
    normalize: str = "dim"
    method: str = "auto"
    #: Tensor-name globs to keep (all if empty) and to drop.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: Skip matrices whose shorter side is below this.
    min_dim: int = 2
    #: For grokspec runs, compute H̃ by a forward pass on the probe set.
    representation: bool = True
    #: Extra metrics (CSV or JSONL with a `step` column, optionally `run`).
    metrics_file: Path | None = None
    calibration: Path | None = None
    trust_pickle: bool = False
    threads: int | None = None
    #: The accuracy that defines T_grok (None: the first of test_acc,
    #: eval_accuracy, ... that a run has).
    grok_metric: str | None = None
    grok_level: float = GROK_LEVEL
    persist: int = 1
    #: Estimate each matrix's entropy (grokspec.approx, with ``entropy_error``
    #: rows) instead of computing it exactly.
    approx: bool = False
    #: Keep every K-th checkpoint of each series, in step order (1: all).
    every: int = 1
    #: Keep checkpoints whose step lies in [first, last] (None: unbounded).
    steps: tuple[int | None, int | None] | None = None
    #: Where matrices are computed: "local", or "ray" (a Ray cluster at
    #: ``ray_address``; None starts a local one). See docs/DISTRIBUTED.md.
    executor: str = "local"
    ray_address: str | None = None

    def keeps_tensor(self, name: str) -> bool:
        """Whether --include/--exclude keep the tensor called `name`."""
        if self.include and not any(fnmatch.fnmatchcase(name, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in self.exclude)

    def uses_logged_weight_entropies(self) -> bool:
        """Whether weight entropies a training log holds (grokspec's
        ``--log-weight-entropies``: exact, power 2, normalized by ln min(m, n),
        every matrix of at least 2 x 2) are the numbers this scan computes."""
        return self.power == 2.0 and self.normalize == "dim" and not self.approx and self.min_dim <= 2

    def fingerprint(self) -> dict[str, Any]:
        """The options that change a checkpoint's numbers (the cache key)."""
        return {
            "power": self.power,
            "normalize": self.normalize,
            "method": self.method,
            "include": list(self.include),
            "exclude": list(self.exclude),
            "min_dim": self.min_dim,
            "representation": self.representation,
            "trust_pickle": self.trust_pickle,
            "version": __version__,
            "reader": READER_REVISION,
            # Only when set, so that exact scans keep their cache keys.
            **({"approx": True} if self.approx else {}),
        }

    def as_json(self) -> dict[str, Any]:
        """The options as JSON values (paths as strings, tuples as lists)."""
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
