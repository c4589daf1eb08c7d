"""``grokspec reproduce``: the paper's experiments, run with grokspec's own
train, scan and calibrate, and reported next to the paper's numbers.

Experiments (PAPER.md):

1. threshold and lead time: the transformer on (a+b), (a·b), (a−b) mod 97
   (and S5 at paper scale), several seeds;
2. two phases: parameter norm against entropy (from the same runs);
3. MLP control at p = 41, with the transformer at the same setting;
4. the intervention: representation mixing over the collapse window, and
   its norm-matched variant, against the same seeds without it;
5. calibration: H* and the time-to-grok law from the runs of 1;
6. the weight side: per-matrix weight entropies from ``grokspec scan``.

Everything is resumable: training resumes from checkpoints and scanning
uses its cache, so an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from grokspec import __version__
from grokspec.lab.config import TrainConfig
from grokspec.lab.rundir import RunDir
from grokspec.lab.train import RunSummary, select_device, train_seeds

__all__ = ["Scale", "SCALES", "reproduce", "experiment_dirs"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Scale:
    """Budgets of one reproduction."""

    name: str
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    #: The transformer runs of experiment 1.
    transformer: TrainConfig
    #: Train fraction of S5 (when in `tasks`).
    s5_fraction: float
    #: The MLP control and the transformer at the same setting (experiment 3).
    mlp: TrainConfig
    control_transformer: TrainConfig
    control_seeds: tuple[int, ...]
    #: Seeds of the intervention (experiment 4), a subset of `seeds`.
    intervention_seeds: tuple[int, ...]
    intervention_steps: int
    mixing_fraction: float
    description: str


_TRANSFORMER_CPU = TrainConfig(
    task="add", p=97, train_fraction=0.5, batch_size=512, steps=6000, eval_every=100, checkpoint_every=200,
    stop_after_grok=1500, device="auto",
)

SCALES = {
    "cpu": Scale(
        name="cpu",
        seeds=tuple(range(10)),
        tasks=("add", "mul", "sub"),
        transformer=_TRANSFORMER_CPU,
        s5_fraction=0.1,
        mlp=TrainConfig(
            task="add", p=41, train_fraction=0.3, model="mlp", batch_size=512, steps=12000, eval_every=200,
            checkpoint_every=2000, device="auto",
        ),
        control_transformer=TrainConfig(
            task="add", p=41, train_fraction=0.3, batch_size=512, steps=6000, eval_every=200, checkpoint_every=2000,
            device="auto",
        ),
        control_seeds=(0, 1, 2),
        intervention_seeds=(0, 1, 2, 3, 4),
        intervention_steps=8000,
        mixing_fraction=0.5,
        description=(
            "2 CPU cores, under an hour: the authors' companion setup (train fraction 0.5, batch 512) so that "
            "runs grok within minutes; evaluations every 100 steps, checkpoints every 200; runs stop 1,500 steps "
            "after grokking (6,000-step budget); MLP control 12,000 steps, 3 seeds; intervention on 5 seeds."
        ),
    ),
    "paper": Scale(
        name="paper",
        seeds=tuple(range(10)),
        tasks=("add", "mul", "sub", "s5"),
        transformer=dataclasses.replace(
            _TRANSFORMER_CPU, steps=50000, eval_every=200, checkpoint_every=1000, stop_after_grok=3000
        ),
        s5_fraction=0.1,
        mlp=TrainConfig(
            task="add", p=41, train_fraction=0.3, model="mlp", batch_size=512, steps=80000, eval_every=200,
            checkpoint_every=4000, device="auto",
        ),
        control_transformer=TrainConfig(
            task="add", p=41, train_fraction=0.3, batch_size=512, steps=20000, eval_every=200, checkpoint_every=4000,
            device="auto",
        ),
        control_seeds=tuple(range(10)),
        intervention_seeds=tuple(range(30)),
        intervention_steps=50000,
        mixing_fraction=0.5,
        description=(
            "the paper's budgets (50,000 steps, evaluations every 200, S5 at train fraction 0.1, MLP control "
            "80,000 steps, intervention on 30 seeds); meant for a GPU."
        ),
    ),
}


def experiment_dirs(out: Path) -> dict[str, Path]:
    return {
        "transformer": out / "runs" / "transformer",
        "control": out / "runs" / "control",
        "intervention": out / "runs" / "intervention",
    }


def _task_config(scale: Scale, task: str) -> TrainConfig:
    fraction = scale.s5_fraction if task == "s5" else scale.transformer.train_fraction
    return dataclasses.replace(scale.transformer, task=task, train_fraction=fraction)


def _timed(label: str, timings: dict[str, float], log: Log, run: Callable[[], Any]) -> Any:
    log(f"— {label}")
    start = time.perf_counter()
    result = run()
    timings[label] = round(time.perf_counter() - start, 1)
    log(f"  done in {timings[label]:.0f} s")
    return result


def _mixing_window(baseline: list[RunSummary], config: TrainConfig) -> tuple[int, int]:
    """The collapse window of the baseline runs: from half their median
    T_grok to one and a half times it (rounded to evaluations). If no
    baseline run grokked, the middle of the budget stands in for T_grok."""
    groks = [s.t_grok for s in baseline if s.t_grok is not None]
    middle = median(groks) if groks else config.steps / 2
    step = config.eval_every
    return int(round(0.5 * middle / step) * step), int(round(1.5 * middle / step) * step)


def reproduce(out: str | Path, scale: str | Scale = "cpu", *, log: Log | None = None, progress=None) -> dict[str, Any]:
    """Runs every experiment of `scale` (a name of SCALES, or a Scale) into
    `out`, analyses them and writes `out/report.json`, `out/report.md` and
    the figures. Returns the report."""
    from grokspec.repro.analysis import analyse
    from grokspec.repro.markdown import write_report

    log = log or (lambda message: None)
    if isinstance(scale, str) and scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    plan = SCALES[scale] if isinstance(scale, str) else scale
    out = Path(out)
    dirs = experiment_dirs(out)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    summaries: dict[str, list[RunSummary]] = {}

    for task in plan.tasks:
        summaries[f"transformer/{task}"] = _timed(
            f"transformer, {task}, seeds {plan.seeds[0]}-{plan.seeds[-1]}", timings, log,
            lambda task=task: train_seeds(  # type: ignore[misc]  # a default binds the loop variable
               _task_config(plan, task), list(plan.seeds), dirs["transformer"] / task, log=log, progress=progress),
        )
    summaries["control/mlp"] = _timed(
        "MLP control", timings, log,
        lambda: train_seeds(plan.mlp, list(plan.control_seeds), dirs["control"] / "mlp", log=log, progress=progress),
    )
    summaries["control/transformer"] = _timed(
        "transformer at the control's setting", timings, log,
        lambda: train_seeds(plan.control_transformer, list(plan.control_seeds), dirs["control"] / "transformer", log=log, progress=progress),
    )
    baseline_config = _task_config(plan, "add")
    baseline = [s for s in summaries["transformer/add"] if s.seed in plan.intervention_seeds]
    missing = [s for s in plan.intervention_seeds if s not in plan.seeds]
    if missing:
        summaries["intervention/baseline"] = _timed(
            "baseline seeds for the intervention", timings, log,
            lambda: train_seeds(baseline_config, missing, dirs["transformer"] / "add", log=log, progress=progress),
        )
        baseline += summaries["intervention/baseline"]
    window = _mixing_window(baseline, baseline_config)
    mixed_config = dataclasses.replace(
        baseline_config,
        steps=plan.intervention_steps,
        mixing_start=window[0],
        mixing_end=window[1],
        mixing_fraction=plan.mixing_fraction,
    )
    summaries["intervention/mixing"] = _timed(
        f"representation mixing over steps {window[0]}-{window[1]}", timings, log,
        lambda: train_seeds(mixed_config, list(plan.intervention_seeds), dirs["intervention"] / "mixing", log=log, progress=progress),
    )
    matched_config = dataclasses.replace(mixed_config, norm_reference=str(dirs["transformer"] / "add"))
    summaries["intervention/norm_matched"] = _timed(
        "norm-matched mixing", timings, log,
        lambda: train_seeds(matched_config, list(plan.intervention_seeds), dirs["intervention"] / "norm_matched", log=log, progress=progress),
    )
    report = _timed("scan and analysis", timings, log, lambda: analyse(out, plan, window, log=log))
    report["setup"] = {
        "scale": plan.name,
        "description": plan.description,
        "seeds": list(plan.seeds),
        "tasks": list(plan.tasks),
        "configs": {
            **{f"transformer/{t}": _task_config(plan, t).to_dict() for t in plan.tasks},
            "control/mlp": plan.mlp.to_dict(),
            "control/transformer": plan.control_transformer.to_dict(),
            "intervention/mixing": mixed_config.to_dict(),
            "intervention/norm_matched": matched_config.to_dict(),
        },
        "control_seeds": list(plan.control_seeds),
        "intervention_seeds": list(plan.intervention_seeds),
        "mixing_window": list(window),
        "machine": _machine(),
        "grokspec_version": __version__,
        "wall_seconds": timings,
        "total_wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_report(out, report)
    return report


def _machine() -> dict[str, Any]:
    import os

    import torch

    from grokspec import _core

    device = select_device("auto")
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": _core.default_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
