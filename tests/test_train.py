"""The grokking lab on tiny tasks: tasks, models, configs, training, checkpoints, resuming."""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from configs import TINY
from grokspec.lab.config import ConfigMismatch, TrainConfig
from grokspec.lab.models import GrokMLP, GrokTransformer, build_model
from grokspec.lab.rundir import RunDir
from grokspec.lab.tasks import make_dataset, split_indices
from grokspec.lab.train import TrainingWriteError, train, train_seeds

# A model small enough to train a few hundred steps in seconds.


def metrics_without_time(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in RunDir(run_dir).read_metrics()]


# --- tasks -------------------------------------------------------------------


@pytest.mark.parametrize("task,op", [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b)])
def test_modular_tables_are_complete_and_correct(task, op):
    data = make_dataset(task, 7)
    assert len(data) == 49 and data.vocab_size == 7
    for (a, b), y in zip(data.inputs.tolist(), data.labels.tolist()):
        assert y == op(a, b) % 7


def test_division_uses_inverses_and_needs_a_prime():
    data = make_dataset("div", 7)
    assert len(data) == 7 * 6
    for (a, b), y in zip(data.inputs.tolist(), data.labels.tolist()):
        assert (y * b) % 7 == a
    with pytest.raises(ValueError, match="prime"):
        make_dataset("div", 9)


def test_s5_composition_table():
    data = make_dataset("s5")
    perms = list(itertools.permutations(range(5)))
    assert data.vocab_size == 120 and len(data) == 120 * 120
    for (i, j), k in list(zip(data.inputs.tolist(), data.labels.tolist()))[::997]:
        assert perms[k] == tuple(perms[i][perms[j][x]] for x in range(5))


def test_split_is_seeded_disjoint_and_complete():
    train_a, test_a = split_indices(100, 0.3, seed=5)
    train_b, test_b = split_indices(100, 0.3, seed=5)
    assert torch.equal(train_a, train_b) and torch.equal(test_a, test_b)
    assert len(train_a) == 30 and sorted(train_a.tolist() + test_a.tolist()) == list(range(100))
    assert not torch.equal(split_indices(100, 0.3, seed=6)[0], train_a)
    for bad in (0.0, 1.0, -0.2, 1.3):
        with pytest.raises(ValueError, match="train fraction"):
            split_indices(100, bad, seed=0)


# --- models ------------------------------------------------------------------


def test_transformer_matches_torch_encoder_layer():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    model = GrokTransformer(13, [0, 1], gens, d_model=32, n_heads=4, d_ff=48)
    state = model.seed_state_dict(1)
    layer = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, activation="gelu", batch_first=True).eval()
    layer.load_state_dict({k.removeprefix("layers.0."): v for k, v in state.items() if k.startswith("layers.0.")})
    norm = nn.LayerNorm(32)
    norm.load_state_dict({"weight": state["final_norm.weight"], "bias": state["final_norm.bias"]})
    x = torch.randint(0, 13, (40, 2), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        embedded = state["token_embedding.weight"][x] + state["position_embedding.weight"]
        want = norm(layer(embedded)[:, -1])
        want_logits = want @ state["readout.weight"].T + state["readout.bias"]
        logits, z = model(torch.stack([x, x]))
    torch.testing.assert_close(z[1], want, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1], want_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", ["transformer", "mlp"])
def test_seeds_in_one_model_are_independent(model):
    config = dataclasses.replace(TINY, model=model)
    pair = build_model(config, 11, [4, 9])
    alone = build_model(config, 11, [9])
    for name, value in alone.seed_state_dict(0).items():
        assert torch.equal(pair.seed_state_dict(1)[name], value), name
    assert not torch.equal(pair.seed_state_dict(0)["readout.weight"], pair.seed_state_dict(1)["readout.weight"])


def test_mlp_representation_shape_and_state_dict_round_trip():
    gens = [torch.Generator().manual_seed(0)]
    mlp = GrokMLP(11, [0], gens, embed_dim=16, hidden=(24, 20), d_repr=8)
    logits, z = mlp(torch.randint(0, 11, (1, 5, 2)))
    assert logits.shape == (1, 5, 11) and z.shape == (1, 5, 8)
    other = GrokMLP(11, [1], [torch.Generator().manual_seed(1)], embed_dim=16, hidden=(24, 20), d_repr=8)
    other.load_seed_state_dict(0, mlp.seed_state_dict(0))
    assert all(torch.equal(a, b) for a, b in zip(mlp.seed_state_dict(0).values(), other.seed_state_dict(0).values()))
    with pytest.raises(ValueError, match="does not match"):
        other.load_seed_state_dict(0, {"nope": torch.zeros(1)})


# --- configs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"task": "pow"}, "unknown task"),
        ({"task": "div", "p": 12}, "prime"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"model": "rnn"}, "unknown model"),
        ({"d_model": 30, "n_heads": 4}, "divisible"),
        ({"lr": 0.0}, "lr"),
        ({"steps": 0}, "steps"),
        ({"mixing_start": 10}, "both mixing_start and mixing_end"),
        ({"mixing_start": 50, "mixing_end": 10}, "window"),
        ({"mixing_fraction": 0.0, "mixing_start": 0, "mixing_end": 5}, "mixing_fraction"),
        ({"norm_reference": "/somewhere"}, "norm_reference"),
        ({"activation": "swish"}, "activation"),
    ],
)
def test_invalid_configs_are_refused_with_a_reason(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)


def test_config_json_round_trip_and_identity():
    config = dataclasses.replace(TINY, mlp_hidden=(8, 4), mixing_start=10, mixing_end=30)
    again = TrainConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    assert config.identity_differences(dataclasses.replace(config, steps=999, device="cuda")) == []
    assert config.identity_differences(dataclasses.replace(config, lr=0.5)) == ["lr: 0.5 vs 0.001"]


# --- training ----------------------------------------------------------------


def test_training_learns_and_writes_the_run_dir(tmp_path):
    summary = train(TINY, tmp_path / "run")
    records = RunDir(tmp_path / "run").read_metrics()
    assert [r["step"] for r in records] == list(range(0, 201, 20))
    assert records[-1]["train_acc"] > records[0]["train_acc"] + 0.5, "the model must learn its training set"
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 2
    for r in records:
        assert set(r) >= {
            "step",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "param_norm",
            "repr_entropy",
            "intervention",
        }
        assert 0.0 <= r["repr_entropy"] <= 1.0 and r["intervention"] is False
    steps = [s for s, _ in RunDir(tmp_path / "run").list_checkpoints()]
    assert steps == [0, 50, 100, 150, 200]
    assert summary.steps == 200 and summary.stopped == "budget"
    assert TrainConfig.load(tmp_path / "run" / "config.json") == TINY


def test_checkpoints_round_trip_bit_for_bit(tmp_path):
    train(TINY, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    with safe_open(run.checkpoint_path(200), "pt") as handle:
        assert handle.metadata() == {"step": "200", "format": "grokspec/1"}
        assert all(handle.get_tensor(k).dtype == torch.float32 for k in handle.keys())  # noqa: SIM118 (safe_open has no __iter__)
    fresh = build_model(TINY, 11, [TINY.seed])
    fresh.load_seed_state_dict(0, run.load_checkpoint(200))
    for name, tensor in run.load_checkpoint(200).items():
        assert torch.equal(fresh.seed_state_dict(0)[name], tensor)
    assert torch.equal(fresh.seed_state_dict(0)["readout.weight"], run.load_checkpoint(200)["readout.weight"])
    assert not torch.equal(run.load_checkpoint(0)["readout.weight"], run.load_checkpoint(200)["readout.weight"])


def test_resume_equals_uninterrupted(tmp_path):
    config = dataclasses.replace(TINY, batch_size=64)  # minibatches: the sampler state must resume too
    train(config, tmp_path / "straight")
    train(dataclasses.replace(config, steps=100), tmp_path / "resumed")
    summary = train(config, tmp_path / "resumed")
    assert metrics_without_time(tmp_path / "resumed") == metrics_without_time(tmp_path / "straight")
    a, b = RunDir(tmp_path / "straight"), RunDir(tmp_path / "resumed")
    for name, tensor in a.load_checkpoint(200).items():
        assert torch.equal(b.load_checkpoint(200)[name], tensor), name
    assert summary.steps == 200


def test_interrupted_run_resumes_to_the_same_curves(tmp_path):
    config = dataclasses.replace(TINY, batch_size=64)
    train(config, tmp_path / "straight")

    def interrupt(step, total, text):
        if step == 120:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "interrupted", progress=interrupt)
    # At most the steps since the newest checkpoint (100) are lost.
    assert max(s for s, _ in RunDir(tmp_path / "interrupted").list_checkpoints()) == 100
    train(config, tmp_path / "interrupted")
    assert metrics_without_time(tmp_path / "interrupted") == metrics_without_time(tmp_path / "straight")


def test_finished_run_is_not_retrained_and_can_be_extended(tmp_path):
    train(TINY, tmp_path / "run")
    again = train(TINY, tmp_path / "run")
    assert again.stopped == "already-done" and again.steps == 200
    longer = train(dataclasses.replace(TINY, steps=240), tmp_path / "run")
    assert longer.steps == 240
    assert RunDir(tmp_path / "run").read_config().steps == 240


def test_a_run_dir_holding_another_config_is_refused(tmp_path):
    train(dataclasses.replace(TINY, steps=20), tmp_path / "run")
    with pytest.raises(ConfigMismatch, match="lr"):
        train(dataclasses.replace(TINY, lr=3e-3), tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigMismatch, match="not a grokspec run dir"):
        train(TINY, tmp_path / "other")


def test_no_space_left_is_reported_and_nothing_is_half_written(tmp_path, monkeypatch):
    original = RunDir.save_checkpoint

    def full_disk(self, step, weights):
        if step >= 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, step, weights)

    monkeypatch.setattr(RunDir, "save_checkpoint", full_disk)
    with pytest.raises(TrainingWriteError, match=r"No space left.*resume from step 50"):
        train(TINY, tmp_path / "run")
    leftovers = [p.name for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    monkeypatch.setattr(RunDir, "save_checkpoint", original)
    assert train(TINY, tmp_path / "run").steps == 200


def test_stop_after_grok_and_after_crossing(tmp_path):
    # Tiny tasks barely generalize; the mechanics are what is tested here.
    config = dataclasses.replace(TINY, train_fraction=0.8, lr=1e-2, steps=2000, stop_after_grok=40, grok_level=0.3)
    summary = train(config, tmp_path / "grok")
    assert summary.t_grok is not None and summary.stopped == "stop-after-grok"
    assert summary.steps == summary.t_grok + 40
    crossing = dataclasses.replace(TINY, steps=2000, threshold=0.99, stop_after_crossing=20)
    summary = train(crossing, tmp_path / "cross")
    assert summary.crossing_step is not None and summary.steps == summary.crossing_step + 20


def test_several_seeds_at_once_match_single_runs(tmp_path):
    summaries = train_seeds(TINY, [0, 1], tmp_path / "group")
    assert [s.seed for s in summaries] == [0, 1]
    train(dataclasses.replace(TINY, seed=1), tmp_path / "single")
    grouped = metrics_without_time(tmp_path / "group" / "seed_1")
    single = metrics_without_time(tmp_path / "single")
    for g, s in zip(grouped, single):
        assert g["step"] == s["step"]
        for key in ("train_loss", "test_loss", "param_norm", "repr_entropy"):
            assert g[key] == pytest.approx(s[key], rel=1e-4, abs=1e-5), key
    assert RunDir(tmp_path / "group" / "seed_0").read_config().seed == 0


# --- the intervention --------------------------------------------------------


def test_mixing_keeps_the_representation_entropy_up_while_active(tmp_path):
    window = dict(mixing_start=50, mixing_end=150)
    for seed in (0, 1):
        base = dataclasses.replace(TINY, steps=160, seed=seed)
        train(base, tmp_path / f"base{seed}")
        train(dataclasses.replace(base, **window), tmp_path / f"mixed{seed}")
        baseline = RunDir(tmp_path / f"base{seed}").read_metrics()
        mixed = RunDir(tmp_path / f"mixed{seed}").read_metrics()
        inside = [(b, m) for b, m in zip(baseline, mixed) if 60 <= m["step"] < 150]
        assert inside and all(m["intervention"] for _, m in inside)
        assert not any(m["intervention"] for m in mixed if m["step"] < 50 or m["step"] >= 150)
        # Identical before the window, higher throughout it.
        assert baseline[2]["repr_entropy"] == mixed[2]["repr_entropy"]
        gaps = [m["repr_entropy"] - b["repr_entropy"] for b, m in inside]
        assert min(gaps) > 0 and sum(gaps) / len(gaps) > 0.03, (seed, gaps)


def test_mixing_replaces_the_asked_fraction_with_a_derangement():
    from grokspec.lab.data import SeedBatchedData

    config = dataclasses.replace(TINY, mixing_start=0, mixing_end=10, mixing_fraction=0.5)
    dataset = make_dataset(config.task, config.p)
    data = SeedBatchedData(config, dataset, [0], torch.device("cpu"))
    z = torch.arange(2000, dtype=torch.float32).view(1, 1000, 2)
    mixed = data.mixer()(z)
    changed = (mixed != z).any(dim=-1)[0]
    assert 0.4 < changed.float().mean() < 0.6
    # Every replaced row came from another row of the batch.
    rows = {tuple(r) for r in z[0].tolist()}
    assert all(tuple(r) in rows for r in mixed[0][changed].tolist())
    full = dataclasses.replace(config, mixing_fraction=1.0)
    data = SeedBatchedData(full, dataset, [0], torch.device("cpu"))
    assert (data.mixer()(z) != z).any(dim=-1).all(), "a derangement leaves no example in place"


def test_norm_matched_mixing_follows_the_reference_norms(tmp_path):
    reference = dataclasses.replace(TINY, steps=160)
    train(reference, tmp_path / "reference")
    matched = dataclasses.replace(reference, mixing_start=40, mixing_end=140, norm_reference=str(tmp_path / "reference"))
    train(matched, tmp_path / "matched")
    want = {r["step"]: r["param_norm"] for r in RunDir(tmp_path / "reference").read_metrics()}
    got = {r["step"]: r["param_norm"] for r in RunDir(tmp_path / "matched").read_metrics()}
    for step in range(60, 141, 20):
        assert got[step] == pytest.approx(want[step], rel=1e-5), step
    unmatched = dataclasses.replace(matched, norm_reference=None)
    train(unmatched, tmp_path / "unmatched")
    free = {r["step"]: r["param_norm"] for r in RunDir(tmp_path / "unmatched").read_metrics()}
    assert any(abs(free[s] - want[s]) > 1e-3 * want[s] for s in range(60, 141, 20)), "mixing alone changes the norms"


def test_full_width_training_is_bit_reproducible(tmp_path):
    # Multithreaded CPU kernels can add in varying order; grokking amplifies
    # such differences, so training must run deterministic kernels.
    config = TrainConfig(steps=120, eval_every=40, checkpoint_every=120, device="cpu")
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    assert metrics_without_time(tmp_path / "a") == metrics_without_time(tmp_path / "b")
    assert not torch.are_deterministic_algorithms_enabled(), "the global setting is restored"
