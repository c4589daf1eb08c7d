"""A grokspec run directory (SPEC §4) and its files.

    RUN_DIR/config.json                          the full TrainConfig
    RUN_DIR/metrics.jsonl                        one JSON object per evaluation
    RUN_DIR/checkpoints/step_00001000.safetensors   float32 weights
    RUN_DIR/checkpoints/resume.pt                optimizer and RNG state of the newest checkpoint
    RUN_DIR/checkpoints/resume.previous.pt       the same for the checkpoint before it

Every file is written to a temporary name and renamed, so a crash never
leaves a half-written file; metrics.jsonl is rewritten whole at each
evaluation for the same reason. Each resume state records its step, and
the one before the newest is kept, so a crash between writing a checkpoint
and its resume state (or between the seeds of a multi-seed run) still
leaves a consistent checkpoint/resume-state pair to resume from.

Reading is defensive, because a run folder found by a scan may hold
anything: config.json and metrics.jsonl are read only when they are
regular files of a sane size, and metrics lines that are not JSON objects
with an integer step are reported, not trusted.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokspec.io_atomic import atomic_path, write_text
from grokspec.lab.config import ConfigMismatch, TrainConfig, read_config_json

if TYPE_CHECKING:  # imported where used: discovering runs must not load torch
    import torch

__all__ = ["CHECKPOINT_FORMAT", "EVALUATION_FIELDS", "METRICS_SIZE_LIMIT", "MetricsReading", "RunDir", "is_run_dir"]

CHECKPOINT_FORMAT = "grokspec/1"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.safetensors$")
#: A metrics.jsonl of a million evaluations is ~200 MB.
METRICS_SIZE_LIMIT = 2**30
#: The fields training writes for every evaluation (a resumed run needs them all).
EVALUATION_FIELDS = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "param_norm", "repr_entropy")


def is_run_dir(path: Path) -> bool:
    """A directory whose config.json is a grokspec config (never blocks: a
    config.json that is a FIFO or a device is not read)."""
    try:
        read_config_json(path / "config.json")
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class MetricsReading:
    """metrics.jsonl as read: the usable evaluations and what was wrong with the rest."""

    records: tuple[dict[str, Any], ...]
    #: One entry per damaged line ("line 7: not JSON"), or for the whole file.
    problems: tuple[str, ...]


def _line_problem(line: bytes, required: tuple[str, ...]) -> tuple[dict[str, Any] | None, str]:
    """(record, "") for a usable line, (None, reason) otherwise."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except RecursionError:
        return None, "nested too deeply"
    except ValueError:
        return None, "not JSON"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not an object"
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 2**63:
        return None, "no integer step"
    for name in required:
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return None, f"{name} is not a number"
        if name not in record:
            return None, f"no {name}"
    return record, ""


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def resume_path(self) -> Path:
        return self.checkpoints / "resume.pt"

    @property
    def previous_resume_path(self) -> Path:
        return self.checkpoints / "resume.previous.pt"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}.safetensors"

    # --- config
    def read_config(self) -> TrainConfig:
        return TrainConfig.load(self.config_path)

    def claim(self, config: TrainConfig) -> bool:
        """Writes config.json into a new run dir, or checks that an existing
        one holds the same run. Returns True when the run already exists."""
        if os.path.lexists(self.config_path):
            existing = self.read_config()
            differences = existing.identity_differences(config)
            if differences:
                raise ConfigMismatch(
                    f"{self.path} holds another run (differs in {'; '.join(differences)}); "
                    "choose a new --out, or delete it to start over"
                )
            if existing != config:
                write_text(self.config_path, config.to_json())
            return True
        if self.path.exists() and not self.path.is_dir():
            raise ConfigMismatch(f"{self.path} is a file, not a folder; choose another --out")
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigMismatch(f"{self.path} exists and is not a grokspec run dir; choose an empty or new --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.config_path, config.to_json())
        return False

    # --- metrics
    def read_metrics_checked(self, required: tuple[str, ...] = ()) -> MetricsReading:
        """Every usable evaluation, and one problem per line that is not a JSON
        object with an integer step (and the `required` fields, numbers or null)."""
        try:
            status = os.stat(self.metrics_path)
        except FileNotFoundError:
            return MetricsReading((), ())
        except OSError as error:
            return MetricsReading((), (f"cannot read it: {error.strerror or error}",))
        if not stat.S_ISREG(status.st_mode) or status.st_size > METRICS_SIZE_LIMIT:
            return MetricsReading((), ("not a regular file of at most 1 GB",))
        try:
            data = self.metrics_path.read_bytes()
        except OSError as error:
            return MetricsReading((), (f"cannot read it: {error.strerror or error}",))
        records, problems = [], []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            record, problem = _line_problem(line, required)
            if record is None:
                problems.append(f"line {number}: {problem}")
            else:
                records.append(record)
        return MetricsReading(tuple(records), tuple(problems))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The usable evaluations recorded so far (see read_metrics_checked)."""
        return list(self.read_metrics_checked().records)

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(_json_safe(r), allow_nan=False) + "\n" for r in records)
        write_text(self.metrics_path, text)

    # --- checkpoints
    def list_checkpoints(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        found = []
        for path in self.checkpoints.iterdir():
            match = _CHECKPOINT_NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def save_checkpoint(self, step: int, weights: dict[str, torch.Tensor]) -> Path:
        from safetensors.torch import save_file

        destination = self.checkpoint_path(step)
        with atomic_path(destination) as temporary:
            save_file(weights, str(temporary), metadata={"step": str(step), "format": CHECKPOINT_FORMAT})
        return destination

    def load_checkpoint(self, step: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        path = self.checkpoint_path(step)
        if not path.is_file():  # a FIFO or a folder with a checkpoint's name would block or fail obscurely
            raise ValueError(f"{path.name} is not a regular file")
        return load_file(str(path))

    def save_resume_state(self, state: dict[str, Any]) -> None:
        """Writes the newest resume state; the one it replaces becomes
        resume.previous.pt, so a crash before this write completes leaves
        the previous checkpoint's pair intact."""
        import torch

        if self.resume_path.is_file():
            os.replace(self.resume_path, self.previous_resume_path)
        with atomic_path(self.resume_path) as temporary:
            torch.save(state, temporary)

    def load_resume_state(self, path: Path | None = None) -> dict[str, Any]:
        """A resume state (resume.pt by default); ValueError if it is not one."""
        import torch

        path = self.resume_path if path is None else path
        if not path.is_file():
            raise ValueError(f"{path.name} is not a regular file")
        try:
            # Only tensors and plain containers: loads with weights_only, runs no code.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a damaged file
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{path.name} is damaged ({first[:160]})") from None
        if not isinstance(state, dict):
            raise ValueError(f"{path.name} is not a grokspec resume state (a {type(state).__name__})")
        step = state.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"{path.name} is not a grokspec resume state (no step)")
        return state


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: write None for a missing measurement."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
