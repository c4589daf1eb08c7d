"""The budgets of a reproduction (``--scale``): cpu, gpu, paper and smoke.

Every run logs H̃, the accuracies and each weight matrix's entropy at every
evaluation (``log_weight_entropies``), so the analysis needs only
metrics.jsonl; checkpoints are rare (``checkpoint_every`` beyond the budget:
the first and last step only), which keeps a reproduction's output small.
Every experiment evaluates every 100 steps, so that rules that count
evaluations see the same time scale in every run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from grokspec.lab.config import TrainConfig

__all__ = ["CONTROL_NAMES", "SCALES", "Scale", "control_config", "task_config"]

#: Negative controls a reproduction can run (``--controls``).
CONTROL_NAMES = ("mlp", "wd0", "shuffled-train", "shuffled-test")


@dataclass(frozen=True)
class Scale:
    """Budgets of one reproduction."""

    name: str
    description: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    #: The companion regime (experiment 1) and S5's train fraction.
    transformer: TrainConfig
    s5_fraction: float
    #: The plateau regime: its seeds, and which of them tune the alarm rules.
    plateau: TrainConfig
    plateau_seeds: tuple[int, ...]
    plateau_tuning_seeds: tuple[int, ...]
    #: Negative controls run by default, their seeds and tuning seeds.
    controls: tuple[str, ...]
    control_steps: int
    control_seeds: tuple[int, ...]
    control_tuning_seeds: tuple[int, ...]
    #: The MLP control's setting, and the transformer at the same setting.
    mlp: TrainConfig
    comparison: TrainConfig
    comparison_seeds: tuple[int, ...]
    #: The intervention (seeds of experiment 1's add runs).
    intervention_seeds: tuple[int, ...]
    intervention_steps: int
    mixing_fraction: float


def task_config(scale: Scale, task: str) -> TrainConfig:
    fraction = scale.s5_fraction if task == "s5" else scale.transformer.train_fraction
    return dataclasses.replace(scale.transformer, task=task, train_fraction=fraction)


def control_config(scale: Scale, name: str) -> TrainConfig:
    """A negative control: a run that cannot (or does not) grok within the budget."""
    steps = scale.control_steps
    if name == "mlp":
        return dataclasses.replace(scale.mlp, steps=steps)
    if name == "wd0":
        return dataclasses.replace(scale.plateau, weight_decay=0.0, steps=steps)
    if name in ("shuffled-train", "shuffled-test"):
        return dataclasses.replace(scale.plateau, shuffle_labels=name.removeprefix("shuffled-"), steps=steps)
    raise ValueError(f"unknown control {name!r} (choose from {', '.join(CONTROL_NAMES)})")


_NO_CHECKPOINTS = 10**9  # only the first and the last step are checkpointed
_COMPANION = TrainConfig(
    task="add",
    p=97,
    train_fraction=0.5,
    batch_size=512,
    steps=6000,
    eval_every=100,
    checkpoint_every=_NO_CHECKPOINTS,
    stop_after_grok=500,
    log_weight_entropies=True,
    device="auto",
)
_PLATEAU = dataclasses.replace(_COMPANION, train_fraction=0.3, steps=12000, stop_after_grok=300)
_MLP = TrainConfig(
    task="add",
    p=41,
    train_fraction=0.3,
    model="mlp",
    batch_size=512,
    steps=12000,
    eval_every=100,
    checkpoint_every=_NO_CHECKPOINTS,
    log_weight_entropies=True,
    device="auto",
)
_COMPARISON = dataclasses.replace(_MLP, model="transformer", steps=6000)

_TINY = TrainConfig(
    p=11,
    train_fraction=0.8,
    d_model=32,
    n_heads=2,
    d_ff=64,
    batch_size=0,
    lr=1e-2,
    steps=120,
    eval_every=20,
    checkpoint_every=_NO_CHECKPOINTS,
    probe_size=60,
    log_weight_entropies=True,
    device="cpu",
)

SCALES = {
    "cpu": Scale(
        name="cpu",
        description=(
            "sized for about an hour of 2 CPU cores (minutes on a GPU), one seed-batched training per experiment: "
            "the companion setup (train fraction 0.5) on add, mul and sub, 4 seeds each, stopping 500 steps after "
            "grokking; the plateau regime (add, train fraction 0.3, 12 seeds, the first 2 for tuning, 8,000-step "
            "budget); negative controls of 5,000 steps, 6 seeds each (the first for tuning); evaluations every 100 "
            "steps; intervention on 3 seeds."
        ),
        tasks=("add", "mul", "sub"),
        seeds=tuple(range(4)),
        transformer=_COMPANION,
        s5_fraction=0.1,
        plateau=dataclasses.replace(_PLATEAU, steps=8000),
        plateau_seeds=tuple(range(12)),
        plateau_tuning_seeds=(0, 1),
        controls=("mlp", "wd0", "shuffled-train"),
        control_steps=5000,
        control_seeds=tuple(range(6)),
        control_tuning_seeds=(0,),
        mlp=_MLP,
        comparison=_COMPARISON,
        comparison_seeds=(0, 1),
        intervention_seeds=(0, 1, 2),
        intervention_steps=6000,
        mixing_fraction=0.5,
    ),
    "gpu": Scale(
        name="gpu",
        description=(
            "one seed-batched training per experiment, all at once (one H100 and 16 cores: under 3 minutes of "
            "training): the companion setup (train fraction 0.5) on add, mul and sub, 10 seeds each, stopping 500 "
            "steps after grokking; the plateau regime (add, train fraction 0.3, 25 seeds, the first 5 for tuning, "
            "12,000-step budget); negative controls of 12,000 steps, 6 seeds each (the first for tuning); evaluations "
            "every 100 steps; intervention on 5 seeds."
        ),
        tasks=("add", "mul", "sub"),
        seeds=tuple(range(10)),
        transformer=_COMPANION,
        s5_fraction=0.1,
        plateau=_PLATEAU,
        plateau_seeds=tuple(range(25)),
        plateau_tuning_seeds=tuple(range(5)),
        controls=("mlp", "wd0", "shuffled-train"),
        control_steps=12000,
        control_seeds=tuple(range(6)),
        control_tuning_seeds=(0,),
        mlp=_MLP,
        comparison=_COMPARISON,
        comparison_seeds=(0, 1, 2),
        intervention_seeds=(0, 1, 2, 3, 4),
        intervention_steps=8000,
        mixing_fraction=0.5,
    ),
    "paper": Scale(
        name="paper",
        description=(
            "the paper's budgets (50,000 steps, evaluations every 200, S5 at train fraction 0.1, MLP control "
            "80,000 steps, intervention on 30 seeds); meant for a GPU."
        ),
        tasks=("add", "mul", "sub", "s5"),
        seeds=tuple(range(10)),
        transformer=dataclasses.replace(_COMPANION, steps=50000, eval_every=200, stop_after_grok=3000),
        s5_fraction=0.1,
        plateau=dataclasses.replace(_PLATEAU, steps=50000, eval_every=200, stop_after_grok=1000),
        plateau_seeds=tuple(range(30)),
        plateau_tuning_seeds=tuple(range(10)),
        controls=("mlp", "wd0", "shuffled-train"),
        control_steps=50000,
        control_seeds=tuple(range(10)),
        control_tuning_seeds=(0, 1),
        mlp=dataclasses.replace(_MLP, steps=80000, eval_every=200),
        comparison=dataclasses.replace(_COMPARISON, steps=20000, eval_every=200),
        comparison_seeds=tuple(range(10)),
        intervention_seeds=tuple(range(30)),
        intervention_steps=50000,
        mixing_fraction=0.5,
    ),
    "smoke": Scale(
        name="smoke",
        description="a smoke test of the pipeline on tiny models (a minute on a CPU; the numbers mean nothing).",
        tasks=("add",),
        seeds=(0, 1),
        transformer=_TINY,
        s5_fraction=0.1,
        plateau=dataclasses.replace(_TINY, train_fraction=0.6),
        plateau_seeds=(0, 1, 2),
        plateau_tuning_seeds=(0,),
        controls=("mlp", "shuffled-train"),
        control_steps=120,
        control_seeds=(0, 1),
        control_tuning_seeds=(0,),
        mlp=dataclasses.replace(_TINY, model="mlp", p=7, mlp_hidden=(32,)),
        comparison=dataclasses.replace(_TINY, p=7),
        comparison_seeds=(0,),
        intervention_seeds=(0,),
        intervention_steps=120,
        mixing_fraction=0.5,
    ),
}
