"""Training grokking runs into grokspec run directories.

``train(config, RUN_DIR)`` trains one seed; ``train_seeds(config, seeds,
OUT)`` trains several at once in one process (``OUT/seed_<n>``, one run dir
each) through the seed-batched models. Every ``eval_every`` steps each run
gets a line in metrics.jsonl (losses, accuracies, parameter norm and the
representation entropy H̃ of the probe set, computed by the grokspec
engine); every ``checkpoint_every`` steps a safetensors checkpoint and the
resume state. Running again on the same directory resumes from the newest
checkpoint and reproduces the uninterrupted curves (same seed, same device).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grokspec.config import TrainConfig
from grokspec.errors import GrokspecError
from grokspec.events import crossing_step, grok_step
from grokspec.models import GrokMLP, GrokTransformer, SeedBatchedModel
from grokspec.rundir import RunDir
from grokspec.spectral import spectral_entropy
from grokspec.tasks import Dataset, make_dataset, split_indices

__all__ = ["RunSummary", "train", "train_seeds", "select_device", "build_model", "TrainingWriteError"]

Log = Callable[[str], None]
Progress = Callable[[int, int, str], None]

# Independent random streams per seed (the split uses the seed itself).
_INIT_STREAM, _BATCH_STREAM, _MIXING_STREAM = 1, 2, 3


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
    #: "budget", "stop-after-grok", "stop-after-crossing" or "already-done".
    stopped: str


def select_device(name: str = "auto") -> torch.device:
    """cuda when present, else mps, else cpu — or exactly the device asked for."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA device")
    return device


def _stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def build_model(config: TrainConfig, vocab_size: int, seeds: Sequence[int]) -> SeedBatchedModel:
    """The model of `config` for each seed, initialized from the seed."""
    generators = [torch.Generator().manual_seed(_stream_seed(s, _INIT_STREAM)) for s in seeds]
    if config.model == "transformer":
        return GrokTransformer(
            vocab_size,
            seeds,
            generators,
            d_model=config.d_model,
            n_heads=config.n_heads,
            d_ff=config.d_ff,
            n_layers=config.n_layers,
            activation=config.resolved_activation,
        )
    return GrokMLP(
        vocab_size,
        seeds,
        generators,
        embed_dim=config.d_model,
        hidden=config.mlp_hidden,
        d_repr=config.d_model,
        activation=config.resolved_activation,
    )


def train(
    config: TrainConfig, run_dir: str | Path, *, log: Log | None = None, progress: Progress | None = None
) -> RunSummary:
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


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels while training. Some multithreaded CPU kernels
    (the embedding gradient's accumulation among them) otherwise add in a
    varying order; grokking amplifies those 1e-7 differences into T_grok
    moving by hundreds of steps, and a resumed run would not reproduce the
    uninterrupted one. Measured cost on 2 CPU cores: about 3%."""
    previous = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        # cuBLAS needs a fixed workspace for reproducible sums.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


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
        self.device = select_device(config.device)
        if self.device.type == "cpu":
            from grokspec import _core

            torch.set_num_threads(_core.default_threads())
        dataset = make_dataset(config.task, config.p)
        self._prepare_data(dataset)
        self.model = build_model(config, dataset.vocab_size, seeds).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
        )
        self.batch_generators = [torch.Generator().manual_seed(_stream_seed(s, _BATCH_STREAM)) for s in seeds]
        self.mixing_generators = [torch.Generator().manual_seed(_stream_seed(s, _MIXING_STREAM)) for s in seeds]
        self.reference_norms = self._load_reference_norms() if config.norm_reference else None
        self.records: list[list[dict[str, Any]]] = [[] for _ in seeds]
        self.step = 0
        self.started = time.perf_counter()

    # --- setup
    def _prepare_data(self, dataset: Dataset) -> None:
        splits = [split_indices(len(dataset), self.base.train_fraction, s) for s in self.seeds]
        on = self.device
        self.train_x = torch.stack([dataset.inputs[tr] for tr, _ in splits]).to(on)  # (S, Ntrain, 2)
        self.train_y = torch.stack([dataset.labels[tr] for tr, _ in splits]).to(on)  # (S, Ntrain)
        self.test_x = torch.stack([dataset.inputs[te] for _, te in splits]).to(on)
        self.test_y = torch.stack([dataset.labels[te] for _, te in splits]).to(on)
        self.probe_x = self.train_x[:, : self.base.probe_size]  # the first examples of each split
        n_train = self.train_x.shape[1]
        self.batch_size = n_train if self.base.batch_size in (0,) or self.base.batch_size >= n_train else self.base.batch_size

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
        """Claims the run dirs; loads the newest common checkpoint. Returns True if resumed."""
        existing = [rd.claim(cfg) for rd, cfg in zip(self.run_dirs, self.configs)]
        if not any(existing):
            return False
        steps_per_run = [{step for step, _ in rd.list_checkpoints()} for rd in self.run_dirs]
        common = set.intersection(*steps_per_run) if all(steps_per_run) else set()
        resumable = [s for s in sorted(common, reverse=True) if all(rd.resume_path.exists() for rd in self.run_dirs)]
        if not resumable:
            return False
        step = resumable[0]
        states = [rd.load_resume_state() for rd in self.run_dirs]
        if any(state["step"] != step for state in states):
            # The resume state belongs to a newer checkpoint that not every seed wrote.
            return False
        for index, rd in enumerate(self.run_dirs):
            self.model.load_seed_state_dict(index, rd.load_checkpoint(step))
        self._load_optimizer(states)
        for generator, state in zip(self.batch_generators, states):
            generator.set_state(state["batch_rng"])
        for generator, state in zip(self.mixing_generators, states):
            generator.set_state(state["mixing_rng"])
        self.records = [[r for r in rd.read_metrics() if r["step"] <= step] for rd in self.run_dirs]
        self.step = step
        self.log(f"resuming from step {step} ({self.run_dirs[0].path if len(self.run_dirs) == 1 else f'{len(self.run_dirs)} runs'})")
        return True

    def _optimizer_slices(self, index: int) -> dict[str, Any]:
        names = self.model.parameter_names()
        out: dict[str, Any] = {}
        for name, param in zip(names, self.model.parameters()):
            state = self.optimizer.state.get(param)
            if state:
                out[name] = {
                    "step": state["step"].detach().cpu().clone(),
                    "exp_avg": state["exp_avg"][index].detach().cpu().clone(),
                    "exp_avg_sq": state["exp_avg_sq"][index].detach().cpu().clone(),
                }
        return out

    def _load_optimizer(self, states: list[dict[str, Any]]) -> None:
        for name, param in zip(self.model.parameter_names(), self.model.parameters()):
            slices = [state["optimizer"].get(name) for state in states]
            if any(s is None for s in slices):
                continue
            self.optimizer.state[param] = {
                "step": slices[0]["step"].clone(),
                "exp_avg": torch.stack([s["exp_avg"] for s in slices]).to(param.device, param.dtype),
                "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in slices]).to(param.device, param.dtype),
            }

    # --- the loop
    def run(self) -> list[RunSummary]:
        with _deterministic(self.device):
            return self._run()

    def _run(self) -> list[RunSummary]:
        config = self.base
        resumed = self._resume_or_start()
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

    def _sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n_train = self.train_x.shape[1]
        if self.batch_size == n_train:
            return self.train_x, self.train_y
        rows = torch.stack([torch.randperm(n_train, generator=g)[: self.batch_size] for g in self.batch_generators])
        rows = rows.to(self.device)  # (S, B)
        x = torch.gather(self.train_x, 1, rows.unsqueeze(-1).expand(-1, -1, 2))
        y = torch.gather(self.train_y, 1, rows)
        return x, y

    def _mixer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Representation mixing: each example's z is replaced, with
        probability mixing_fraction, by another example's z (a random
        derangement of the batch)."""
        fraction = self.base.mixing_fraction

        def mix(z: torch.Tensor) -> torch.Tensor:  # z: (S, B, d)
            s, b, _ = z.shape
            sources, masks = [], []
            for g in self.mixing_generators:
                order = torch.randperm(b, generator=g)
                # Shifting a random permutation by one place makes a single
                # b-cycle: nobody keeps their own representation.
                derangement = torch.empty(b, dtype=torch.long)
                derangement[order] = order.roll(-1)
                sources.append(derangement)
                masks.append(torch.rand(b, generator=g) < fraction)
            source = torch.stack(sources).to(z.device)  # (S, B)
            mask = torch.stack(masks).to(z.device).unsqueeze(-1)  # (S, B, 1)
            mixed = torch.gather(z, 1, source.unsqueeze(-1).expand_as(z))
            return torch.where(mask, mixed, z)

        return mix

    def _train_step(self) -> None:
        config = self.base
        self.model.train()
        if config.warmup_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (self.step + 1) / config.warmup_steps)
        mixing = config.mixing_active(self.step)
        x, y = self._sample_batch()
        logits, _ = self.model(x, mix=self._mixer() if mixing else None)  # (S, B, V)
        per_seed = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)
        self.optimizer.zero_grad(set_to_none=True)
        # Summing over seeds keeps each seed's gradient its own.
        per_seed.sum().backward()
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
        train_loss, train_acc = self._loss_and_accuracy(self.train_x, self.train_y)
        test_loss, test_acc = self._loss_and_accuracy(self.test_x, self.test_y)
        z = self.model.representation(self.probe_x).float().cpu().numpy()  # (S, probe, d)
        entropies = spectral_entropy(list(z), power=2, normalize="cols")
        norms = self.model.parameter_norms().cpu()
        wall = time.perf_counter() - self.started
        for index in range(len(self.seeds)):
            record = {
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
            self.records[index].append(record)
            crossing, grok = self._events(index)
            seed = self.seeds[index]
            if crossing == self.step and self.step > 0:
                # After grokking the fall is no longer a warning; say so rather than predict.
                outlook = (
                    f"after grokking at step {grok}" if grok is not None and grok < self.step
                    else "the paper finds generalization ~1,000 steps later"
                )
                self.log(
                    f"[seed {seed}] step {self.step}: representation entropy {record['repr_entropy']:.3f} "
                    f"fell below {config.threshold} (test accuracy {record['test_acc']:.3f}); {outlook}"
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

    def _write_metrics(self) -> None:
        for rd, records in zip(self.run_dirs, self.records):
            self._writing(rd, lambda: rd.write_metrics(records), rd.metrics_path)

    def _checkpoint(self) -> None:
        for index, rd in enumerate(self.run_dirs):
            weights = self.model.seed_state_dict(index)
            self._writing(rd, lambda: rd.save_checkpoint(self.step, weights), rd.checkpoint_path(self.step))
            state = {
                "step": self.step,
                "optimizer": self._optimizer_slices(index),
                "batch_rng": self.batch_generators[index].get_state(),
                "mixing_rng": self.mixing_generators[index].get_state(),
            }
            self._writing(rd, lambda: rd.save_resume_state(state), rd.resume_path)

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
            if config.stop_after_grok is not None and grok is not None and self.step >= grok + config.stop_after_grok:
                reasons.append("stop-after-grok")
            elif config.stop_after_crossing is not None and crossing is not None and self.step >= crossing + config.stop_after_crossing:
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
                )
            )
        return out


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    return dataclasses.asdict(summary)
