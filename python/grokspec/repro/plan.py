"""The training half of ``grokspec reproduce``: which runs, with which
budgets, trained how.

Experiments (PAPER.md, and docs/ALARMS.md for the alarm study):

1. the companion regime: the transformer on (a+b), (a·b), (a−b) mod 97 at
   train fraction 0.5 (and S5 at paper scale), several seeds;
2. the plateau regime: (a+b) mod 97 at a smaller train fraction, where
   memorization ends long before generalization; its first seeds tune the
   alarm rules' parameters, the rest are scored;
3. negative controls that cannot or do not grok within the budget: the MLP
   at p = 41, the transformer without weight decay, shuffled training
   labels (and shuffled test labels, on request);
4. the MLP's comparison: the transformer at the MLP's setting;
5. the intervention: representation mixing over the collapse window, and its
   norm-matched variant, on seeds of experiment 1 (after it has run).

Every experiment is one seed-batched training (all seeds in one model and
process, which is what makes a GPU fast); independent experiments run
concurrently in separate processes (``jobs``). Everything resumes from
checkpoints, and the record of what was trained goes to ``OUT/plan.json``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from statistics import median
from typing import Any

from grokspec.lab.config import TrainConfig
from grokspec.lab.train import RunSummary, train_seeds
from grokspec.repro.layout import Experiment, experiment_dir, write_setup
from grokspec.repro.machine import machine_description
from grokspec.repro.scales import CONTROL_NAMES, SCALES, Scale, control_config, task_config

__all__ = ["intervention_experiments", "mixing_window", "plan_experiments", "train_plan"]

Log = Callable[[str], None]


def plan_experiments(scale: Scale, controls: tuple[str, ...] | None = None) -> list[Experiment]:
    """The experiments that need nothing trained before them."""
    chosen = scale.controls if controls is None else controls
    unknown = [c for c in chosen if c not in CONTROL_NAMES]
    if unknown:
        raise ValueError(f"unknown control {unknown[0]!r} (choose from {', '.join(CONTROL_NAMES)})")
    out = [
        Experiment(f"transformer/{t}", "grokking", "companion", task_config(scale, t).to_dict(), scale.seeds) for t in scale.tasks
    ]
    out.append(
        Experiment("plateau/add", "grokking", "plateau", scale.plateau.to_dict(), scale.plateau_seeds, scale.plateau_tuning_seeds)
    )
    out += [
        Experiment(
            f"control/{name}",
            "control",
            name,
            control_config(scale, name).to_dict(),
            scale.control_seeds,
            scale.control_tuning_seeds,
        )
        for name in chosen
    ]
    out.append(
        Experiment("comparison/transformer", "comparison", "comparison", scale.comparison.to_dict(), scale.comparison_seeds)
    )
    return out


def mixing_window(groks: list[int | None], config: TrainConfig) -> tuple[int, int]:
    """The collapse window of the baseline runs: from half their median
    T_grok to one and a half times it (rounded to evaluations). If no
    baseline run grokked, the middle of the budget stands in for T_grok."""
    grokked = [g for g in groks if g is not None]
    middle = median(grokked) if grokked else config.steps / 2
    step = config.eval_every
    return int(round(0.5 * middle / step) * step), int(round(1.5 * middle / step) * step)


def intervention_experiments(scale: Scale, out: Path, window: tuple[int, int]) -> list[Experiment]:
    base = task_config(scale, "add")
    mixed = dataclasses.replace(
        base,
        steps=scale.intervention_steps,
        mixing_start=window[0],
        mixing_end=window[1],
        mixing_fraction=scale.mixing_fraction,
    )
    matched = dataclasses.replace(mixed, norm_reference=str(experiment_dir(out, "transformer/add")))
    seeds = scale.intervention_seeds
    return [
        Experiment("intervention/mixing", "intervention", "mixing", mixed.to_dict(), seeds),
        Experiment("intervention/norm_matched", "intervention", "norm_matched", matched.to_dict(), seeds),
    ]


def _train_job(config: dict[str, Any], seeds: tuple[int, ...], directory: str, threads: int) -> list[RunSummary]:
    """One experiment in a worker process (a top-level function, so it pickles)."""
    os.environ["GROKSPEC_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return train_seeds(TrainConfig.from_dict(config), list(seeds), Path(directory))


class _Runner:
    """Runs experiments in this process (jobs = 1) or in a pool of processes."""

    def __init__(self, out: Path, jobs: int, device: str, log: Log):
        self.out, self.jobs, self.device, self.log = out, jobs, device, log
        self.pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) if jobs > 1 else None
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.timings: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def submit(self, experiment: Experiment) -> Future[list[RunSummary]]:
        config = {**experiment.config_dict, "device": self.device}
        directory = str(experiment_dir(self.out, experiment.key))
        self.started[experiment.key] = time.perf_counter()
        self.log(f"— {experiment.key}: seeds {_seeds_text(experiment.seeds)}")
        if self.pool is not None:
            return self.pool.submit(_train_job, config, experiment.seeds, directory, self.threads)
        done: Future[list[RunSummary]] = Future()
        done.set_result(train_seeds(TrainConfig.from_dict(config), list(experiment.seeds), Path(directory), log=self.log))
        return done

    def wait(self, key: str, future: Future[list[RunSummary]]) -> list[RunSummary]:
        summaries = future.result()
        self.timings[key] = round(time.perf_counter() - self.started[key], 1)
        grokked = sum(1 for s in summaries if s.t_grok is not None)
        self.log(f"  {key}: done in {self.timings[key]:.0f} s, {grokked}/{len(summaries)} grokked")
        return summaries

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _seeds_text(seeds: tuple[int, ...]) -> str:
    contiguous = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 2 else ", ".join(map(str, seeds))


def train_plan(
    out: str | Path,
    scale: str | Scale = "cpu",
    *,
    controls: tuple[str, ...] | None = None,
    jobs: int = 1,
    device: str = "auto",
    log: Log | None = None,
) -> dict[str, Any]:
    """Trains every experiment of `scale` into `out` (resuming what exists)
    and writes ``out/plan.json``; returns that setup record."""
    log = log or (lambda message: None)
    if isinstance(scale, str) and scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    plan = SCALES[scale] if isinstance(scale, str) else scale
    out = Path(out)
    experiments = plan_experiments(plan, controls)
    started = time.perf_counter()
    runner = _Runner(out, jobs, device, log)
    setup: dict[str, Any] = {
        "scale": plan.name,
        "description": plan.description,
        "tasks": list(plan.tasks),
        "seeds": list(plan.seeds),
        "experiments": [e.to_json() for e in experiments],
        "mixing_window": None,
        "intervention_seeds": list(plan.intervention_seeds),
        "machine": machine_description(device),
        "jobs": jobs,
        "complete": False,
    }
    # Written first, so that runs cut short (a timeout) can still be analysed.
    write_setup(out, setup)
    try:
        # The companion add runs go first: the intervention waits for them.
        futures = {e.key: runner.submit(e) for e in experiments}
        baseline = runner.wait("transformer/add", futures["transformer/add"])
        groks = [s.t_grok for s in baseline if s.seed in plan.intervention_seeds]
        window = mixing_window(groks, task_config(plan, "add"))
        later = intervention_experiments(plan, out, window)
        setup.update(experiments=[e.to_json() for e in [*experiments, *later]], mixing_window=list(window))
        write_setup(out, setup)
        futures.update({e.key: runner.submit(e) for e in later})
        for key, future in futures.items():
            if key not in runner.timings:
                runner.wait(key, future)
    finally:
        runner.close()
    setup.update(complete=True, wall_seconds=runner.timings, training_wall_seconds=round(time.perf_counter() - started, 1))
    write_setup(out, setup)
    return setup
