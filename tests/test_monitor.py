"""grokspec.monitor: the representation entropy H̃ live in a plain torch loop.

Values are checked against grokspec's own trainer (same model, same probe,
to 1e-9), against the engine on hand-computed representations (1e-12) and
against a float64 LAPACK reference (1e-6)."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from configs import TINY
from grokspec import representation_entropy, spectral_entropy
from grokspec.lab.models import build_model
from grokspec.lab.rundir import RunDir
from grokspec.lab.tasks import make_dataset, split_indices
from grokspec.lab.train import train
from grokspec.monitor import AlarmConfig, EntropyMonitor, MetricsJournal, MonitorError, MonitorRecord
from grokspec.monitor.alarm import _alarm
from reference import reference_entropy, with_singular_values


class Classifier(nn.Module):
    """(B, 2) token pairs -> logits; z = the readout's input."""

    def __init__(self, vocab: int = 11, d: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.hidden = nn.Linear(2 * d, d)
        self.dropout = nn.Dropout(0.5)
        self.readout = nn.Linear(d, vocab)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.tanh(self.hidden(self.embed(x).flatten(1))))  # (B, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.representation(x))


class LanguageModel(nn.Module):
    """(B, T) token ids -> (B, T, vocab), as a language model; z = the lm_head's input."""

    def __init__(self, vocab: int = 13, d: int = 6):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(torch.tanh(self.mix(self.embed(input_ids))), dim=1)  # (B, T, d)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(self.hidden(input_ids))


def _pairs(n: int = 40, vocab: int = 11) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (n, 2), generator=g)


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --- the same H̃ as grokspec train ----------------------------------------------------


def test_monitor_reproduces_grokspec_train_on_the_same_model_and_probe(tmp_path):
    config = dataclasses.replace(TINY, steps=40, eval_every=20, checkpoint_every=20)
    train(config, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    logged = {r["step"]: r["repr_entropy"] for r in run.read_metrics()}
    dataset = make_dataset(config.task, config.p)
    train_rows, _ = split_indices(len(dataset), config.train_fraction, config.seed)
    probe = dataset.inputs[train_rows[: config.probe_size]].unsqueeze(0)  # (1 seed, probe, 2)
    checkpoints = run.list_checkpoints()
    assert [s for s, _ in checkpoints] == [0, 20, 40]
    for step, _ in checkpoints:
        model = build_model(config, dataset.vocab_size, [config.seed])
        model.load_seed_state_dict(0, run.load_checkpoint(step))
        # grokspec's readout is a parameter pair, not a module: the layer is a function.
        monitor = EntropyMonitor(model, probe=probe, layer=lambda m, x: m.representation(x)[0], every=20)
        record = monitor.step(step)
        assert record is not None and (record.n_probe, record.width) == (config.probe_size, config.d_model)
        assert abs(record.repr_entropy - logged[step]) <= 1e-9


# --- the readout's input, by hand -------------------------------------------------


def test_default_site_is_the_readout_input_and_equals_the_hand_computed_entropy():
    torch.manual_seed(0)
    model = Classifier()
    x = _pairs()
    monitor = EntropyMonitor(model, probe=x, every=10)
    assert monitor.site.name == "readout"
    record = monitor.measure(10)
    model.eval()
    with torch.no_grad():
        z = model.representation(x)
    assert abs(record.repr_entropy - representation_entropy(z)) <= 1e-12
    assert abs(record.repr_entropy - reference_entropy(z.double().numpy(), normalize="cols")) <= 1e-6
    assert (record.step, record.n_probe, record.width) == (10, 40, 8)


def test_probe_pass_restores_every_modules_mode_and_leaves_no_hook():
    torch.manual_seed(0)
    model = Classifier()
    model.train()
    model.hidden.eval()  # a module the user froze on purpose stays frozen
    monitor = EntropyMonitor(model, probe=_pairs(), every=1, weights=True)
    first = monitor.measure(1).repr_entropy
    assert model.training and model.dropout.training and not model.hidden.training
    assert _no_hooks(model)
    # Dropout was off during the probe pass: the value does not depend on the RNG.
    torch.manual_seed(123)
    assert monitor.measure(2).repr_entropy == first
    assert _no_hooks(model)


def test_hooks_are_removed_when_the_forward_pass_fails():
    class Broken(Classifier):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = Broken()
    monitor = EntropyMonitor(model, probe=_pairs(), layer="hidden", capture="output")
    with pytest.raises(RuntimeError, match="boom"):
        monitor.measure(0)
    assert _no_hooks(model) and model.training


def test_a_named_layer_output_and_a_module_object_are_the_same_site():
    torch.manual_seed(0)
    model = Classifier()
    x = _pairs()
    by_name = EntropyMonitor(model, probe=x, layer="hidden", capture="output").measure(0)
    by_module = EntropyMonitor(model, probe=x, layer=model.hidden, capture="output").measure(0)
    with torch.no_grad():
        expected = representation_entropy(model.hidden(model.embed(x).flatten(1)))
    assert by_name.repr_entropy == by_module.repr_entropy
    assert abs(by_name.repr_entropy - expected) <= 1e-12


@pytest.mark.parametrize("position", ["last", "mean", "all"])
def test_sequence_positions_with_and_without_an_attention_mask(position):
    torch.manual_seed(0)
    model = LanguageModel()
    ids = torch.randint(0, 13, (9, 5), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(9, 5, dtype=torch.long)
    mask[:4, 3:] = 0  # right padding
    mask[4:6, :2] = 0  # left padding
    with torch.no_grad():
        h = model.hidden(ids).double().numpy()  # (B, T, d)
    keep = mask.bool().numpy()
    if position == "last":
        last = [max(np.flatnonzero(row)) for row in keep]
        masked, plain = h[np.arange(9), last], h[:, -1]
    elif position == "mean":
        masked = np.stack([h[i, keep[i]].mean(0) for i in range(9)])
        plain = h.mean(1)
    else:
        masked, plain = h[keep], h.reshape(-1, h.shape[-1])
    with_mask = EntropyMonitor(model, probe={"input_ids": ids, "attention_mask": mask}, position=position).measure(0)
    without = EntropyMonitor(model, probe=ids, position=position).measure(0)
    assert with_mask.n_probe == masked.shape[0] and without.n_probe == plain.shape[0]
    assert abs(with_mask.repr_entropy - reference_entropy(masked, normalize="cols")) <= 1e-6
    assert abs(without.repr_entropy - reference_entropy(plain, normalize="cols")) <= 1e-6
    assert with_mask.repr_entropy != without.repr_entropy


# --- the probe ----------------------------------------------------------------


def test_every_probe_form_gives_the_same_value():
    torch.manual_seed(0)
    model = Classifier()
    x = _pairs(48)
    y = torch.zeros(48, dtype=torch.long)
    expected = EntropyMonitor(model, probe=x).measure(0).repr_entropy
    shuffled = DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True)
    subset = Subset(TensorDataset(x, y), range(48))
    forms = {
        "dict (label keys dropped)": {"x": x, "labels": y},
        "shuffling DataLoader": shuffled,
        "dataset slice": subset,
        "list of examples": list(x),
    }
    for name, probe in forms.items():
        monitor = EntropyMonitor(model, probe=probe)
        first = monitor.measure(0).repr_entropy
        assert monitor.measure(1).repr_entropy == first, f"{name}: the probe must stay fixed"
        assert abs(first - expected) <= 1e-12, name


def test_probe_follows_the_model_dtype_and_device():
    torch.manual_seed(0)
    model = LanguageModel().double()
    ids = torch.randint(0, 13, (7, 4))
    record = EntropyMonitor(model, probe=ids).measure(0)
    with torch.no_grad():
        z = model.hidden(ids)[:, -1]
    assert z.dtype == torch.float64
    assert abs(record.repr_entropy - representation_entropy(z)) <= 1e-12


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_gets_its_probe_on_the_device_and_entropy_on_the_host():
    torch.manual_seed(0)
    model = Classifier()
    x = _pairs()
    on_cpu = EntropyMonitor(model, probe=x).measure(0).repr_entropy
    model.cuda()
    on_gpu = EntropyMonitor(model, probe=x).measure(0).repr_entropy
    assert abs(on_gpu - on_cpu) <= 1e-5


# --- weights --------------------------------------------------------------------


def test_weight_entropies_are_the_engines_on_each_matrix():
    torch.manual_seed(0)
    model = Classifier()
    conv = nn.Conv2d(2, 3, 2)
    model.add_module("conv", conv)  # 4-D: read as out × (in·kh·kw), as a scan does
    record = EntropyMonitor(model, probe=_pairs(), weights=["hidden.*", "readout.weight", "conv.weight"]).measure(0)
    assert sorted(record.weight_entropies) == ["conv.weight", "hidden.weight", "readout.weight"]
    for name, value in record.weight_entropies.items():
        matrix = dict(model.named_parameters())[name].detach().double().numpy()
        matrix = matrix.reshape(matrix.shape[0], -1)
        assert abs(value - reference_entropy(matrix)) <= 1e-6
    everything = EntropyMonitor(model, probe=_pairs(), weights=True).measure(0).weight_entropies
    assert "embed.weight" in everything and "hidden.bias" not in everything
    assert spectral_entropy(model.hidden.weight) == everything["hidden.weight"]


# --- the warning ----------------------------------------------------------------


class Scripted(nn.Module):
    """A model whose representation the test sets: z (30 × k) with chosen singular values."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.z = torch.zeros(1, 1)

    def set_spectrum(self, sigma: list[float]) -> float:
        self.z = torch.from_numpy(with_singular_values(30, len(sigma), np.array(sigma)))
        return reference_entropy(self.z.numpy(), normalize="cols")


def _scripted_run(levels: list[list[float]], alarm: AlarmConfig, every: int = 10):
    """Level i holds for steps [i·every, (i+1)·every); the monitor is stepped at each."""
    model = Scripted()
    monitor = EntropyMonitor(model, probe=torch.zeros(30, 1), layer=lambda m, _: m.z, every=every, alarm=alarm)
    expected = []
    for step in range(len(levels) * every):
        if step % every == 0:
            expected.append(model.set_spectrum(levels[step // every]))
        monitor.step(step)
    return list(monitor.records), expected


FLAT, HALF, SPIKE = [1.0] * 8, [1.0] * 4 + [0.05] * 4, [1.0] + [0.01] * 7


def test_crossing_warning_fires_once_and_logs(caplog):
    caplog.set_level(logging.WARNING, logger="grokspec.monitor")
    levels = [SPIKE, FLAT, FLAT, HALF, HALF, FLAT]  # start low, rise, fall, recover
    records, expected = _scripted_run(levels, AlarmConfig(threshold=0.8))
    assert [r.step for r in records] == [0, 10, 20, 30, 40, 50]
    for record, value in zip(records, expected):
        assert abs(record.repr_entropy - value) <= 1e-6
    assert expected[0] < 0.8 < min(expected[1], expected[2]) and expected[3] < 0.8
    # The low start is one value, not a fall: no warning at step 0.
    assert [r.alarm_step for r in records] == [None, None, None, 30, 30, 30]
    assert [r.alarm_raised for r in records] == [False, False, False, True, False, False]
    series = ([r.step for r in records[:4]], [r.repr_entropy for r in records[:4]])
    assert _alarm(*series, AlarmConfig(threshold=0.8)) == ("crossing", 30)
    assert _alarm(series[0][:1], series[1][:1], AlarmConfig(threshold=0.8)) is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "step 30" in warnings[0] and "fell below 0.8" in warnings[0]
    assert records[3].log_values()["grokspec/alarm"] == 1.0 and records[3].log_values()["grokspec/alarm_step"] == 30.0
    assert records[2].log_values() == {"grokspec/repr_entropy": records[2].repr_entropy, "grokspec/alarm": 0.0}


def test_should_stop_counts_from_the_warning():
    model = Scripted()
    model.set_spectrum(FLAT)
    monitor = EntropyMonitor(model, probe=torch.zeros(30, 1), layer=lambda m, _: m.z, every=5, alarm=AlarmConfig(threshold=0.8))
    stopped_at = None
    for step in range(0, 100):
        if step == 20:
            model.set_spectrum(HALF)
        monitor.step(step)
        if monitor.should_stop(step, after=7):
            stopped_at = step
            break
    assert monitor.latest is not None and monitor.latest.alarm_step == 20
    assert stopped_at == 27


def test_collapse_rule_is_selectable():
    levels = [FLAT, FLAT, FLAT, HALF, HALF]
    records, _ = _scripted_run(levels, AlarmConfig(rule="collapse", window=2, drop=0.05))
    assert records[-1].alarm_rule == "collapse" and records[-1].alarm_step == 30


def test_plateau_fall_waits_for_memorization_and_matches_the_shared_rule(caplog):
    from grokspec.alarms import PlateauFallRule, Trajectory, first_alarm

    caplog.set_level(logging.WARNING, logger="grokspec.monitor")
    model = Scripted()
    rule = PlateauFallRule(drop=0.04, persist=2, window=3, lag=3)
    monitor = EntropyMonitor(model, probe=torch.zeros(30, 1), layer=lambda m, _: m.z, every=10, alarm=rule)
    # H̃ high while memorizing (train acc rising), a plateau once memorized, then a fall.
    levels = [FLAT] * 8 + [HALF] * 4
    train = [0.2, 0.5, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    for i, (level, acc) in enumerate(zip(levels, train)):
        model.set_spectrum(level)
        monitor.step(10 * i, train_acc=acc)
    records = monitor.records
    trajectory = Trajectory(
        steps=tuple(r.step for r in records),
        train_acc=tuple(train),
        test_acc=(float("nan"),) * len(records),
        series={"representation": tuple(r.repr_entropy for r in records)},
    )
    expected = first_alarm(rule, trajectory)
    assert expected is not None and expected.step == 90, "the fall at step 80, confirmed by the next evaluation"
    assert records[-1].alarm_rule == "plateau-fall" and records[-1].alarm_step == expected.step
    assert [r.alarm_raised for r in records].count(True) == 1
    assert records[0].journal_values()["train_acc"] == 0.2
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "plateau-fall" in warnings[0] and "step 90" in warnings[0]


def test_plateau_fall_without_train_accuracy_never_warns_and_says_why(caplog):
    caplog.set_level(logging.WARNING, logger="grokspec.monitor")
    model = Scripted()
    monitor = EntropyMonitor(model, probe=torch.zeros(30, 1), layer=lambda m, _: m.z, every=10, alarm="plateau-fall")
    for i, level in enumerate([FLAT] * 8 + [HALF] * 4):
        model.set_spectrum(level)
        monitor.step(10 * i)
    assert all(r.alarm_step is None for r in monitor.records)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "pass train_acc=" in message
    with pytest.raises(MonitorError, match="train_acc must be a number"):
        monitor.measure(500, train_acc="high")  # type: ignore[arg-type]
    assert monitor.measure(600, train_acc=torch.tensor(0.75)).train_acc == 0.75  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown alarm rule"):
        EntropyMonitor(model, probe=torch.zeros(30, 1), layer=lambda m, _: m.z, alarm="oracle")


# --- records on disk ----------------------------------------------------------


def test_journal_merges_by_step_writes_json_and_resumes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    journal = MetricsJournal(path)
    journal.resume(0)
    record = MonitorRecord(step=10, repr_entropy=0.5, n_probe=3, width=2, alarm_rule="crossing", alarm_step=10)
    journal.add(10, record.journal_values())
    journal.add(10, {"eval_accuracy": 0.25})
    journal.add(0, {"repr_entropy": float("nan")})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [
        {"step": 0, "repr_entropy": None},
        {"step": 10, "repr_entropy": 0.5, "alarm": {"rule": "crossing", "step": 10}, "eval_accuracy": 0.25},
    ]
    resumed = MetricsJournal(path)
    assert [r["step"] for r in resumed.resume(5)] == [0]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0]
    assert MetricsJournal(path).resume(0) == [] and path.read_text() == ""


# --- bad input: one clear line ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every must be a positive number of steps"),
        ({"layer": "head"}, "has no module 'head'"),
        ({"layer": nn.Linear(2, 2)}, "is not a module of Classifier"),
        ({"probe": "tokens"}, "must be model inputs"),
        ({"probe": 3}, "the probe must be a tensor, a dict of tensors"),
        ({"probe": {"labels": torch.zeros(3)}}, "a dict probe needs tensors"),
        ({"probe": torch.zeros(0, 2, dtype=torch.long)}, "expected a batch of probe inputs"),
        ({"position": "first"}, "position must be 'last', 'mean' or 'all'"),
        ({"capture": "grad"}, "capture must be 'input' or 'output'"),
        ({"weights": ["nothing.*"]}, "no weight matrix of Classifier matches"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    arguments = {"probe": _pairs(), **kwargs}
    with pytest.raises(MonitorError, match=message) as error:
        EntropyMonitor(Classifier(), **arguments)
    assert "\n" not in str(error.value)


def test_model_without_a_readout_names_the_way_out():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Tanh())
    with pytest.raises(MonitorError, match=r"cannot find the readout of Sequential.*layer="):
        EntropyMonitor(model, probe=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown alarm rule"):
        AlarmConfig(rule="oracle")  # type: ignore[arg-type]


def test_readout_found_by_the_configs_class_count():
    class Config:
        num_labels = 3

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = Config()
            self.encode = nn.Linear(4, 6)
            self.out = nn.Linear(6, 3)
            self.aux = nn.Linear(6, 6)  # registered last, but not a readout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.tanh(self.encode(x)))

    model = Head()
    monitor = EntropyMonitor(model, probe=torch.randn(10, 4))
    assert monitor.site.name == "out"


def test_importing_the_monitor_loads_neither_transformers_nor_lightning():
    code = "import sys, grokspec.monitor; print([m for m in ('transformers', 'lightning') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
