"""Training grokking runs into grokspec run directories.

``train(config, RUN_DIR)`` trains one seed; ``train_seeds(config, seeds,
OUT)`` trains several at once in one process (``OUT/seed_<n>``, one run dir
each) through the seed-batched models. Every ``eval_every`` steps each run
gets a line in metrics.jsonl (losses, accuracies, parameter norm and the
representation entropy H̃ of the probe set, computed by the grokspec
engine); every ``checkpoint_every`` steps a safetensors checkpoint and the
resume state. Running again on the same directory resumes from the newest
checkpoint and reproduces the uninterrupted curves (same seed, same device).

The data and sampler live in :mod:`grokspec.lab.data`, the resume state in
:mod:`grokspec.lab.resume`; this module is the step loop.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grokspec.alarms import Alarm, Trajectory, evaluate_rule, rule_by_name
from grokspec.errors import GrokspecError
from grokspec.events import crossing_step, grok_step
from grokspec.lab.budget import size_problems
from grokspec.lab.config import TrainConfig
from grokspec.lab.data import SeedBatchedData
from grokspec.lab.models import build_model
from grokspec.lab.resume import find_resume_point, repair_metrics, restore_resume_states, resume_state
from grokspec.lab.rundir import RunDir
from grokspec.lab.seeding import deterministic, select_device
from grokspec.lab.tasks import make_dataset
from grokspec.spectral import spectral_entropy

__all__ = ["RunSummary", "TrainingWriteError", "build_model", "select_device", "train", "train_seeds"]

Log = Callable[[str], None]
Progress = Callable[[int, int, str], None]


class TrainingWriteError(GrokspecError):
    """A run's files could not be written (for example, no space left)."""


@dataclass(frozen=True)
class RunSummary:
    """How one run went."""

    run_dir: str
    seed: int
    #: Steps trained so far (the newest evaluation).
    steps: int
    #: First evaluation step with test accuracy >= grok_level, if any.
    t_grok: int | None
    #: First evaluation step with H̃ below the threshold, if any.
    crossing_step: int | None
    entropy_at_grok: float | None
    final_train_acc: float
    final_test_acc: float
    final_entropy: float
    wall_seconds: float
    #: "budget", "stop-after-grok", "stop-after-alarm", "stop-after-crossing" or "already-done".
    stopped: str
    #: The early-warning alarm (config.alarm_rule), if it fired.
    alarm: Alarm | None = None


def train(config: TrainConfig, run_dir: str | Path, *, log: Log | None = None, progress: Progress | None = None) -> RunSummary:
    """Trains (or resumes) one run into `run_dir`."""
    trainer = _Trainer(config, [config.seed], [RunDir(Path(run_dir))], log=log, progress=progress)
    return trainer.run()[0]


def train_seeds(
    config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    log: Log | None = None,
    progress: Progress | None = None,
) -> list[RunSummary]:
    """Trains (or resumes) one run per seed, all at once, into ``out_dir/seed_<n>``."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")
    run_dirs = [RunDir(Path(out_dir) / f"seed_{s}") for s in seeds]
    trainer = _Trainer(config, list(seeds), run_dirs, log=log, progress=progress)
    return trainer.run()


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        seeds: list[int],
        run_dirs: list[RunDir],
        *,
        log: Log | None,
        progress: Progress | None,
    ):
        self.base = config
        self.seeds = seeds
        self.configs = [config.with_seed(s) for s in seeds]
        self.run_dirs = run_dirs
        self.log = log or (lambda message: None)
        self.progress = progress
        too_big = size_problems(config, len(seeds))  # before anything is allocated
        if too_big:
            raise ValueError("; ".join(too_big))
        self.device = select_device(config.device)
        if self.device.type == "cpu":
            from grokspec import _core

            torch.set_num_threads(_core.default_threads())
        dataset = make_dataset(config.task, config.p)
        self.data = SeedBatchedData(config, dataset, seeds, self.device)
        self.chance = 1.0 / dataset.vocab_size  # every token is a class
        self.model = build_model(config, dataset.vocab_size, seeds).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
        )
        self.reference_norms = self._load_reference_norms() if config.norm_reference else None
        self.records: list[list[dict[str, Any]]] = [[] for _ in seeds]
        self.alarm_rule = rule_by_name(config.alarm_rule, threshold=config.threshold)
        self.alarms: list[Alarm | None] = [None for _ in seeds]
        self.step = 0
        self.started = time.perf_counter()

    def _load_reference_norms(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per seed, the (steps, param_norm) trajectory to rescale to: the
        reference run itself, or its seed_<n> sub-run for multi-seed references."""
        root = Path(self.base.norm_reference or "")
        out = []
        for seed in self.seeds:
            candidate = root if (root / "config.json").exists() else root / f"seed_{seed}"
            records = RunDir(candidate).read_metrics()
            points = [(r["step"], r["param_norm"]) for r in records if r.get("param_norm") is not None]
            if len(points) < 2:
                raise ValueError(f"norm reference {candidate} has no parameter-norm trajectory (metrics.jsonl)")
            steps, norms = zip(*points)
            out.append((np.asarray(steps, dtype=float), np.asarray(norms, dtype=float)))
        return out

    # --- resuming
    def _resume_or_start(self) -> bool:
        """Claims the run dirs; loads the newest consistent checkpoint and
        resume state (lab.resume). Returns True if resumed."""
        existing = [rd.claim(cfg) for rd, cfg in zip(self.run_dirs, self.configs)]
        if not any(existing) or not any(rd.list_checkpoints() for rd in self.run_dirs):
            return False  # nothing written yet that a fresh start could overwrite
        point = find_resume_point(self.run_dirs, self.model)
        for note in point.notes:
            self.log(f"resume: {note}")
        for index, weights in enumerate(point.weights):
            self.model.load_seed_state_dict(index, weights)
        self.optimizer.state.clear()
        restore_resume_states(list(point.states), self.model, self.optimizer, self.data)
        self.records = [self._repaired_metrics(rd, point.step) for rd in self.run_dirs]
        self.step = point.step
        where = self.run_dirs[0].path if len(self.run_dirs) == 1 else f"{len(self.run_dirs)} runs"
        self.log(f"resuming from step {point.step} ({where})")
        return True

    def _repaired_metrics(self, run_dir: RunDir, step: int) -> list[dict[str, Any]]:
        repair = repair_metrics(run_dir, step, self.base.eval_every)
        for note in repair.notes:
            self.log(f"resume: {note}")
        if repair.changed:
            self._writing(run_dir, lambda: run_dir.write_metrics(list(repair.records)), run_dir.metrics_path)
        return list(repair.records)

    # --- the loop
    def run(self) -> list[RunSummary]:
        with deterministic(self.device):
            return self._run()

    def _run(self) -> list[RunSummary]:
        config = self.base
        resumed = self._resume_or_start()
        self.alarms = [evaluate_rule(self.alarm_rule, self._trajectory(i)).alarm for i in range(len(self.seeds))]
        if not resumed:
            self._evaluate()
            self._checkpoint()
        elif self.step >= config.steps or self._should_stop():
            return self._summaries("already-done")
        try:
            while self.step < config.steps:
                self._train_step()
                self.step += 1
                last = self.step == config.steps
                if self.step % config.eval_every == 0 or last:
                    self._evaluate()
                stop = self._should_stop()
                if self.step % config.checkpoint_every == 0 or last or stop:
                    self._checkpoint()
                if stop:
                    return self._summaries(stop)
        except KeyboardInterrupt:
            newest = max((s for s, _ in self.run_dirs[0].list_checkpoints()), default=None)
            self.log(
                f"interrupted at step {self.step}; the newest checkpoint is step {newest}. "
                "Run the same command again to resume from it."
            )
            raise
        return self._summaries("budget")

    def _train_step(self) -> None:
        config = self.base
        self.model.train()
        if config.warmup_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (self.step + 1) / config.warmup_steps)
        mixing = config.mixing_active(self.step)
        x, y = self.data.sample_batch()
        logits, _ = self.model(x, mix=self.data.mixer() if mixing else None)  # (S, B, V)
        per_seed = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)
        self.optimizer.zero_grad(set_to_none=True)
        # Summing over seeds keeps each seed's gradient its own.
        per_seed.sum().backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        if mixing and self.reference_norms is not None:
            targets = torch.tensor([float(np.interp(self.step + 1, s, n)) for s, n in self.reference_norms])
            current = self.model.parameter_norms().cpu()
            self.model.scale_parameters((targets / current).to(self.device))

    @torch.no_grad()
    def _loss_and_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, correct = [], []
        for start in range(0, x.shape[1], 8192):
            logits, _ = self.model(x[:, start : start + 8192])
            target = y[:, start : start + 8192]
            losses.append(F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape))
            correct.append(logits.argmax(dim=-1) == target)
        return torch.cat(losses, 1).mean(1).cpu(), torch.cat(correct, 1).float().mean(1).cpu()

    @torch.no_grad()
    def _evaluate(self) -> None:
        config = self.base
        self.model.eval()
        train_loss, train_acc = self._loss_and_accuracy(self.data.train_x, self.data.train_y)
        test_loss, test_acc = self._loss_and_accuracy(self.data.test_x, self.data.test_y)
        z = self.model.representation(self.data.probe_x).float().cpu().numpy()  # (S, probe, d)
        entropies = spectral_entropy(list(z), power=2, normalize="cols")
        norms = self.model.parameter_norms().cpu()
        weight_entropies = self._weight_entropies() if config.log_weight_entropies else None
        wall = time.perf_counter() - self.started
        for index in range(len(self.seeds)):
            record: dict[str, Any] = {
                "step": self.step,
                "train_loss": float(train_loss[index]),
                "train_acc": float(train_acc[index]),
                "test_loss": float(test_loss[index]),
                "test_acc": float(test_acc[index]),
                "param_norm": float(norms[index]),
                "repr_entropy": float(entropies[index]),
                "intervention": config.mixing_active(self.step),
                "wall_seconds": round(wall, 3),
            }
            if weight_entropies is not None:
                record["weight_entropy"] = weight_entropies[index]
            self.records[index].append(record)
            _, grok = self._events(index)
            seed = self.seeds[index]
            if self.alarms[index] is None:
                self.alarms[index] = evaluate_rule(self.alarm_rule, self._trajectory(index)).alarm
                alarm = self.alarms[index]
                if alarm is not None:
                    # After grokking the fall is no longer a warning; say so rather than predict.
                    outlook = (
                        f"after grokking at step {grok}"
                        if grok is not None and grok < self.step
                        else "generalization typically follows within a few thousand steps (docs/ALARMS.md)"
                    )
                    self.log(
                        f"[seed {seed}] step {self.step}: early warning ({alarm.rule}): representation entropy "
                        f"{record['repr_entropy']:.3f}, test accuracy {record['test_acc']:.3f}; {outlook}"
                    )
            if grok == self.step:
                self.log(f"[seed {seed}] step {self.step}: grokked (test accuracy {record['test_acc']:.3f})")
        self._write_metrics()
        if self.progress:
            first = self.records[0][-1]
            self.progress(
                self.step,
                config.steps,
                f"train {first['train_acc']:.2f} test {first['test_acc']:.2f} H̃ {first['repr_entropy']:.3f}",
            )

    def _weight_entropies(self) -> list[dict[str, float]]:
        """Per seed, the spectral entropy (power 2, normalized by ln min(m, n),
        as grokspec scan computes it) of every weight matrix, in one batched call."""
        states = [self.model.seed_state_dict(index) for index in range(len(self.seeds))]
        names = [n for n, w in states[0].items() if w.dim() >= 2 and min(w.shape[0], w[0].numel()) >= 2]
        matrices = [states[i][n].reshape(states[i][n].shape[0], -1).numpy() for i in range(len(states)) for n in names]
        values = spectral_entropy(matrices, power=2, normalize="dim")
        return [{n: float(values[i * len(names) + j]) for j, n in enumerate(names)} for i in range(len(states))]

    def _trajectory(self, index: int) -> Trajectory:
        records = self.records[index]
        return Trajectory(
            steps=tuple(int(r["step"]) for r in records),
            train_acc=tuple(float(r["train_acc"]) for r in records),
            test_acc=tuple(float(r["test_acc"]) for r in records),
            series={"representation": tuple(float(r["repr_entropy"]) for r in records)},
            chance=self.chance,
        )

    def _write_metrics(self) -> None:
        for rd, records in zip(self.run_dirs, self.records):
            self._writing(rd, functools.partial(rd.write_metrics, records), rd.metrics_path)

    def _checkpoint(self) -> None:
        for index, rd in enumerate(self.run_dirs):
            weights = self.model.seed_state_dict(index)
            self._writing(rd, functools.partial(rd.save_checkpoint, self.step, weights), rd.checkpoint_path(self.step))
            state = resume_state(self.step, self.model, self.optimizer, self.data, index)
            # The resume state after its checkpoint: a crash between them leaves the previous pair (lab.resume).
            self._writing(rd, functools.partial(rd.save_resume_state, state), rd.resume_path)

    @staticmethod
    def _writing(run_dir: RunDir, write: Callable[[], object], path: Path) -> None:
        try:
            write()
        except OSError as error:
            newest = max((s for s, _ in run_dir.list_checkpoints()), default=None)
            raise TrainingWriteError(
                f"cannot write {path}: {error.strerror or error}; nothing was half-written, "
                f"and the run can resume from step {newest}"
            ) from error

    # --- stopping and reporting
    def _events(self, index: int) -> tuple[int | None, int | None]:
        """(crossing, T_grok) of run `index` so far, by SPEC §1's rules."""
        records = self.records[index]
        steps = [r["step"] for r in records]
        crossing = crossing_step(steps, [r["repr_entropy"] for r in records], self.base.threshold)
        grok = grok_step(steps, [r["test_acc"] for r in records], level=self.base.grok_level)
        return crossing, grok

    def _should_stop(self) -> str:
        """A reason to stop now (every run has met a stopping rule), or ""."""
        config = self.base
        reasons = []
        for index in range(len(self.seeds)):
            crossing, grok = self._events(index)
            alarm = self.alarms[index]
            if config.stop_after_grok is not None and grok is not None and self.step >= grok + config.stop_after_grok:
                reasons.append("stop-after-grok")
            elif config.stop_after_alarm is not None and alarm is not None and self.step >= alarm.step + config.stop_after_alarm:
                reasons.append("stop-after-alarm")
            elif (
                config.stop_after_crossing is not None
                and crossing is not None
                and self.step >= crossing + config.stop_after_crossing
            ):
                reasons.append("stop-after-crossing")
            else:
                return ""
        return reasons[0]

    def _summaries(self, stopped: str) -> list[RunSummary]:
        out = []
        for index, (seed, rd) in enumerate(zip(self.seeds, self.run_dirs)):
            crossing, grok = self._events(index)
            records = self.records[index]
            at_grok = next((r["repr_entropy"] for r in records if r["step"] == grok), None)
            last = records[-1]
            out.append(
                RunSummary(
                    run_dir=str(rd.path),
                    seed=seed,
                    steps=int(last["step"]),
                    t_grok=grok,
                    crossing_step=crossing,
                    entropy_at_grok=at_grok,
                    final_train_acc=last["train_acc"],
                    final_test_acc=last["test_acc"],
                    final_entropy=last["repr_entropy"],
                    wall_seconds=round(time.perf_counter() - self.started, 2),
                    stopped=stopped,
                    # Re-evaluated on the whole run, so that the leads are known.
                    alarm=evaluate_rule(self.alarm_rule, self._trajectory(index)).alarm,
                )
            )
        return out
