"""Megatron-LM's legacy checkpoints: ``iter_NNNNNNN/mp_rank_00/model_optim_rng.pt``
(the model under ``model``, its optimizer, RNG state and the training
``args`` beside it; ``latest_checkpointed_iteration.txt`` at the root) scan as
one series with the iteration as the step; a model split over several
model-parallel partitions is named in the warnings, not scanned as slices.

Megatron is not installed here: the files are written with torch.save in the
layout Megatron-LM's ``save_checkpoint`` writes (checkpointing.py), Transformer
Engine's ``_extra_state`` BytesIO entries included."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from grokspec.scan.options import ScanOptions
from grokspec.scan.scan import ScanInputError, scan
from reference import reference_entropy


def _save_iteration(root: Path, iteration: int, partitions: tuple[str, ...] = ("mp_rank_00",)) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(iteration)
    weights = {
        "embedding.word_embeddings.weight": torch.randn(64, 32, generator=g),
        "encoder.layers.0.self_attention.query_key_value.weight": torch.randn(96, 32, generator=g),
        "encoder.layers.0.mlp.dense_h_to_4h.weight": torch.randn(128, 32, generator=g),
    }
    encoder = {name.removeprefix("encoder."): w for name, w in weights.items() if name.startswith("encoder.")}
    encoder["layers.0.self_attention.query_key_value._extra_state"] = io.BytesIO(b"transformer-engine fp8 meta")
    encoder["final_layernorm.weight"] = torch.ones(32)
    model = {
        "language_model": {
            "embedding": {"word_embeddings": {"weight": weights["embedding.word_embeddings.weight"]}},
            "encoder": encoder,
        }
    }
    state = {
        "args": argparse.Namespace(lr=1e-3, tensor_model_parallel_size=len(partitions)),
        "checkpoint_version": 3.0,
        "iteration": iteration,
        "model": model,
        "optimizer": {"optimizer": {"state": {0: {"exp_avg": torch.randn(96, 32, generator=g)}}}},
        "opt_param_scheduler": {"max_lr": 1e-3, "num_steps": iteration},
        "rng_state": [{"random_rng_state": (3, tuple(range(5)), None), "torch_rng_state": torch.get_rng_state()}],
    }
    for partition in partitions:
        folder = root / f"iter_{iteration:07d}" / partition
        folder.mkdir(parents=True)
        torch.save(state, folder / "model_optim_rng.pt")
    (root / "latest_checkpointed_iteration.txt").write_text(str(iteration))
    return {f"language_model.{name}": w.numpy() for name, w in weights.items()}


def test_iterations_scan_as_one_series_with_their_steps(tmp_path):
    want = {it: _save_iteration(tmp_path, it) for it in (1000, 2000, 3000)}
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    assert not result.warnings
    table = result.table
    entropy = table[table["metric"] == "entropy"]
    assert set(entropy["run"]) == {tmp_path.name}
    assert sorted(set(entropy["step"])) == [1000, 2000, 3000]
    assert set(entropy["step_source"]) == {"metadata:iteration"}, "the iteration Megatron saves in the file (equal to iter_N)"
    for iteration, weights in want.items():
        rows = entropy[entropy["step"] == iteration]
        assert set(rows["tensor"]) == set(weights), "the optimizer's exp_avg and the 1-D norm are not matrices of the model"
        for name, matrix in weights.items():
            got = float(rows.loc[rows["tensor"] == name, "value"].iloc[0])
            assert got == pytest.approx(reference_entropy(matrix), abs=1e-6)


def test_a_model_split_over_partitions_is_named_not_scanned_as_slices(tmp_path):
    _save_iteration(tmp_path / "tp1", 1000)
    _save_iteration(tmp_path / "tp2", 1000, partitions=("mp_rank_00", "mp_rank_01"))
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    entropy = result.table[result.table["metric"] == "entropy"]
    assert set(entropy["run"]) == {"tp1"}
    [warning] = [w for w in result.warnings if "tp2" in w]
    assert "2 model-parallel partitions" in warning and "mp_rank_01" in warning


@pytest.mark.parametrize(
    ("layout", "files"),
    [
        ("meta", ["consolidated.00.pth", "consolidated.01.pth"]),
        ("deepspeed", ["global_step100/mp_rank_00_model_states.pt", "global_step100/mp_rank_01_model_states.pt"]),
    ],
)
def test_model_parallel_files_of_other_libraries_are_named_not_scanned(tmp_path, layout, files):
    # Meta's Llama releases above 7B: one consolidated.NN.pth per tensor-parallel rank beside
    # params.json; DeepSpeed with tensor parallelism: one mp_rank_NN_model_states.pt per rank.
    run = tmp_path / layout
    for i, name in enumerate(files):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"module": {"wq.weight": torch.randn(8, 16, generator=torch.Generator().manual_seed(i))}}, run / name)
    (run / "params.json").write_text('{"dim": 16}')
    whole = tmp_path / "whole"
    whole.mkdir()
    torch.save({"wq.weight": torch.randn(8, 16)}, whole / "consolidated.00.pth")  # one partition: the model
    result = scan(tmp_path, ScanOptions(), cache_path=None)
    entropy = result.table[result.table["metric"] == "entropy"]
    assert set(entropy["run"]) == {"whole"}, "slices of a matrix are never scanned as checkpoints of a series"
    [warning] = [w for w in result.warnings if "model-parallel" in w]
    assert "2 model-parallel partitions" in warning and Path(files[1]).name in warning


def test_a_folder_of_partitions_only_says_why_nothing_was_scanned(tmp_path):
    for i in range(2):
        torch.save({"wq.weight": torch.randn(8, 16)}, tmp_path / f"consolidated.0{i}.pth")
    with pytest.raises(ScanInputError, match=r"no checkpoints found.*2 model-parallel partitions"):
        scan(tmp_path, ScanOptions(), cache_path=None)
