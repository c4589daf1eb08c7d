"""The Hugging Face Hub's download cache (Pythia's and OLMo's checkpoint series are
published as revisions): one repo's snapshots are one run, steps from the refs.

The cache is written with huggingface_hub's own cache writers (the functions
hf_hub_download uses to place a blob, link it into a snapshot and record a
revision's commit), the snapshots' files by a real transformers
``save_pretrained``; huggingface_hub's ``scan_cache_dir`` confirms the library
reads the folder as the revisions we meant."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from grokspec.scan.scan import ScanResult, scan
from reference import reference_entropy

transformers = pytest.importorskip("transformers")
hub_download = pytest.importorskip("huggingface_hub.file_download")
if not all(hasattr(hub_download, f) for f in ("repo_folder_name", "_create_symlink", "_cache_commit_hash_for_specific_revision")):
    pytest.skip("huggingface_hub's cache writers have moved (private functions)", allow_module_level=True)
from huggingface_hub import scan_cache_dir  # noqa: E402


def tiny_gpt_neox(seed: int) -> transformers.PreTrainedModel:
    torch.manual_seed(seed)
    config = transformers.GPTNeoXConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=8
    )
    return transformers.GPTNeoXForCausalLM(config)


def cache_revision(cache: Path, repo_id: str, model: Any, commit: str, refs: list[str]) -> Path:
    """What hf_hub_download leaves for each file of one revision: a blob named by its
    hash, a link to it in snapshots/<commit>/, and refs/<revision> holding the commit."""
    storage = cache / hub_download.repo_folder_name(repo_id=repo_id, repo_type="model")
    staging = cache / "staging"
    model.save_pretrained(staging)
    snapshot = storage / "snapshots" / commit
    for file in sorted(f for f in staging.rglob("*") if f.is_file()):
        blob = storage / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(staging)
        link.parent.mkdir(parents=True, exist_ok=True)
        hub_download._create_symlink(str(blob), str(link), new_blob=True)
    shutil.rmtree(staging)
    for revision in refs:
        hub_download._cache_commit_hash_for_specific_revision(str(storage), revision, commit)
    return storage


def weights(snapshot: Path) -> dict[str, np.ndarray]:
    """The matrices of a snapshot's model.safetensors, read by the safetensors library."""
    return {k: v.astype(np.float64) for k, v in load_file(snapshot / "model.safetensors").items() if v.ndim == 2}


def entropies(result: ScanResult, run: str) -> dict[tuple[int, str], float]:
    t = result.table
    rows = t[(t["run"] == run) & (t["metric"] == "entropy")]
    return {(int(r.step), r.tensor): float(r.value) for r in rows.itertuples()}


def steps(result: ScanResult, run: str) -> list[tuple[str, int, str]]:
    t = result.table
    t = t[t["run"] == run].drop_duplicates("checkpoint")
    return sorted((r.checkpoint, int(r.step), r.step_source) for r in t.itertuples())


COMMITS = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(5)]


@pytest.fixture(scope="module")
def pythia_cache(tmp_path_factory) -> tuple[Path, dict[int, Path]]:
    """Three training revisions (the last also `main`) and a snapshot downloaded by its commit."""
    cache = tmp_path_factory.mktemp("hub")
    snapshots = {}
    for i, step in enumerate((1000, 2000, 3000)):
        refs = [f"step{step}"] + (["main"] if step == 3000 else [])
        storage = cache_revision(cache, "EleutherAI/pythia-tiny", tiny_gpt_neox(step), COMMITS[i], refs)
        snapshots[step] = storage / "snapshots" / COMMITS[i]
    cache_revision(cache, "EleutherAI/pythia-tiny", tiny_gpt_neox(7), COMMITS[3], [])  # no ref names it
    return cache, snapshots


def test_the_library_reads_the_cache_as_we_wrote_it(pythia_cache):
    cache, _ = pythia_cache
    (repo,) = scan_cache_dir(cache).repos
    assert repo.repo_id == "EleutherAI/pythia-tiny"
    assert {r.commit_hash: sorted(r.refs) for r in repo.revisions} == {
        COMMITS[0]: ["step1000"],
        COMMITS[1]: ["step2000"],
        COMMITS[2]: ["main", "step3000"],
        COMMITS[3]: [],
    }


def test_a_cached_repo_is_one_series_with_steps_from_its_revisions(pythia_cache):
    cache, snapshots = pythia_cache
    repo = "models--EleutherAI--pythia-tiny"
    result = scan(cache / repo)
    assert result.failed_checkpoints == 0
    assert steps(result, repo) == [("step1000", 1000, "name"), ("step2000", 2000, "name"), ("step3000", 3000, "name")]
    got = entropies(result, repo)
    want = {(step, name): reference_entropy(w) for step, snapshot in snapshots.items() for name, w in weights(snapshot).items()}
    assert len(want) >= 3 * 5  # embeddings, attention, MLP and the output head of every revision
    assert set(got) == set(want)
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-6, key
    # the snapshot no ref names is not placed in the series: a run of its own, named by its commit
    assert steps(result, f"{repo}/{COMMITS[3][:12]}")[0][0] == COMMITS[3][:12]
    assert sorted(set(result.table["run"])) == sorted([repo, f"{repo}/{COMMITS[3][:12]}"])


def test_the_cache_root_holds_one_run_per_repo(pythia_cache, tmp_path):
    cache, _ = pythia_cache
    shutil.copytree(cache, tmp_path / "hub", symlinks=True)
    cache_revision(tmp_path / "hub", "org/other", tiny_gpt_neox(5), COMMITS[4], ["main"])
    dataset = tmp_path / "hub" / "datasets--org--data" / "snapshots" / COMMITS[0]
    dataset.mkdir(parents=True)
    (dataset / "train.csv").write_text("a,b\n1,2\n")
    (tmp_path / "hub" / "datasets--org--data" / "refs").mkdir()
    result = scan(tmp_path / "hub")
    runs = set(result.table["run"])
    assert runs == {"models--EleutherAI--pythia-tiny", f"models--EleutherAI--pythia-tiny/{COMMITS[3][:12]}", "models--org--other"}
    # a repo with only `main` keeps the repo's name, its checkpoint named by the ref
    assert [c for c, _, _ in steps(result, "models--org--other")] == ["main"]


def test_one_snapshot_scanned_alone_gets_its_revision_step(pythia_cache):
    _, snapshots = pythia_cache
    snapshot = snapshots[2000]
    result = scan(snapshot)
    assert {(step, source) for _, step, source in steps(result, COMMITS[1])} == {(2000, "name")}
    got = entropies(result, COMMITS[1])
    for name, w in weights(snapshot).items():
        assert abs(got[(2000, name)] - reference_entropy(w)) <= 1e-6


def test_olmo_revision_names_give_the_step(tmp_path):
    cache_revision(tmp_path, "allenai/OLMo-tiny", tiny_gpt_neox(1), COMMITS[0], ["stage1-step140000-tokens588B"])
    cache_revision(tmp_path, "allenai/OLMo-tiny", tiny_gpt_neox(2), COMMITS[1], ["stage1-step20000-tokens84B"])
    result = scan(tmp_path / "models--allenai--OLMo-tiny")
    assert steps(result, "models--allenai--OLMo-tiny") == [
        ("stage1-step140000-tokens588B", 140000, "name"),
        ("stage1-step20000-tokens84B", 20000, "name"),
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hostile_refs_are_passed_over(tmp_path):
    storage = cache_revision(tmp_path, "org/m", tiny_gpt_neox(1), COMMITS[0], ["step10"])
    cache_revision(tmp_path, "org/m", tiny_gpt_neox(2), COMMITS[1], ["step20"])
    refs = storage / "refs"
    os.mkfifo(refs / "step30")  # would block a reader that opens it
    (refs / "step40").write_text(COMMITS[1] * 1000)  # too large to be a ref
    (refs / "step50").write_text("not a commit")
    (refs / "step60").write_text(COMMITS[4])  # a commit with no snapshot
    (refs / "step20").unlink()
    (refs / "step20").symlink_to(refs / "step20")  # a link to itself
    (refs / "step70").symlink_to(refs / "step10")  # a link to a good ref: links are never read
    result = scan(storage)
    assert steps(result, "models--org--m") == [("step10", 10, "name")]
    assert steps(result, f"models--org--m/{COMMITS[1][:12]}")[0][0] == COMMITS[1][:12]


def test_a_cached_diffusers_pipeline_series_reads_its_model_subfolders(tmp_path):
    """A diffusers repo keeps each model in a subfolder of the snapshot (``unet/``,
    ``scheduler/``, ``model_index.json``): nothing at the snapshot's top was scanned."""
    diffusers = pytest.importorskip("diffusers")
    unets = {}
    for i, step in enumerate((100, 200)):
        torch.manual_seed(step)
        unet = diffusers.UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
        )  # fmt: skip
        pipeline = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=10))
        storage = cache_revision(tmp_path, "org/ddpm-tiny", pipeline, COMMITS[i], [f"step{step}"])
        unets[step] = storage / "snapshots" / COMMITS[i] / "unet" / "diffusion_pytorch_model.safetensors"
    result = scan(tmp_path / "models--org--ddpm-tiny")
    assert result.failed_checkpoints == 0
    assert steps(result, "models--org--ddpm-tiny") == [("step100/unet", 100, "name"), ("step200/unet", 200, "name")]
    got = entropies(result, "models--org--ddpm-tiny")
    for step, path in unets.items():
        for name, value in load_file(path).items():
            if value.ndim >= 2 and min(value.shape[0], int(np.prod(value.shape[1:]))) >= 2:
                want = reference_entropy(value.astype(np.float64).reshape(value.shape[0], -1))
                assert abs(got[(step, name)] - want) <= 1e-6, (step, name)


def test_a_linked_refs_folder_is_not_followed(tmp_path):
    """refs/ as a link (to /proc, say) would have the reader open whatever lies there."""
    storage = cache_revision(tmp_path, "org/m", tiny_gpt_neox(1), COMMITS[0], ["step10"])
    elsewhere = tmp_path / "elsewhere"
    (storage / "refs").rename(elsewhere)
    (storage / "refs").symlink_to(elsewhere, target_is_directory=True)
    result = scan(storage)
    # not read as a cached repo: the snapshot is scanned as an ordinary folder, with no step from refs
    assert {r.kind for r in result.report.runs} != {"hub_cache"}
    assert set(result.table["step_source"]) != {"name"}
