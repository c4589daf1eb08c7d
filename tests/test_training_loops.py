"""Checkpoint files of two more training loops, written with ``torch.save`` in
their exact structures (the libraries pin torch versions of their own and are
not installed here):

- MosaicML Composer's ``CheckpointSaver``: ``ep{epoch}-ba{batch}-rank{rank}.pt``
  holding ``{"state": State.state_dict(), "rng": [per-rank RNG states]}`` (the
  model under ``state.model``), and the symlink ``latest-rank{rank}.pt`` to the
  newest;
- OpenCLIP's ``training/main.py``: ``checkpoints/epoch_{N}.pt`` and a separate
  ``epoch_latest.pt``, each ``{"epoch", "name", "state_dict", "optimizer"}``;
- nanoGPT's ``train.py``: ``out/ckpt.pt`` rewritten at each evaluation,
  ``{"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"}``;
- litgpt's pretraining: ``out/pretrain/step-00000100/lit_model.pth`` holding
  ``{"model", "optimizer", "iter_num", "step_count"}`` (``iter_num`` counts
  micro-batches, ``step_count`` optimizer steps, as the folder's name does);
- torchtune's ``FullModelHFCheckpointer`` with LoRA: ``epoch_N/`` holding the merged
  model as shards ``model-0000K-of-0000M.safetensors`` with their index, the adapter
  twice (``adapter_model.safetensors`` and ``adapter_model.pt``), and
  ``recipe_state/recipe_state.pt`` beside the epochs;
- ultralytics (YOLO): ``runs/detect/train/weights/`` with ``epochN.pt`` and
  ``last.pt`` holding the whole model pickled as ``ema`` (``model`` None) beside
  its optimizer, and the final ``best.pt`` with ``model`` set and ``epoch`` -1;
  the model's class pickled under ultralytics' module path (not importable here);
- detectron2's ``DetectionCheckpointer``: ``output/model_0004999.pth`` holding
  ``{"model", "optimizer", "scheduler", "iteration"}``, ``model_final.pth`` and the
  text file ``last_checkpoint``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from grokspec.scan.scan import ScanResult, scan
from grokspec.scan.steps import is_alias_name, step_from_name
from reference import reference_entropy


def small_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def composer_save(path: Path, model: torch.nn.Module, epoch: int, batch: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    state = {
        "model": {f"module.{k}": v for k, v in model.state_dict().items()},  # ComposerClassifier wraps `module`
        "optimizers": {"SGD": optimizer.state_dict()},
        "schedulers": [],
        "algorithms": [],
        "callbacks": {},
        "scaler": None,
        "timestamp": {"iteration": 0, "epoch": epoch, "batch": batch, "sample": batch * 2, "token": 0, "batch_in_epoch": 0},
        "rank_zero_seed": 42,
        "train_metrics": {},
        "eval_metrics": {},
        "run_name": "tiny-run",
        "integrations": {},
        "metadata": {"composer_env_info": {"composer_version": "0.x"}},
    }
    rng = [{"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.random.get_rng_state()}]
    torch.save({"state": state, "rng": rng}, path)


def entropies(result: ScanResult, run: str) -> dict[int, dict[str, float]]:
    t = result.table
    out: dict[int, dict[str, float]] = {}
    for r in t[(t["run"] == run) & (t["metric"] == "entropy")].itertuples():
        out.setdefault(int(r.step), {})[r.tensor] = float(r.value)
    return out


def assert_matches(got: dict[str, float], model: torch.nn.Module, prefix: str = "") -> None:
    want = {
        f"{prefix}{k}": reference_entropy(v.detach().to(torch.float64).numpy())
        for k, v in model.state_dict().items()
        if v.ndim == 2
    }
    assert set(got) == set(want) and len(want) == 2
    for name, value in want.items():
        assert abs(got[name] - value) <= 1e-6, name


def test_composer_checkpoints_are_one_series_in_batches_and_latest_is_a_link(tmp_path):
    models = {}
    for epoch, batch in ((0, 100), (1, 200), (2, 300)):
        models[batch] = small_model(batch)
        composer_save(tmp_path / f"ep{epoch}-ba{batch}-rank0.pt", models[batch], epoch, batch)
    os.symlink("ep2-ba300-rank0.pt", tmp_path / "latest-rank0.pt")
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {r.run: r.steps for r in result.report.runs} == {tmp_path.name: (100, 300)}
    assert {s.path: s.role for s in result.report.skipped} == {"latest-rank0.pt": "duplicate"}
    got = entropies(result, tmp_path.name)
    assert sorted(got) == [100, 200, 300]
    for batch, model in models.items():
        assert_matches(got[batch], model, "module.")  # the optimizer's momentum buffers are not weights


def test_a_list_of_rng_states_is_not_a_run_of_checkpoints(tmp_path):
    """Composer's `rng` is a list of dicts holding tensors: it was taken for a file that
    holds a whole run (of checkpoints without any matrix)."""
    composer_save(tmp_path / "ep0-ba7-rank0.pt", small_model(0), 0, 7)
    result = scan(tmp_path)
    assert [r.kind for r in result.report.runs] == ["files"] and not result.warnings
    assert sorted(entropies(result, result.report.runs[0].run)) == [7]


def test_openclip_epoch_latest_is_a_duplicate_of_the_newest_epoch(tmp_path):
    folder = tmp_path / "logs" / "run-name" / "checkpoints"
    folder.mkdir(parents=True)
    models = {epoch: small_model(epoch) for epoch in (1, 2, 3)}
    for epoch, model in models.items():
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        checkpoint = {"epoch": epoch, "name": "run-name", "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(checkpoint, folder / f"epoch_{epoch}.pt")
        torch.save(checkpoint, folder / "epoch_latest.pt")  # rewritten after every epoch
    result = scan(folder)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {r.run: r.steps for r in result.report.runs} == {"checkpoints": (1, 3)}
    assert {s.path: s.role for s in result.report.skipped} == {"epoch_latest.pt": "duplicate"}
    got = entropies(result, "checkpoints")
    for epoch, model in models.items():
        assert_matches(got[epoch], model)


def test_names_of_steps_and_aliases():
    names = ("ep0-ba100-rank0", "ep3", "ep3-rank1", "bad_12", "checkpoint_1_1000", "checkpoint7", "checkpoint-60")
    assert [step_from_name(n) for n in names] == [100, 3, 3, None, 1000, 7, 60]  # fairseq: updates, then epochs
    aliases = ("last", "last-v1", "latest-rank0", "epoch_latest", "model_best", "checkpoint_best", "final_model", "best")
    aliases += ("best_coco_bbox_mAP_epoch_12", "best_model_3_val_acc=0.9000")  # MMEngine, Ignite: led by the word
    assert all(is_alias_name(n) for n in aliases)
    assert not any(
        is_alias_name(n) for n in ("best3", "epoch_3", "ep0-ba100-rank0", "model", "init", "lastly", "final_model_seed2")
    )


def test_nanogpt_ckpt_step_is_its_iteration(tmp_path):
    model = small_model(3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4)
    config = {"n_layer": 1, "n_embd": 16, "learning_rate": 6e-4, "max_iters": 5000}
    checkpoint = {
        "model": {f"_orig_mod.{k}": v for k, v in model.state_dict().items()},  # torch.compile's prefix
        "optimizer": optimizer.state_dict(),
        "model_args": {"n_layer": 1, "n_embd": 16, "block_size": 64, "bias": False, "vocab_size": 50304},
        "iter_num": 2000,
        "best_val_loss": torch.tensor(3.21),
        "config": config,
    }
    (tmp_path / "out").mkdir()
    torch.save(checkpoint, tmp_path / "out" / "ckpt.pt")
    result = scan(tmp_path / "out")
    got = entropies(result, "out")
    assert sorted(got) == [2000]
    assert set(result.table["step_source"]) == {"metadata:iter_num"}
    assert_matches(got[2000], model, "_orig_mod.")


def test_litgpt_step_folders_count_optimizer_steps_not_micro_batches(tmp_path):
    out = tmp_path / "out" / "pretrain"
    models = {step: small_model(step) for step in (100, 200)}
    for step, model in models.items():
        folder = out / f"step-{step:08d}"
        folder.mkdir(parents=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": 4 * step, "step_count": step}
        torch.save(state, folder / "lit_model.pth")
        (folder / "model_config.yaml").write_text("n_layer: 1\n")
    result = scan(out)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {r.run: r.steps for r in result.report.runs} == {"pretrain": (100, 200)}
    got = entropies(result, "pretrain")
    assert set(result.table["step_source"]) == {"metadata:step_count"}
    for step, model in models.items():
        assert_matches(got[step], model)


def test_torchtune_epochs_hold_the_merged_model_and_the_adapter_apart(tmp_path):
    import json

    from safetensors.torch import save_file

    out = tmp_path / "torchtune-out"
    merged, adapters = {}, {}
    for epoch in (0, 1):
        folder = out / f"epoch_{epoch}"
        folder.mkdir(parents=True)
        torch.manual_seed(epoch)
        merged[epoch] = {f"model.layers.{i}.self_attn.q_proj.weight": torch.randn(16, 16) for i in range(2)}
        weight_map = {}
        for i, name in enumerate(merged[epoch]):
            shard = f"model-{i + 1:05d}-of-00002.safetensors"
            save_file({name: merged[epoch][name]}, folder / shard, metadata={"format": "pt"})
            weight_map[name] = shard
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 2048}, "weight_map": weight_map})
        )
        adapters[epoch] = {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(4, 16),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.randn(16, 4),
        }
        save_file(adapters[epoch], folder / "adapter_model.safetensors")
        torch.save(adapters[epoch], folder / "adapter_model.pt")
        (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
        (folder / "config.json").write_text("{}")
    (out / "recipe_state").mkdir()
    model = small_model(0)
    optimizer = torch.optim.AdamW(model.parameters())
    torch.save(
        {"seed": 1, "epochs_run": 2, "total_epochs": 2, "optimizer": optimizer.state_dict()},
        out / "recipe_state" / "recipe_state.pt",
    )
    result = scan(out)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {r.run: r.steps for r in result.report.runs} == {"torchtune-out": (0, 1), "torchtune-out/adapter_model": (0, 1)}
    skipped = {s.path: s.role for s in result.report.skipped}
    assert skipped == {
        "epoch_0/adapter_model.pt": "duplicate",
        "epoch_1/adapter_model.pt": "duplicate",
        "recipe_state/recipe_state.pt": "resume_state",
    }
    for run, states in (("torchtune-out", merged), ("torchtune-out/adapter_model", adapters)):
        got = entropies(result, run)
        for epoch, state in states.items():
            want = {k: reference_entropy(v.to(torch.float64).numpy()) for k, v in state.items()}
            assert set(got[epoch]) == set(want)
            assert all(abs(got[epoch][k] - v) <= 1e-6 for k, v in want.items())


def ultralytics_model_class() -> type:
    """A module class that pickles as ``ultralytics.nn.tasks.DetectionModel``."""
    import sys
    import types

    class DetectionModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.SiLU(), torch.nn.Conv2d(8, 16, 3))

    module = types.ModuleType("ultralytics.nn.tasks")
    DetectionModel.__module__ = module.__name__
    DetectionModel.__qualname__ = "DetectionModel"
    module.DetectionModel = DetectionModel  # type: ignore[attr-defined]
    for name in ("ultralytics", "ultralytics.nn"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[module.__name__] = module
    return DetectionModel


def test_ultralytics_weights_folder_reads_the_ema_and_leaves_the_stepless_best_aside(tmp_path, monkeypatch):
    import copy
    import sys

    for name in ("ultralytics", "ultralytics.nn", "ultralytics.nn.tasks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    model_class = ultralytics_model_class()
    folder = tmp_path / "runs" / "detect" / "train" / "weights"
    folder.mkdir(parents=True)
    models = {}
    for epoch, name in ((5, "epoch5.pt"), (9, "last.pt")):
        torch.manual_seed(epoch)
        models[epoch] = model_class()
        optimizer = torch.optim.SGD(models[epoch].parameters(), lr=0.01, momentum=0.9)
        checkpoint = {"epoch": epoch, "best_fitness": 0.5, "model": None, "ema": copy.deepcopy(models[epoch]).half()}
        checkpoint.update({"updates": 100, "optimizer": optimizer.state_dict(), "train_args": {"epochs": 10}, "version": "8.3"})
        torch.save(checkpoint, folder / name)
    best = {"epoch": -1, "best_fitness": 0.6, "model": copy.deepcopy(models[5]).half(), "ema": None, "optimizer": None}
    torch.save(best, folder / "best.pt")
    for name in ("ultralytics", "ultralytics.nn", "ultralytics.nn.tasks"):
        monkeypatch.delitem(sys.modules, name)  # the scan reads the files without the class
    result = scan(folder)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {s.path: s.role for s in result.report.skipped} == {"best.pt": "alias"}, "no invented step for best.pt"
    got = entropies(result, "weights")
    assert sorted(got) == [5, 9]
    for epoch, model in models.items():
        want = {}
        for key, value in model.state_dict().items():
            if value.ndim == 4:  # conv as out x (in*kh*kw), from the float16 weights the file holds
                want[key] = reference_entropy(value.half().double().numpy().reshape(value.shape[0], -1))
        assert set(got[epoch]) == set(want), "the names of the model, as in best.pt, not ema.model..."
        assert all(abs(got[epoch][k] - v) <= 1e-6 for k, v in want.items())


def test_detectron2_iterations_and_the_final_model(tmp_path):
    models = {}
    for iteration in (4999, 9999):
        models[iteration] = small_model(iteration)
        optimizer = torch.optim.SGD(models[iteration].parameters(), lr=0.02, momentum=0.9)
        state = {"model": models[iteration].state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration}
        torch.save({**state, "scheduler": {"base_lrs": [0.02], "last_epoch": iteration}}, tmp_path / f"model_{iteration:07d}.pth")
    torch.save({"model": models[9999].state_dict(), "iteration": 9999}, tmp_path / "model_final.pth")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0 and not result.warnings
    assert {s.path: s.role for s in result.report.skipped} == {"model_final.pth": "duplicate"}
    got = entropies(result, tmp_path.name)
    assert sorted(got) == [4999, 9999]
    assert set(result.table["step_source"]) == {"metadata:iteration"}
    for iteration, model in models.items():
        assert_matches(got[iteration], model)


def _stepped_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()  # Adam's moments: one 2-D exp_avg and exp_avg_sq per weight matrix
    return optimizer


def test_training_state_under_keys_of_the_users_choosing_is_not_read_as_weights(tmp_path):
    """A GAN's checkpoint (the DCGAN/CycleGAN scripts' structure) keeps two models and their
    optimizers and schedulers under names of its own — optimizer_G, optimizer_D, scheduler_G;
    DINO keeps a student, a teacher and a gradient scaler as fp16_scaler. The models are
    read; the training state is known by its content, whatever its key."""
    generators = {epoch: small_model(epoch) for epoch in (1, 2)}
    discriminators = {epoch: small_model(10 + epoch) for epoch in (1, 2)}
    for epoch in (1, 2):
        optimizer_g = _stepped_optimizer(generators[epoch])
        scheduler_g = torch.optim.lr_scheduler.StepLR(optimizer_g, step_size=5)
        checkpoint = {
            "generator": generators[epoch].state_dict(),
            "discriminator": discriminators[epoch].state_dict(),
            "optimizer_G": optimizer_g.state_dict(),
            "optimizer_D": _stepped_optimizer(discriminators[epoch]).state_dict(),
            "scheduler_G": scheduler_g.state_dict(),
            "fp16_scaler": torch.amp.GradScaler("cpu").state_dict(),
            "epoch": epoch,
        }
        torch.save(checkpoint, tmp_path / f"gan_epoch_{epoch}.pth")
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0 and not result.warnings
    got = entropies(result, tmp_path.name)
    assert sorted(got) == [1, 2]
    for epoch in (1, 2):
        assert_matches({k: v for k, v in got[epoch].items() if k.startswith("generator.")}, generators[epoch], "generator.")
        assert_matches(
            {k: v for k, v in got[epoch].items() if k.startswith("discriminator.")}, discriminators[epoch], "discriminator."
        )
        assert len(got[epoch]) == 4  # nothing of the optimizers' moments
