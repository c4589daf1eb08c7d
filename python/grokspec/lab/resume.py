"""The resume state of a seed-batched run: per seed, its slice of the AdamW
moments and its batch and mixing generators, saved beside each checkpoint
(RUN_DIR/checkpoints/resume.pt, the one before it in resume.previous.pt) so
a resumed run reproduces the uninterrupted one.

:func:`find_resume_point` picks the newest step at which every run dir has
both a readable checkpoint and a resume state of that same step; a crash
between the two files falls back to the pair before it, and when no
consistent pair exists it says so (:class:`ResumeError`) instead of
restarting over existing checkpoints."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from grokspec.lab.data import SeedBatchedData
from grokspec.lab.models import SeedBatchedModel
from grokspec.lab.rundir import EVALUATION_FIELDS, RunDir

__all__ = [
    "MetricsRepair",
    "ResumeError",
    "ResumePoint",
    "check_resume_state",
    "find_resume_point",
    "repair_metrics",
    "restore_resume_states",
    "resume_state",
]


def _optimizer_slices(model: SeedBatchedModel, optimizer: torch.optim.Optimizer, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, param in zip(model.parameter_names(), model.parameters()):
        state = optimizer.state.get(param)
        if state:
            out[name] = {
                "step": state["step"].detach().cpu().clone(),
                "exp_avg": state["exp_avg"][index].detach().cpu().clone(),
                "exp_avg_sq": state["exp_avg_sq"][index].detach().cpu().clone(),
            }
    return out


def resume_state(
    step: int, model: SeedBatchedModel, optimizer: torch.optim.Optimizer, data: SeedBatchedData, index: int
) -> dict[str, Any]:
    """Seed `index`'s resume state at `step`."""
    return {
        "step": step,
        "optimizer": _optimizer_slices(model, optimizer, index),
        "batch_rng": data.batch_generators[index].get_state(),
        "mixing_rng": data.mixing_generators[index].get_state(),
    }


def restore_resume_states(
    states: list[dict[str, Any]], model: SeedBatchedModel, optimizer: torch.optim.Optimizer, data: SeedBatchedData
) -> None:
    """Loads every seed's optimizer moments and generators (model weights come
    from the checkpoints)."""
    for name, param in zip(model.parameter_names(), model.parameters()):
        slices = [state["optimizer"].get(name) for state in states]
        if any(s is None for s in slices):
            continue
        optimizer.state[param] = {
            "step": slices[0]["step"].clone(),
            "exp_avg": torch.stack([s["exp_avg"] for s in slices]).to(param.device, param.dtype),
            "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in slices]).to(param.device, param.dtype),
        }
    for generator, state in zip(data.batch_generators, states):
        generator.set_state(state["batch_rng"])
    for generator, state in zip(data.mixing_generators, states):
        generator.set_state(state["mixing_rng"])


# --- choosing where to resume ----------------------------------------------------


class ResumeError(ValueError):
    """A run dir holds checkpoints, but no step can be resumed from consistently."""


@dataclass(frozen=True)
class ResumePoint:
    """The newest step every run dir can resume from, and what it takes."""

    step: int
    #: Per run dir: its resume state and its checkpoint's weights at `step`.
    states: tuple[dict[str, Any], ...]
    weights: tuple[dict[str, torch.Tensor], ...]
    #: Why newer checkpoints were passed over (for the log).
    notes: tuple[str, ...]


def check_resume_state(state: dict[str, Any], model: SeedBatchedModel) -> None:
    """ValueError unless `state` fits `model` (names and shapes of the AdamW
    moments, generator states as byte tensors)."""
    shapes = {name: tuple(p.shape[1:]) for name, p in zip(model.parameter_names(), model.parameters())}
    optimizer = state.get("optimizer")
    if not isinstance(optimizer, dict):
        raise ValueError("no optimizer state")
    for name, moments in optimizer.items():
        if name not in shapes or not isinstance(moments, dict):
            raise ValueError(f"optimizer state for an unknown parameter {str(name)[:60]!r}")
        for key in ("exp_avg", "exp_avg_sq"):
            value = moments.get(key)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes[name]:
                raise ValueError(f"optimizer state {name}.{key} does not fit the model")
        if not isinstance(moments.get("step"), torch.Tensor):
            raise ValueError(f"optimizer state {name}.step is missing")
    for key in ("batch_rng", "mixing_rng"):
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
            raise ValueError(f"no {key} generator state")


def _states_by_step(run_dir: RunDir, notes: list[str]) -> dict[int, dict[str, Any]]:
    """The run dir's readable resume states (resume.pt first), by their step."""
    states: dict[int, dict[str, Any]] = {}
    for path in (run_dir.resume_path, run_dir.previous_resume_path):
        if not os.path.lexists(path):
            continue
        try:
            state = run_dir.load_resume_state(path)
        except ValueError as error:
            notes.append(f"{run_dir.path.name}: {error}")
            continue
        states.setdefault(int(state["step"]), state)
    return states


def _load_pair(
    run_dirs: list[RunDir], states: list[dict[str, Any]], step: int, model: SeedBatchedModel
) -> tuple[dict[str, torch.Tensor], ...]:
    weights = []
    for run_dir, state in zip(run_dirs, states):
        check_resume_state(state, model)
        weights.append(run_dir.load_checkpoint(step))
    return tuple(weights)


def find_resume_point(run_dirs: list[RunDir], model: SeedBatchedModel) -> ResumePoint:
    """The newest step at which every run dir has a readable checkpoint and a
    resume state of that same step. ResumeError (naming what was found) when
    there is none: training never silently restarts over existing checkpoints."""
    notes: list[str] = []
    candidates = [_states_by_step(rd, notes) for rd in run_dirs]
    checkpoints = [{step for step, path in rd.list_checkpoints() if path.is_file()} for rd in run_dirs]
    newest = max((max(c, default=-1) for c in checkpoints), default=-1)
    consistent = set.intersection(*(set(states) & steps for states, steps in zip(candidates, checkpoints)))
    for step in sorted(consistent, reverse=True):
        states = [c[step] for c in candidates]
        try:
            weights = _load_pair(run_dirs, states, step, model)
        except (ValueError, OSError, RuntimeError) as error:  # a damaged checkpoint or state: try an older pair
            notes.append(f"step {step} cannot be resumed from: {str(error)[:160]}")
            continue
        if step < newest:
            notes.insert(
                0, f"the newest checkpoint (step {newest}) has no matching resume state in every run; resuming from step {step}"
            )
        return ResumePoint(step, tuple(states), weights, tuple(notes))
    empty = [rd.path.name for rd, steps in zip(run_dirs, checkpoints) if not steps]
    detail = f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no checkpoint" if empty else "; ".join(notes[-3:])
    raise ResumeError(
        f"cannot resume {run_dirs[0].path if len(run_dirs) == 1 else run_dirs[0].path.parent}: no step has both a readable "
        f"checkpoint and a matching resume state in every run ({detail or 'no resume state found'}); the newest checkpoint is "
        f"step {newest}. The checkpoints and metrics were left as they are: delete the run folder to start over, "
        "or choose a new --out"
    )


@dataclass(frozen=True)
class MetricsRepair:
    """metrics.jsonl as a resumed run continues it."""

    #: The evaluations up to the resume step (null measurements as NaN).
    records: tuple[dict[str, Any], ...]
    #: Damaged lines dropped, evaluations missing (for the log).
    notes: tuple[str, ...]
    #: Whether the file differs from `records` and must be rewritten.
    changed: bool


def repair_metrics(run_dir: RunDir, step: int, eval_every: int) -> MetricsRepair:
    """The run's evaluations up to `step`: damaged lines dropped and
    reported, evaluations it lacks reported (they cannot be recomputed)."""
    reading = run_dir.read_metrics_checked(EVALUATION_FIELDS)
    # null is how NaN is written; the event rules read NaN as a missing point.
    nan_for_null = [{k: (math.nan if v is None and k in EVALUATION_FIELDS else v) for k, v in r.items()} for r in reading.records]
    kept = tuple(r for r in nan_for_null if r["step"] <= step)
    name, notes = run_dir.path.name, []
    if reading.problems:
        shown = "; ".join(reading.problems[:3]) + ("; …" if len(reading.problems) > 3 else "")
        notes.append(f"{name}/metrics.jsonl: {len(reading.problems)} damaged line(s) dropped ({shown})")
    missing = sorted(set(range(0, step + 1, eval_every)) - {r["step"] for r in kept})
    if missing:
        listed = ", ".join(map(str, missing[:5])) + (", …" if len(missing) > 5 else "")
        notes.append(f"{name}/metrics.jsonl lacks {len(missing)} evaluation(s) (steps {listed}), which cannot be recomputed")
    return MetricsRepair(kept, tuple(notes), bool(reading.problems) or len(kept) != len(reading.records))
