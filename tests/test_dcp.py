"""torch.distributed checkpoints (DCP) as sharded training writes them.

The folders are written by ``torch.distributed.checkpoint.save`` itself — in
one process, and by two ranks each saving its shards of DTensors
(tests/dcp_writer.py) — in the layouts of Lightning's sharded FSDP
checkpoints (written by Lightning's own ``FSDPStrategy.save_checkpoint`` from
a real Trainer's checkpoint), of a real Hugging Face Trainer's output folder
and of accelerate's FSDP ``SHARDED_STATE_DICT`` (its folder names, contents
as its ``save_fsdp_model`` writes them). Each is
scanned as a user would; every matrix's entropy must be within 1e-6 of a
float64 LAPACK reference, training state never read as weights, and a
damaged or hostile folder reported while the rest of the scan goes on.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.distributed.checkpoint.filesystem import _StorageInfo

from grokspec.errors import CheckpointError
from grokspec.scan.formats import matrix_shape, open_checkpoint
from grokspec.scan.scan import ScanResult, scan
from hf_runs import tiny_bert_trainer
from reference import reference_entropy

# torch warns that a save without a process group is taken to be a single process: that is the case here.
# Lightning 2.6 on torch 2.15 warns about its own use of torch's pytree: nothing to do with what it writes.
pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
]


def entropies(result: ScanResult, run: str) -> dict[int, dict[str, float]]:
    t = result.table
    rows = t[(t["run"] == run) & (t["metric"] == "entropy")]
    out: dict[int, dict[str, float]] = {}
    for step, tensor, value in zip(rows["step"], rows["tensor"], rows["value"]):
        out.setdefault(int(step), {})[tensor] = float(value)
    return out


def expected_entropies(state: dict[str, torch.Tensor]) -> dict[str, float]:
    """The float64 reference for every matrix of a state dict (SPEC §5's reshaping)."""
    out = {}
    for name, tensor in state.items():
        shape = matrix_shape(tuple(tensor.shape))
        if shape is not None and min(shape) >= 2 and tensor.is_floating_point():
            out[name] = reference_entropy(tensor.detach().to(torch.float64).numpy().reshape(shape))
    return out


def assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for name, value in want.items():
        assert abs(got[name] - value) <= 1e-6, f"{name}: {got[name]} vs {value}"


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, count: int) -> None:
    for _ in range(count):
        x = torch.randn(8, model[0].in_features)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()


def small_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))


@pytest.fixture
def dcp_series(tmp_path: Path) -> tuple[Path, dict[int, dict[str, torch.Tensor]]]:
    """step_100/, step_200/, step_300/: model, AdamW state and the step, saved by DCP in one process."""
    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    saved = {}
    for step in (100, 200, 300):
        train_steps(model, optimizer, 3)
        state = {"model": model.state_dict(), "optim": optimizer.state_dict(), "step": step}
        dcp.save(state, checkpoint_id=tmp_path / "run" / f"step_{step}")
        saved[step] = {k: v.clone() for k, v in model.state_dict().items()}
    return tmp_path / "run", saved


def test_a_series_of_dcp_folders_scans_like_any_checkpoints(dcp_series):
    run, saved = dcp_series
    result = scan(run)
    got = entropies(result, "run")
    assert sorted(got) == [100, 200, 300]
    for step, state in saved.items():
        assert_close(got[step], expected_entropies(state))  # the optimizer's exp_avg and exp_avg_sq are not weights
    table = result.table
    assert set(table["step_source"]) == {"metadata:step"}
    assert set(table["checkpoint"]) == {"step_100", "step_200", "step_300"}
    assert result.report.failed_checkpoints == 0


def test_one_dcp_folder_scanned_on_its_own(dcp_series):
    run, saved = dcp_series
    result = scan(run / "step_200")
    got = entropies(result, "step_200")
    assert list(got) == [200]
    assert_close(got[200], expected_entropies(saved[200]))


def test_rescan_uses_the_cache_and_a_changed_chunk_is_recomputed(dcp_series, tmp_path, monkeypatch):
    from grokspec.scan import compute

    run, _saved = dcp_series
    cache = tmp_path / "cache.sqlite"
    first = scan(run, cache_path=cache)
    computed: list[int] = []
    real = compute.compute_sources

    def counting(sources: list[Any], options: Any) -> Any:
        computed.append(len(sources))
        return real(sources, options)

    monkeypatch.setattr(compute, "compute_sources", counting)
    assert entropies(scan(run, cache_path=cache), "run") == entropies(first, "run")
    assert computed == []  # nothing recomputed
    # Save other weights as step_300: its files change, so its rows must too.
    torch.manual_seed(1)
    other = small_model()
    shutil.rmtree(run / "step_300")
    dcp.save({"model": other.state_dict(), "step": 300}, checkpoint_id=run / "step_300")
    again = entropies(scan(run, cache_path=cache), "run")
    assert_close(again[300], expected_entropies(other.state_dict()))
    assert computed == [2]  # step_300's two matrices, and only them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tensor_properties_pickled_as_fields_as_older_torch_did(dcp_series, monkeypatch):
    """Before torch 2.1 TensorProperties had no __getstate__: its fields were pickled as a dict."""
    from torch.distributed.checkpoint.metadata import TensorProperties

    run, saved = dcp_series
    monkeypatch.setattr(TensorProperties, "__getstate__", lambda self: {"dtype": self.dtype, "requires_grad": False})
    _rewrite_metadata(run / "step_100", lambda metadata: None)
    monkeypatch.undo()
    got = entropies(scan(run / "step_100"), "step_100")
    assert_close(got[100], expected_entropies(saved[100]))


def test_shards_of_two_ranks_are_joined(tmp_path):
    """Two gloo ranks save DTensors sharded by rows, by columns and replicated:
    every tensor's chunks lie in both ranks' files and must be put together."""
    sys.path.insert(0, str(Path(__file__).parent))
    import dcp_writer

    folder = tmp_path / "ckpt" / "step-40"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [sys.executable, str(Path(__file__).parent / "dcp_writer.py"), str(folder), "40", str(_free_port())],
        check=True, env=env, timeout=300, capture_output=True,
    )  # fmt: skip
    assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    result = scan(tmp_path / "ckpt")
    got = entropies(result, "ckpt")
    assert list(got) == [40]
    assert_close(got[40], expected_entropies(dcp_writer.full_tensors(40)))
    heads = result.table[(result.table["tensor"] == "layers.0.heads") & (result.table["metric"] == "entropy")]
    assert (int(heads["rows"].iloc[0]), int(heads["cols"].iloc[0])) == (48, 10)  # (heads·a) × b, as SPEC §5 says


def test_lightning_sharded_fsdp_checkpoints(tmp_path):
    """A real Trainer's checkpoints written by Lightning's FSDPStrategy in its
    "sharded" mode: `epoch=E-step=S.ckpt/` folders with meta.pt beside the DCP files."""
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.strategies import FSDPStrategy

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = small_model()

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            return self.net(batch[0]).square().mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    saved: dict[int, dict[str, torch.Tensor]] = {}
    folder = tmp_path / "lightning"

    class ShardedSave(pl.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
            if trainer.global_step % 2 == 0:
                checkpoint = trainer._checkpoint_connector.dump_checkpoint()
                path = folder / f"epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
                FSDPStrategy(state_dict_type="sharded").save_checkpoint(checkpoint, path)
                saved[trainer.global_step] = {k: v.clone() for k, v in module.state_dict().items()}

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(48, 24)), batch_size=8)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[ShardedSave()],
    )  # fmt: skip
    trainer.fit(Module(), data)
    assert sorted(saved) == [2, 4, 6] and (folder / "epoch=0-step=2.ckpt" / "meta.pt").is_file()
    result = scan(folder)
    got = entropies(result, "lightning")
    assert sorted(got) == [2, 4, 6]
    for step, state in saved.items():
        assert_close(got[step], expected_entropies(state))  # optimizer_0's state is not read as weights
    assert set(result.table["step_source"]) == {"metadata:global_step"}  # from meta.pt
    assert result.report.run("lightning").kind == "lightning"


def test_accelerate_fsdp_sharded_state(tmp_path):
    """accelerate's save_state under FSDP's SHARDED_STATE_DICT: checkpoint_K/ with
    pytorch_model_fsdp_0/ (the model), optimizer_0/ (skipped) and RNG state."""
    accelerate = pytest.importorskip("accelerate")
    from accelerate.utils.constants import FSDP_MODEL_NAME, OPTIMIZER_NAME

    torch.manual_seed(0)
    model = small_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    accelerator = accelerate.Accelerator(cpu=True)
    saved = {}
    for save in range(2):
        train_steps(model, optimizer, 2)
        out = tmp_path / "project" / "checkpoints" / f"checkpoint_{save}"
        accelerator.save_state(str(out))  # random_states_0.pkl
        dcp.save({"model": model.state_dict()}, checkpoint_id=out / f"{FSDP_MODEL_NAME}_0")
        dcp.save({"optimizer": optimizer.state_dict()}, checkpoint_id=out / f"{OPTIMIZER_NAME}_0")
        saved[save] = {k: v.clone() for k, v in model.state_dict().items()}
    result = scan(tmp_path / "project")
    got = entropies(result, "checkpoints")
    assert sorted(got) == [0, 1]
    for save, state in saved.items():
        assert_close(got[save], expected_entropies(state))
    assert set(result.table["step_source"]) == {"order"}
    skipped = {s.path: s.role for s in result.report.skipped}
    assert skipped["checkpoints/checkpoint_0/optimizer_0"] == "optimizer"
    assert skipped["checkpoints/checkpoint_1/random_states_0.pkl"] == "rng_state"
    assert result.report.failed_checkpoints == 0


# --- damaged and hostile folders ---------------------------------------------------------


def _rewrite_metadata(folder: Path, change: Any) -> None:
    """Loads the real Metadata object with torch, lets `change` edit it, pickles it back."""
    with open(folder / ".metadata", "rb") as handle:
        metadata = pickle.load(handle)  # our own test file
    change(metadata)
    with open(folder / ".metadata", "wb") as handle:
        pickle.dump(metadata, handle)


def _point_outside(metadata: Any) -> None:
    for key, info in metadata.storage_data.items():
        metadata.storage_data[key] = _StorageInfo("../secret.distcp", info.offset, info.length)


def _chunk_outside(metadata: Any) -> None:
    for entry in metadata.state_dict_metadata.values():
        if hasattr(entry, "chunks"):
            entry.chunks[0].sizes = torch.Size([n + 5 for n in entry.chunks[0].sizes])


def _truncate(folder: Path) -> None:
    data = folder / "__0_0.distcp"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _code(folder: Path) -> None:
    marker = folder.parent.parent / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    (folder / ".metadata").write_bytes(pickle.dumps(Payload()))


DAMAGE = {
    "a file outside the folder": (lambda f: _rewrite_metadata(f, _point_outside), "climbs out"),
    "a chunk outside its tensor": (lambda f: _rewrite_metadata(f, _chunk_outside), "outside its shape"),
    "a truncated data file": (_truncate, "truncated"),
    "code in the metadata": (_code, "DCP Metadata"),
    "garbage metadata": (lambda f: (f / ".metadata").write_bytes(b"\x80\x05garbage"), "cannot be read"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_folder_is_reported_and_the_rest_scanned(dcp_series, damage):
    run, saved = dcp_series
    spoil, words = DAMAGE[damage]
    spoil(run / "step_200")
    result = scan(run)
    assert result.report.failed_checkpoints == 1
    assert any("step_200" in w and words in w for w in result.report.warnings), result.report.warnings
    got = entropies(result, "run")
    assert sorted(got) == [100, 300]
    assert_close(got[300], expected_entropies(saved[300]))
    assert not (run.parent / "ran").exists()


def test_a_checkpoint_larger_than_a_batch_is_computed_in_bounded_batches(dcp_series, monkeypatch):
    """Tensors of a pickle or DCP folder are read into memory: a checkpoint larger
    than a batch's budget goes to the engine in several batches, never held whole,
    with the same numbers as in one batch."""
    from grokspec.scan import compute

    run, _saved = dcp_series
    whole = scan(run).table
    batches: list[int] = []
    real = compute.compute_sources

    def recording(sources, options):
        batches.append(sum(s.nbytes for s in sources))
        return real(sources, options)

    monkeypatch.setattr(compute, "compute_sources", recording)
    monkeypatch.setattr(compute, "GROUP_BYTES", 1000)
    split = scan(run).table
    largest = 16 * 24 * 4  # the largest matrix, in float32
    assert sum(batches) == 3 * (16 * 24 + 8 * 16) * 4  # every matrix of the 3 checkpoints, once
    assert len(batches) >= 3 and max(batches) <= 1000 + largest
    assert split.equals(whole)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[bytes, bytes]:
    folder = tmp_path_factory.mktemp("pristine") / "step_5"
    torch.manual_seed(0)
    dcp.save({"model": small_model().state_dict(), "step": 5}, checkpoint_id=folder)
    return (folder / ".metadata").read_bytes(), (folder / "__0_0.distcp").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_is_a_checkpoint_error_or_a_reading(pristine, tmp_path, data):
    """A few bytes changed anywhere in the metadata or the data file: opening the
    folder and reading its matrices works or raises CheckpointError, nothing else."""
    metadata, payload = (bytearray(b) for b in pristine)
    target = data.draw(st.sampled_from([metadata, payload]))
    for _ in range(data.draw(st.integers(1, 4))):
        target[data.draw(st.integers(0, len(target) - 1))] = data.draw(st.integers(0, 255))
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # tmp_path is shared by the examples
    (folder / ".metadata").write_bytes(bytes(metadata))
    (folder / "__0_0.distcp").write_bytes(bytes(payload))
    try:
        checkpoint = open_checkpoint(folder)
        for info in checkpoint.tensors():
            shape = matrix_shape(info.shape)
            if info.is_float and shape is not None:
                checkpoint.sources([(info.name, *shape)])
    except CheckpointError:
        pass


class _Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_code_in_an_object_saved_beside_the_weights_is_named_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    torch.manual_seed(0)
    model = small_model()
    dcp.save({"model": model.state_dict(), "extra": _Payload(marker), "step": 7}, checkpoint_id=tmp_path / "run" / "step_7")
    result = scan(tmp_path / "run")
    assert not marker.exists()
    assert any("system" in w and "nothing of it was run" in w for w in result.report.warnings), (
        result.report.warnings
    )  # posix.system
    assert_close(entropies(result, "run")[7], expected_entropies(model.state_dict()))


@pytest.mark.slow
def test_hf_trainer_checkpoints_under_fsdp_sharded_state(tmp_path):
    """A real Trainer's output folder with each checkpoint-N/ as FSDP's SHARDED_STATE_DICT
    leaves it (accelerate's save_fsdp_model inside the Trainer): pytorch_model_fsdp_0/ and
    optimizer_0/ instead of model.safetensors and optimizer.pt; trainer_state.json kept."""
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    out = tmp_path / "hf_out"
    tiny_bert_trainer(out, max_steps=4, layers=1).train()
    saved = {}
    for step in (2, 4):
        folder = out / f"checkpoint-{step}"
        weights = load_file(folder / "model.safetensors")
        optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
        (folder / "model.safetensors").unlink()
        (folder / "optimizer.pt").unlink()
        dcp.save({"model": weights}, checkpoint_id=folder / "pytorch_model_fsdp_0")
        dcp.save({"optimizer": optimizer}, checkpoint_id=folder / "optimizer_0")
        saved[step] = weights
    result = scan(out, cache_path=None)
    assert result.report.failed_checkpoints == 0
    assert result.report.run("hf_out").kind == "huggingface"
    got = entropies(result, "hf_out")
    assert sorted(got) == [2, 4]
    for step, weights in saved.items():
        assert_close(got[step], expected_entropies(weights))
    skipped = {s.path: s.role for s in result.report.skipped}
    assert skipped["checkpoint-2/optimizer_0"] == skipped["checkpoint-4/optimizer_0"] == "optimizer"
    assert "eval_loss" in set(result.table["metric"])  # trainer_state.json's metrics are still read


def test_an_unfinished_save_is_named_not_ignored(dcp_series):
    """A save that died before writing .metadata leaves only .distcp files: the scan says so."""
    run, _saved = dcp_series
    (run / "step_300" / ".metadata").unlink()
    result = scan(run)
    assert sorted(entropies(result, "run")) == [100, 200]
    assert any("step_300" in w and "without .metadata" in w for w in result.report.warnings), result.report.warnings
