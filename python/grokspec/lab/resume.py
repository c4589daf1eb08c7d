"""The resume state of a seed-batched run: per seed, its slice of the AdamW
moments and its batch and mixing generators, saved beside each checkpoint
(RUN_DIR/checkpoints/resume.pt) so a resumed run reproduces the
uninterrupted one."""

from __future__ import annotations

from typing import Any

import torch

from grokspec.lab.data import SeedBatchedData
from grokspec.lab.models import SeedBatchedModel

__all__ = ["resume_state", "restore_resume_states"]


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


def resume_state(step: int, model: SeedBatchedModel, optimizer: torch.optim.Optimizer, data: SeedBatchedData, index: int) -> dict[str, Any]:
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
