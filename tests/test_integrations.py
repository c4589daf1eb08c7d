"""The callbacks in the real transformers Trainer and Lightning Trainer
(tiny models on (a + b) mod 11, CPU, seconds): the values reach the
framework's logs and metrics.jsonl, equal representation_entropy of the same
probe computed by hand, stop training after the warning when asked, and
leave the run itself untouched (no hook survives an evaluation)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from grokspec import representation_entropy
from grokspec.events import collapse_step
from grokspec.monitor import AlarmConfig

transformers = pytest.importorskip("transformers")
# Lightning 2.6 on torch 2.15 warns about its own use of torch's pytree, and
# advises on tiny dataloaders (no workers); neither concerns the callbacks.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]
pl = pytest.importorskip("lightning.pytorch")

from grokspec.integrations.lightning import GrokspecCallback as LightningCallback  # noqa: E402
from grokspec.integrations.transformers import GrokspecCallback as HFCallback  # noqa: E402

P = 11
STEPS = 30
EVERY = 5
#: A rule that fires at the second evaluation whatever the values (a "fall" of
#: more than -1): the stopping tests are about stopping, not about the rule.
SECOND_EVALUATION = AlarmConfig(rule="collapse", window=2, drop=-1.0)


def _task() -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.arange(P).repeat_interleave(P)
    b = torch.arange(P).repeat(P)
    order = torch.randperm(P * P, generator=torch.Generator().manual_seed(0))
    return torch.stack([a, b], 1)[order], ((a + b) % P)[order]


X, Y = _task()
PROBE = X[:40]


class Net(nn.Module):
    """z = tanh(W [e_a; e_b]), logits = readout(z)."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.embed = nn.Embedding(P, d)
        self.hidden = nn.Linear(2 * d, d)
        self.readout = nn.Linear(d, P)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hidden(self.embed(x).flatten(1)))


def _by_hand(net: Net, state: dict[str, torch.Tensor] | None = None) -> float:
    """H̃ of the probe computed without the monitor, from `state` if given."""
    if state is not None:
        net = Net()
        net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        return representation_entropy(net.representation(PROBE))


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --- transformers -------------------------------------------------------------------


class HFNet(Net):
    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.readout(self.representation(input_ids))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


class Recorder(transformers.TrainerCallback):
    """Stands in for a reporter (TensorBoard, W&B): sees what Trainer.log sends,
    and, placed after the grokspec callback, checks the model after it."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []
        self.clean: list[bool] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append({**logs, "step": state.global_step})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.clean.append(_no_hooks(model) and model.training)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.clean.append(_no_hooks(model))


def _accuracy(prediction) -> dict[str, float]:
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def _hf_run(out: Path, callback: HFCallback | None) -> tuple[object, Recorder, Recorder]:
    torch.manual_seed(0)
    before, after = Recorder(), Recorder()
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=32,
        learning_rate=1e-2,
        logging_steps=10,
        eval_strategy="steps",
        eval_steps=10,
        save_steps=10,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    callbacks = [before, *([callback] if callback else []), after]
    trainer = transformers.Trainer(
        model=HFNet(),
        args=args,
        train_dataset=Pairs(X[:80], Y[:80]),
        eval_dataset=Pairs(X[80:], Y[80:]),
        compute_metrics=_accuracy,
        callbacks=callbacks,
    )
    trainer.train()
    return trainer, before, after


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    callback = HFCallback(probe={"input_ids": PROBE}, every=EVERY)
    trainer, reporter, checker = _hf_run(root / "with", callback)
    return root, trainer, reporter, checker, callback


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_transformers_values_reach_the_reporters_the_log_history_and_metrics_jsonl(hf):
    root, trainer, reporter, checker, callback = hf
    expected_steps = list(range(0, STEPS + 1, EVERY))
    assert [r.step for r in callback.records] == expected_steps
    logged = {r["step"]: r["grokspec/repr_entropy"] for r in reporter.logs if "grokspec/repr_entropy" in r}
    history = {r["step"]: r["grokspec/repr_entropy"] for r in trainer.state.log_history if "grokspec/repr_entropy" in r}
    saved = json.loads((root / "with" / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
    assert sorted(logged) == sorted(history) == expected_steps
    assert {r["step"] for r in saved if "grokspec/repr_entropy" in r} == set(expected_steps)
    rows = _jsonl(root / "with" / "metrics.jsonl")
    assert [r["step"] for r in rows] == expected_steps
    for row in rows:
        assert row["repr_entropy"] == logged[row["step"]] == history[row["step"]]
        assert ("eval_accuracy" in row and "eval_loss" in row) == (row["step"] in (10, 20, 30))
        assert not any(k.endswith("_runtime") for k in row)
    assert all(checker.clean) and len(checker.clean) >= STEPS


def test_transformers_values_equal_the_hand_computed_entropy_of_each_checkpoint(hf):
    root, trainer, _, _, _ = hf
    rows = {r["step"]: r for r in _jsonl(root / "with" / "metrics.jsonl")}
    for step in (10, 20, 30):
        state = load_file(str(root / "with" / f"checkpoint-{step}" / "model.safetensors"))
        assert abs(rows[step]["repr_entropy"] - _by_hand(Net(), state)) <= 1e-12
    assert abs(rows[STEPS]["repr_entropy"] - _by_hand(trainer.model)) <= 1e-12


def test_transformers_run_without_the_callback_trains_the_same_weights(hf, tmp_path):
    _, with_callback, _, _, _ = hf
    without, _, _ = _hf_run(tmp_path / "without", None)
    theirs = dict(without.model.named_parameters())
    for name, value in with_callback.model.named_parameters():
        assert torch.equal(value, theirs[name]), name
    assert not (tmp_path / "without" / "metrics.jsonl").exists()


def test_transformers_stop_after_alarm_stops_that_many_steps_after_the_warning(hf, tmp_path):
    *_, reference = hf
    steps = [r.step for r in reference.records]
    alarm = collapse_step(steps, [r.repr_entropy for r in reference.records], window=2, drop=-1.0)
    assert alarm == EVERY
    callback = HFCallback(probe={"input_ids": PROBE}, every=EVERY, alarm=SECOND_EVALUATION, stop_after_alarm=3)
    trainer, _, _ = _hf_run(tmp_path / "stop", callback)
    assert trainer.state.global_step == alarm + 3
    assert callback.records[-1].step == alarm + 3 and callback.records[-1].alarm_step == alarm
    rows = _jsonl(tmp_path / "stop" / "metrics.jsonl")
    assert rows[-1]["step"] == alarm + 3 and rows[-1]["alarm"] == {"rule": "collapse", "step": alarm}
    assert "eval_accuracy" in rows[-1] and (tmp_path / "stop" / f"checkpoint-{alarm + 3}").is_dir()


def test_transformers_hands_the_newest_logged_accuracy_to_the_alarm_rule(tmp_path):
    # The Trainer logs after the step's callbacks: an evaluation sees the newest value logged before it.
    callback = HFCallback(probe={"input_ids": PROBE}, every=EVERY, alarm="plateau-fall", train_accuracy="eval_accuracy")
    trainer, _, _ = _hf_run(tmp_path / "named", callback)
    logged = {r["step"]: r["eval_accuracy"] for r in trainer.state.log_history if "eval_accuracy" in r}
    seen = {r.step: r.train_acc for r in callback.records}
    assert seen[0] is None and seen[10] is None
    assert seen[20] == logged[10] and seen[30] == logged[20]


def test_scan_reads_the_metrics_jsonl_that_the_transformers_callback_writes(hf):
    from grokspec.scan.scan import scan

    root, *_ = hf
    table = scan(root / "with", cache_path=None).table
    rows = table[(table["metric"] == "repr_entropy") & (table["step_source"] == "log")]
    written = {r["step"]: r["repr_entropy"] for r in _jsonl(root / "with" / "metrics.jsonl")}
    assert dict(zip(rows["step"], rows["value"])) == written


# --- Lightning ----------------------------------------------------------------------


class LitNet(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = Net()
        self.clean: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.readout(self.net.representation(x))

    def training_step(self, batch, batch_idx):
        self.clean.append(_no_hooks(self) and self.training)
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def _lightning_run(out: Path, callback: LightningCallback | None) -> tuple[object, LitNet]:
    torch.manual_seed(0)
    model = LitNet()
    data = torch.utils.data.TensorDataset(X[:80], Y[:80])
    train = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[80:], Y[80:]), batch_size=64)
    trainer = pl.Trainer(
        max_steps=STEPS,
        default_root_dir=out,
        logger=pl.loggers.CSVLogger(out),
        callbacks=[callback] if callback else [],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=10,
        check_val_every_n_epoch=None,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train, val)
    return trainer, model


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lightning")
    callback = LightningCallback(probe=PROBE, every=EVERY)
    trainer, model = _lightning_run(root / "with", callback)
    return root, trainer, model, callback


def test_lightning_values_reach_the_csv_logger_and_metrics_jsonl_beside_the_checkpoint(lightning_run):
    _, trainer, model, callback = lightning_run
    expected_steps = list(range(0, STEPS + 1, EVERY))
    assert [r.step for r in callback.records] == expected_steps
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as handle:
        csv_rows = [r for r in csv.DictReader(handle) if r.get("grokspec/repr_entropy")]
    logged = {int(r["step"]): float(r["grokspec/repr_entropy"]) for r in csv_rows}
    assert sorted(logged) == expected_steps
    checkpoint = Path(trainer.checkpoint_callback.best_model_path)
    rows = _jsonl(checkpoint.parent / "metrics.jsonl")
    assert [r["step"] for r in rows] == expected_steps
    for row in rows:
        assert row["repr_entropy"] == logged[row["step"]]
        assert ("val_acc" in row and "val_loss" in row) == (row["step"] in (10, 20, 30))
        assert not any(k.startswith("grokspec/") for k in row)
    assert "grokspec/repr_entropy" in trainer.callback_metrics
    assert all(model.clean) and len(model.clean) == STEPS and _no_hooks(model)


def test_lightning_values_equal_the_hand_computed_entropy(lightning_run):
    _, trainer, model, callback = lightning_run
    assert abs(callback.records[-1].repr_entropy - _by_hand(model.net)) <= 1e-12
    saved = torch.load(trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    state = {k.removeprefix("net."): v for k, v in saved.items()}
    assert abs(callback.records[-1].repr_entropy - _by_hand(Net(), state)) <= 1e-12


def test_lightning_run_without_the_callback_trains_the_same_weights(lightning_run, tmp_path):
    _, _, with_callback, _ = lightning_run
    _, without = _lightning_run(tmp_path / "without", None)
    theirs = dict(without.named_parameters())
    for name, value in with_callback.named_parameters():
        assert torch.equal(value, theirs[name]), name


def test_lightning_stop_after_alarm_sets_should_stop(lightning_run, tmp_path):
    *_, reference = lightning_run
    steps = [r.step for r in reference.records]
    alarm = collapse_step(steps, [r.repr_entropy for r in reference.records], window=2, drop=-1.0)
    assert alarm == EVERY
    callback = LightningCallback(probe=PROBE, every=EVERY, alarm=SECOND_EVALUATION, stop_after_alarm=3)
    trainer, _ = _lightning_run(tmp_path / "stop", callback)
    assert trainer.global_step == alarm + 3 and trainer.should_stop
    assert callback.records[-1].step == alarm + 3 and callback.records[-1].alarm_step == alarm


def test_lightning_hands_the_named_train_metric_to_the_alarm_rule(tmp_path):
    # LitNet logs train_loss, not an accuracy: any logged metric shows the plumbing.
    callback = LightningCallback(probe=PROBE, every=EVERY, alarm="plateau-fall", train_accuracy="train_loss")
    trainer, _ = _lightning_run(tmp_path / "named", callback)
    later = [r for r in callback.records if r.step > 0]
    assert later and all(r.train_acc is not None and r.train_acc > 0 for r in later)
    rows = _jsonl(Path(trainer.checkpoint_callback.best_model_path).parent / "metrics.jsonl")
    assert {r["step"]: r.get("train_acc") for r in rows if r["step"] > 0} == {r.step: r.train_acc for r in later}


def test_scan_reads_the_metrics_jsonl_beside_the_lightning_checkpoints(lightning_run):
    from grokspec.scan.scan import scan

    root, trainer, _, _ = lightning_run
    table = scan(root / "with", cache_path=None).table
    rows = table[(table["metric"] == "repr_entropy") & (table["step_source"] == "log")]
    written = _jsonl(Path(trainer.checkpoint_callback.best_model_path).parent / "metrics.jsonl")
    assert dict(zip(rows["step"], rows["value"])) == {r["step"]: r["repr_entropy"] for r in written}


def test_callbacks_refuse_bad_settings_in_one_line():
    from grokspec.monitor import MonitorError

    for make in (HFCallback, LightningCallback):
        with pytest.raises(MonitorError, match="stop_after_alarm must be a non-negative"):
            make(PROBE, stop_after_alarm=-1)
        with pytest.raises(MonitorError, match="every must be a positive"):
            make(PROBE, every=0)
