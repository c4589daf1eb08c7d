"""A grokspec run directory (SPEC §4) and its files.

    RUN_DIR/config.json                          the full TrainConfig
    RUN_DIR/metrics.jsonl                        one JSON object per evaluation
    RUN_DIR/checkpoints/step_00001000.safetensors   float32 weights
    RUN_DIR/checkpoints/resume.pt                optimizer and RNG state of the newest checkpoint

Every file is written to a temporary name and renamed, so a crash never
leaves a half-written file; metrics.jsonl is rewritten whole at each
evaluation for the same reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokspec.lab.config import CONFIG_FORMAT, ConfigMismatch, TrainConfig
from grokspec.io_atomic import atomic_path, write_text

if TYPE_CHECKING:  # imported where used: discovering runs must not load torch
    import torch

__all__ = ["RunDir", "CHECKPOINT_FORMAT", "is_run_dir"]

CHECKPOINT_FORMAT = "grokspec/1"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.safetensors$")


def is_run_dir(path: Path) -> bool:
    """A directory whose config.json is a grokspec config."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == CONFIG_FORMAT
    except (OSError, ValueError):
        return False


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

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}.safetensors"

    # --- config
    def read_config(self) -> TrainConfig:
        return TrainConfig.load(self.config_path)

    def claim(self, config: TrainConfig) -> bool:
        """Writes config.json into a new run dir, or checks that an existing
        one holds the same run. Returns True when the run already exists."""
        if self.config_path.exists():
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
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigMismatch(f"{self.path} exists and is not a grokspec run dir; choose an empty or new --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.config_path, config.to_json())
        return False

    # --- metrics
    def read_metrics(self) -> list[dict[str, Any]]:
        """The evaluations recorded so far (a trailing unparsable line, from a
        crash of an older writer, is ignored)."""
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

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

        return load_file(str(self.checkpoint_path(step)))

    def save_resume_state(self, state: dict[str, Any]) -> None:
        import torch

        with atomic_path(self.resume_path) as temporary:
            torch.save(state, temporary)

    def load_resume_state(self) -> dict[str, Any]:
        import torch

        # Only tensors and plain containers: loads with weights_only, runs no code.
        state = torch.load(self.resume_path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict)
        return state


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: write None for a missing measurement."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
