"""A shard index that disagrees with its shards (grokspec.scan.shard_index):
tensors it names that no shard holds, and a tensor in two shards, are said
in a warning naming the checkpoint; what the shards hold is still scanned."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from grokspec.scan.scan import scan


def _tensors(seed: int, names: list[str]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(24, 16, generator=generator) for name in names}


def _sharded(folder: Path, shards: dict[str, list[str]], weight_map: dict[str, str], kind: str = "safetensors") -> None:
    """checkpoint-100/ with the given shards (file name -> tensor names) and index."""
    checkpoint = folder / "checkpoint-100"
    checkpoint.mkdir(parents=True)
    for seed, (file, names) in enumerate(shards.items()):
        if kind == "safetensors":
            save_file(_tensors(seed, names), checkpoint / file)
        else:
            torch.save(_tensors(seed, names), checkpoint / file)
    index = checkpoint / f"model.{kind}.index.json" if kind == "safetensors" else checkpoint / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _layer_rows(result) -> set[str]:
    return set(result.table["tensor"])


def test_an_index_that_agrees_with_its_shards_says_nothing(tmp_path):
    shards = {"model-00001-of-00002.safetensors": ["a.weight", "b.weight"], "model-00002-of-00002.safetensors": ["c.weight"]}
    _sharded(tmp_path, shards, {name: file for file, names in shards.items() for name in names})
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0
    assert not [w for w in result.warnings if "shard" in w], result.warnings
    assert {"a.weight", "b.weight", "c.weight"} <= _layer_rows(result)


def test_tensors_the_index_names_but_no_shard_holds_are_said(tmp_path):
    shards = {"model-00001-of-00002.safetensors": ["a.weight"], "model-00002-of-00002.safetensors": ["c.weight"]}
    weight_map = {"a.weight": "model-00001-of-00002.safetensors", "c.weight": "model-00002-of-00002.safetensors"}
    weight_map |= {"lost.weight": "model-00002-of-00002.safetensors", "gone.weight": "model-00001-of-00002.safetensors"}
    _sharded(tmp_path, shards, weight_map)
    result = scan(tmp_path, cache_path=None)
    notes = [w for w in result.warnings if "none of its shards holds" in w]
    assert len(notes) == 1 and "'lost.weight'" in notes[0] and "'gone.weight'" in notes[0] and "2 tensor(s)" in notes[0]
    assert "checkpoint-100" in notes[0]
    assert result.failed_checkpoints == 0
    assert {"a.weight", "c.weight"} <= _layer_rows(result)


def test_a_tensor_in_two_shards_is_said_and_scanned_once(tmp_path):
    shards = {"model-00001-of-00002.safetensors": ["a.weight", "b.weight"], "model-00002-of-00002.safetensors": ["b.weight"]}
    weight_map = {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}
    _sharded(tmp_path, shards, weight_map)
    result = scan(tmp_path, cache_path=None)
    notes = [w for w in result.warnings if "is in 2 shards" in w]
    assert len(notes) == 1 and "'b.weight'" in notes[0] and "the one in model-00002-of-00002.safetensors is scanned" in notes[0]
    rows = list(result.table["tensor"])  # one row per statistic: b as many as a, not twice as many
    assert rows.count("b.weight") == rows.count("a.weight") > 0


def test_pytorch_bin_shards_are_checked_too(tmp_path):
    shards = {"pytorch_model-00001-of-00002.bin": ["a.weight"], "pytorch_model-00002-of-00002.bin": ["a.weight", "c.weight"]}
    weight_map = {"a.weight": "pytorch_model-00001-of-00002.bin", "c.weight": "pytorch_model-00002-of-00002.bin"}
    weight_map["lost.weight"] = "pytorch_model-00001-of-00002.bin"
    _sharded(tmp_path, shards, weight_map, kind="bin")
    result = scan(tmp_path, cache_path=None)
    joined = "\n".join(result.warnings)
    assert "'lost.weight'" in joined and "none of its shards holds" in joined
    assert "'a.weight' is in 2 shards" in joined
    assert {"a.weight", "c.weight"} <= _layer_rows(result)
