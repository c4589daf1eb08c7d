"""Checkpoint folders as the training libraries really write them.

The folders are written here by the real libraries (transformers' Trainer,
accelerate's save_state, Lightning's ModelCheckpoint) and in the exact
structures of the grokking community's run files, then scanned as a new
user would: every run separate with the right steps, training state skipped
(never a failure), metric rows where the files keep losses, and every
matrix's entropy within 1e-6 of a float64 numpy reference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from grokspec.cli import main
from grokspec.scan.formats import matrix_shape
from grokspec.scan.scan import ScanResult, scan
from hf_runs import tiny_bert_trainer
from reference import reference_entropy

transformers = pytest.importorskip("transformers")
accelerate = pytest.importorskip("accelerate")
pl = pytest.importorskip("lightning.pytorch")
# Lightning 2.6 on torch 2.15 warns about its own use of torch's pytree, and
# advises on tiny dataloaders; neither concerns what is written to disk.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


# --- helpers ----------------------------------------------------------------------------


def checkpoints(result: ScanResult, run: str | None = None) -> pd.DataFrame:
    """One row per scanned checkpoint: run, checkpoint, step, step_source."""
    t = result.table
    t = t[(t["step_source"] != "log") & ((t["run"] == run) if run else True)]
    return t.drop_duplicates(["run", "checkpoint"])[["run", "checkpoint", "step", "step_source"]].reset_index(drop=True)


def roles(result: ScanResult) -> dict[str, str]:
    return {s.path: s.role for s in result.report.skipped}


def assert_entropies(result: ScanResult, run: str, expected: dict[int, dict[str, Any]]) -> None:
    """Every float matrix of each step's state dict has one entropy row, within
    1e-6 of the float64 reference, and nothing else was scanned."""
    t = result.table
    rows = t[(t["run"] == run) & (t["metric"] == "entropy") & (t["tensor"] != "")]
    assert sorted(set(rows["step"])) == sorted(expected), f"{run}: steps {sorted(set(rows['step']))}"
    for step, state in expected.items():
        want = {}
        for name, tensor in state.items():
            array = (
                tensor.detach().to(torch.float64).numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor, np.float64)
            )
            shape = matrix_shape(tuple(array.shape))
            if shape is None or min(shape) < 2 or (isinstance(tensor, torch.Tensor) and not tensor.is_floating_point()):
                continue
            want[name] = reference_entropy(array.reshape(shape))
        got = rows[rows["step"] == step].set_index("tensor")["value"]
        assert set(got.index) == set(want), f"{run} step {step}: {sorted(set(got.index) ^ set(want))}"
        for name, value in want.items():
            assert abs(got[name] - value) <= 1e-6, f"{run} step {step} {name}: {got[name]} vs {value}"


def exit_code(directory: Path, tmp_path: Path) -> int:
    return (
        CliRunner().invoke(main, ["scan", str(directory), "--out", str(tmp_path / "out"), "--format", "csv", "--quiet"]).exit_code
    )


# --- Hugging Face Trainer -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_out(tmp_path_factory) -> Path:
    """Trainer.train() with save_steps=2 for 6 steps, then save_model() and save_state()."""
    out = tmp_path_factory.mktemp("hf") / "hf_out"
    trainer = tiny_bert_trainer(out, max_steps=6, layers=2)
    trainer.train()
    trainer.save_model()
    trainer.save_state()
    return out


HF_STATE = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")


@pytest.mark.slow  # the first use trains the Trainer fixture: importing the Trainer alone takes seconds
def test_hf_trainer_output_folder_is_one_run_with_its_steps(hf_out, tmp_path):
    result = scan(hf_out, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    got = checkpoints(result)
    assert got["run"].tolist() == ["hf_out"] * 3, "the final model never starts a second series under the same name"
    assert got["step"].tolist() == [2, 4, 6] and set(got["step_source"]) == {"name"}
    skipped = roles(result)
    for step in (2, 4, 6):
        for name, role in zip(HF_STATE, ("optimizer", "scheduler", "rng_state", "training_args")):
            assert skipped[f"checkpoint-{step}/{name}"] == role
    assert skipped["training_args.bin"] == "training_args" and skipped["model.safetensors"] == "duplicate"
    assert [(r.run, r.kind) for r in result.report.runs] == [("hf_out", "huggingface")]
    evals = result.table[(result.table["metric"] == "eval_loss")]
    assert sorted(evals["step"]) == [2, 4, 6] and set(evals["step_source"]) == {"log"}
    expected = {s: load_file(str(hf_out / f"checkpoint-{s}" / "model.safetensors")) for s in (2, 4, 6)}
    assert_entropies(result, "hf_out", expected)
    assert exit_code(hf_out, tmp_path) == 0


@pytest.mark.slow  # the first use trains the Trainer fixture: importing the Trainer alone takes seconds
def test_a_checkpoint_folder_scanned_alone_gets_the_same_step(hf_out, tmp_path):
    folder = hf_out / "checkpoint-4"
    result = scan(folder, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert checkpoints(result)[["step", "step_source"]].values.tolist() == [[4, "name"]]
    assert sorted(roles(result)) == sorted(HF_STATE), "optimizer.pt is never scanned as a model"
    assert_entropies(result, "checkpoint-4", {4: load_file(str(folder / "model.safetensors"))})
    assert exit_code(folder, tmp_path) == 0


@pytest.mark.slow  # the first use trains the Trainer fixture: importing the Trainer alone takes seconds
def test_the_final_hf_model_is_placed_in_the_series_or_kept_apart(hf_out, tmp_path):
    # The root trainer_state.json says global_step 6 and no checkpoint folder holds it.
    joined = tmp_path / "joined"
    shutil.copytree(hf_out, joined, ignore=shutil.ignore_patterns("checkpoint-6"))
    got = checkpoints(scan(joined, cache_path=None))
    assert got[["checkpoint", "step", "step_source"]].values.tolist() == [
        ["checkpoint-2/model.safetensors", 2, "name"],
        ["checkpoint-4/model.safetensors", 4, "name"],
        ["model.safetensors", 6, "trainer_state"],
    ]
    # No root trainer state: the same bytes as the newest checkpoint -> a duplicate.
    same = tmp_path / "same"
    shutil.copytree(hf_out, same)
    (same / "trainer_state.json").unlink()
    result = scan(same, cache_path=None)
    assert checkpoints(result)["step"].tolist() == [2, 4, 6] and roles(result)["model.safetensors"] == "duplicate"
    # No root trainer state and other weights: a run of its own, never mixed into the series.
    apart = tmp_path / "apart"
    shutil.copytree(hf_out, apart)
    (apart / "trainer_state.json").unlink()
    save_file({k: v * 2 for k, v in load_file(str(apart / "model.safetensors")).items()}, apart / "model.safetensors")
    got = checkpoints(scan(apart, cache_path=None))
    assert got.groupby("run")["step"].apply(list).to_dict() == {"apart": [2, 4, 6], "apart/final": [0]}


# --- accelerate ------------------------------------------------------------------------------


def test_accelerate_save_state_folders_are_one_run_in_save_order(tmp_path):
    from accelerate.utils import ProjectConfiguration

    project = tmp_path / "acc"
    torch.manual_seed(0)
    accelerator = accelerate.Accelerator(
        cpu=True, project_config=ProjectConfiguration(project_dir=str(project), automatic_checkpoint_naming=True)
    )
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    saved = {}
    for k in range(3):
        optimizer.zero_grad()
        accelerator.backward(model(torch.randn(4, 8)).pow(2).mean())
        optimizer.step()
        scheduler.step()
        accelerator.save_state()
        saved[k] = {n: p.detach().clone() for n, p in accelerator.unwrap_model(model).state_dict().items()}
    result = scan(project, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    got = checkpoints(result)
    assert got["run"].tolist() == ["checkpoints"] * 3 and result.report.runs[0].kind == "accelerate"
    assert got[["step", "step_source"]].values.tolist() == [[0, "order"], [1, "order"], [2, "order"]]
    skipped = roles(result)
    assert {skipped[f"checkpoints/checkpoint_0/{n}"] for n in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl")} == {
        "optimizer", "scheduler", "rng_state"
    }  # fmt: skip
    assert_entropies(result, "checkpoints", saved)
    alone = scan(project / "checkpoints" / "checkpoint_1", cache_path=None)
    assert checkpoints(alone)[["step", "step_source"]].values.tolist() == [[1, "order"]]
    assert exit_code(project, tmp_path) == 0


# --- Lightning -------------------------------------------------------------------------------


class Lit(pl.LightningModule):
    def __init__(self, settings: dict[str, Any], data_dir: Path, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.save_hyperparameters()  # a dict, a Path and a Namespace end up in every .ckpt
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        self.conv = torch.nn.Conv2d(3, 6, 3)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        image = x[:, :3].reshape(-1, 3, 1, 1).expand(-1, 3, 3, 3)
        return (self.net(x) - y).pow(2).mean() + self.conv(image).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Keep(pl.Callback):
    """The weights at every step, for the reference."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
        self.states[trainer.global_step] = {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_lightning_model_checkpoint_with_save_last_and_rich_hyperparameters(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 8), torch.randn(32, 4)), batch_size=8)
    keep = Keep()
    every = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=2, save_top_k=-1, save_last=True)
    trainer = pl.Trainer(
        max_steps=6,
        callbacks=[every, keep],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    module = Lit({"p": 113, "layers": [1, 2]}, Path("/data/runs"), argparse.Namespace(lr=0.1, name="x"))
    trainer.fit(module, data)
    result = scan(tmp_path / "ckpts", cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings, "hyperparameters need no --trust-pickle"
    got = checkpoints(result)
    assert got[["checkpoint", "step", "step_source"]].values.tolist() == [
        ["epoch=0-step=2.ckpt", 2, "metadata:global_step"],
        ["epoch=0-step=4.ckpt", 4, "metadata:global_step"],
        ["epoch=1-step=6.ckpt", 6, "metadata:global_step"],
    ]
    assert roles(result) == {"last.ckpt": "duplicate"}, "last.ckpt is the newest checkpoint again"
    assert [(r.run, r.kind) for r in result.report.runs] == [("ckpts", "lightning")]
    assert_entropies(result, "ckpts", {s: keep.states[s] for s in (2, 4, 6)})
    conv = result.table[(result.table["tensor"] == "conv.weight") & (result.table["metric"] == "entropy")]
    assert set(zip(conv["rows"], conv["cols"])) == {(6, 27)}, "4-D conv as out x (in*kh*kw)"


# --- the grokking community's run files ---------------------------------------------------------

P, D_MODEL, HEADS, D_HEAD, D_MLP = 23, 32, 4, 8, 64


def tl_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A one-layer HookedTransformer's state dict (3-D attention weights)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    return {
        "embed.W_E": r(P + 1, D_MODEL), "pos_embed.W_pos": r(3, D_MODEL),
        "blocks.0.attn.W_Q": r(HEADS, D_MODEL, D_HEAD), "blocks.0.attn.W_K": r(HEADS, D_MODEL, D_HEAD),
        "blocks.0.attn.W_V": r(HEADS, D_MODEL, D_HEAD), "blocks.0.attn.W_O": r(HEADS, D_HEAD, D_MODEL),
        "blocks.0.attn.b_Q": r(HEADS, D_HEAD), "blocks.0.attn.mask": torch.tril(torch.ones(3, 3)).bool(),
        "blocks.0.attn.IGNORE": torch.tensor(-1e5), "blocks.0.mlp.W_in": r(D_MODEL, D_MLP),
        "blocks.0.mlp.b_in": r(D_MLP), "blocks.0.mlp.W_out": r(D_MLP, D_MODEL), "unembed.W_U": r(D_MODEL, P),
    }  # fmt: skip


def test_neel_nanda_full_run_data(tmp_path):
    epochs = [0, 100, 200, 300]
    states = [tl_state_dict(e) for e in epochs]
    train, test = [1.0 / (e + 1) for e in range(400)], [2.0 - e / 400 for e in range(400)]
    (tmp_path / "nanda").mkdir()
    torch.save(
        {"state_dicts": states, "epochs": epochs, "train_losses": train, "test_losses": test},
        tmp_path / "nanda" / "full_run_data.pth",
    )
    result = scan(tmp_path / "nanda", cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    got = checkpoints(result)
    assert got["step"].tolist() == epochs and set(got["step_source"]) == {"metadata:epochs"}
    assert [(r.run, r.kind, r.checkpoints) for r in result.report.runs] == [("nanda", "multi", 4)]
    assert_entropies(result, "nanda", dict(zip(epochs, states)))
    for metric, values in (("train_loss", train), ("test_loss", test)):
        rows = result.table[result.table["metric"] == metric].sort_values("step")
        assert rows["step"].tolist() == list(range(400)) and np.allclose(rows["value"], values, rtol=0, atol=0)


def test_transformer_lens_grokking_demo_file_without_transformer_lens(tmp_path):
    class HookedTransformerConfig:
        pass

    cfg = HookedTransformerConfig()
    cfg.n_layers, cfg.d_model, cfg.d_vocab, cfg.act_fn = 1, D_MODEL, P + 1, "relu"
    names = ("transformer_lens", "transformer_lens.HookedTransformerConfig")
    fake = {name: types.ModuleType(name) for name in names}
    HookedTransformerConfig.__module__, HookedTransformerConfig.__qualname__ = names[1], "HookedTransformerConfig"
    fake[names[1]].HookedTransformerConfig = HookedTransformerConfig  # type: ignore[attr-defined]
    epochs = [99, 199, 299]
    states = [tl_state_dict(e) for e in epochs]
    train, test = [1.0 / (e + 1) for e in range(300)], [3.0 - e / 150 for e in range(300)]
    sys.modules.update(fake)  # registered only while saving
    try:
        torch.save(
            {
                "model": states[-1], "config": cfg, "checkpoints": states, "checkpoint_epochs": epochs,
                "test_losses": test, "train_losses": train,
                "train_indices": torch.arange(10), "test_indices": torch.arange(10, 20),
            },
            tmp_path / "grokking_demo.pth",
        )  # fmt: skip
    finally:
        for name in names:
            del sys.modules[name]
    assert "transformer_lens" not in sys.modules
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings, "the config object is read without its library"
    got = checkpoints(result)
    assert got["step"].tolist() == epochs and set(got["step_source"]) == {"metadata:checkpoint_epochs"}
    assert_entropies(result, tmp_path.name, dict(zip(epochs, states)))
    attention = result.table[(result.table["tensor"] == "blocks.0.attn.W_Q") & (result.table["metric"] == "entropy")]
    assert set(zip(attention["rows"], attention["cols"])) == {(HEADS * D_MODEL, D_HEAD)}
    losses = result.table[result.table["metric"] == "test_loss"].sort_values("step")
    assert losses["step"].tolist() == list(range(300)) and losses["value"].tolist() == test


def test_progress_measures_per_epoch_files(tmp_path):
    run = tmp_path / "grok_run"
    run.mkdir()
    states = {e: tl_state_dict(e) for e in (0, 100, 200, 250)}
    torch.save({"model": states[0], "train_data": [(1, 2, 3)], "test_data": [(4, 5, 9)]}, run / "init.pth")
    losses = {e: (1.0 / (e + 1), 2.0 / (e + 1)) for e in range(251)}
    for e in (100, 200):
        torch.save({"model": states[e], "train_loss": losses[e][0], "test_loss": losses[e][1], "epoch": e}, run / f"{e}.pth")
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2, 2))])
    torch.save(
        {
            "model": states[250], "optimizer": optimizer.state_dict(),
            "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0).state_dict(),
            "train_losses": [losses[e][0] for e in range(251)], "test_losses": [losses[e][1] for e in range(251)], "epoch": 250,
        },
        run / "final.pth",
    )  # fmt: skip
    result = scan(run, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    got = checkpoints(result)
    assert got.sort_values("step")[["checkpoint", "step"]].values.tolist() == [
        ["init.pth", 0], ["100.pth", 100], ["200.pth", 200], ["final.pth", 250]
    ], "one run: init, the numbered epochs and final"  # fmt: skip
    assert set(got["run"]) == {"grok_run"}
    assert_entropies(result, "grok_run", states)
    train = result.table[result.table["metric"] == "train_loss"].sort_values("step")
    assert train["step"].tolist() == list(range(251)), "each (metric, step) once"
    assert train["value"].tolist() == [losses[e][0] for e in range(251)]


# --- DeepSpeed and bad indexes (written by hand: deepspeed is not installed) ----------------------


def test_deepspeed_global_step_folders(tmp_path):
    out = tmp_path / "ds"
    states = {}
    for step in (10, 20):
        folder = out / f"global_step{step}"
        folder.mkdir(parents=True)
        states[step] = {"layer.weight": torch.randn(12, 8), "layer.bias": torch.randn(12)}
        torch.save({"module": states[step], "global_steps": step, "buffer_names": []}, folder / "mp_rank_00_model_states.pt")
        torch.save({"optimizer_state_dict": {"state": {}}, "ds_config": {}}, folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
        torch.save(
            {"module": {"flat": torch.randn(4, 4)}}, folder / "zero_pp_rank_0_mp_rank_00_model_states.pt"
        )  # ZeRO-3 partition
    (out / "latest").write_text("global_step20")
    result = scan(out, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert checkpoints(result)[["step", "step_source"]].values.tolist() == [[10, "name"], [20, "name"]]
    assert set(roles(result).values()) == {"optimizer", "deepspeed_partition"}
    assert_entropies(result, "ds", states)


def test_nothing_silent_unusable_index_and_files_without_tensors(tmp_path):
    save_file({"w": torch.randn(6, 4)}, tmp_path / "model-00001-of-00001.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    torch.save({"notes": "no tensors here", "lr": 0.1}, tmp_path / "empty" / "model.pt")
    result = scan(tmp_path, cache_path=None)
    joined = "\n".join(result.warnings)
    assert "model.safetensors.index.json is not a valid shard index" in joined and "its shards are scanned as files" in joined
    assert "model.pt: no tensors found" in joined and "empty: no weight matrix found" in joined
    assert checkpoints(result)["checkpoint"].tolist() == ["model-00001-of-00001.safetensors"], "its shard is still scanned"
    state = tmp_path / "state"
    state.mkdir()
    torch.save({"state": {0: {"exp_avg": torch.randn(4, 4)}}, "param_groups": [{"lr": 0.1}]}, state / "weights.pt")
    result = scan(state, cache_path=None)
    assert result.failed_checkpoints == 0 and roles(result) == {"weights.pt": "optimizer"}, "training state by content"
    assert json.loads(json.dumps(result.report.to_json()))["skipped"][0]["reason"].startswith("optimizer state")


def test_several_run_files_and_ordinary_files_in_one_folder(tmp_path):
    states = [tl_state_dict(s) for s in range(3)]
    torch.save({"state_dicts": states, "epochs": [0, 10, 20]}, tmp_path / "full_run_data.pth")
    for seed in (1, 2):
        torch.save({"checkpoints": states[:2], "checkpoint_epochs": [0, 5]}, tmp_path / f"seed{seed}_run.pth")
    best = {"w": torch.randn(6, 5)}
    torch.save(best, tmp_path / "best.pt")
    torch.save(torch.optim.SGD([torch.nn.Parameter(torch.zeros(3, 3))], lr=0.1).state_dict(), tmp_path / "opt.pt")
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    runs = {r.run: (r.kind, r.checkpoints, r.steps) for r in result.report.runs}
    name = tmp_path.name
    assert runs == {
        f"{name}/full_run_data.pth": ("multi", 3, (0, 20)),
        f"{name}/seed1_run.pth": ("multi", 2, (0, 5)),
        f"{name}/seed2_run.pth": ("multi", 2, (0, 5)),
        f"{name}/*": ("files", 1, (0, 0)),
    }
    assert roles(result) == {"opt.pt": "optimizer"}, "an optimizer state under any name is training state"
    assert_entropies(result, f"{name}/seed2_run.pth", {0: states[0], 5: states[1]})


def test_hf_save_model_and_save_state_without_checkpoint_folders(tmp_path):
    weights = {"encoder.weight": torch.randn(16, 8), "head.weight": torch.randn(4, 16)}
    save_file(weights, tmp_path / "model.safetensors")
    history = [{"step": 5, "eval_accuracy": 0.5}, {"step": 10, "eval_accuracy": 0.75}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 10, "log_history": history}))
    (tmp_path / "training_args.bin").write_bytes(b"written by torch.save; never opened")
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert checkpoints(result)[["step", "step_source"]].values.tolist() == [[10, "trainer_state"]]
    assert roles(result) == {"training_args.bin": "training_args"}
    assert result.report.runs[0].kind == "huggingface" and result.report.runs[0].grok_metric == "eval_accuracy"
    assert_entropies(result, tmp_path.name, {10: weights})
