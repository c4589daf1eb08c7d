"""`grokspec scan` over every checkpoint format, bad input, caching and outputs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from grokspec import _core, spectral_stats
from grokspec.cli import main
from grokspec.errors import CheckpointError, GrokspecError
from grokspec.scan.formats import matrix_shape
from grokspec.scan.scan import ScanInputError, ScanOptions, scan

WEIGHT_COLUMNS = ["step", "tensor", "rows", "cols", "metric", "value"]


def weights(step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return {
        "encoder.layer.weight": torch.randn(20, 10, generator=g),
        "attn.qkv": torch.randn(3, 8, 16, generator=g),
        "conv.weight": torch.randn(6, 3, 3, 3, generator=g),
        "encoder.layer.bias": torch.randn(10, generator=g),
        "embed": torch.randn(30, 12, generator=g),
        "position_ids": torch.arange(12).view(1, 12),
    }


def write_format(kind: str, directory: Path, step: int) -> None:
    sd = weights(step)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "safetensors":
        save_file(sd, directory / f"step_{step}.safetensors")
    elif kind == "sharded":
        names = sorted(sd)
        shards = {f"model-{step}-0001.safetensors": names[:3], f"model-{step}-0002.safetensors": names[3:]}
        for shard, keys in shards.items():
            save_file({k: sd[k] for k in keys}, directory / shard)
        index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
        (directory / f"step_{step}.safetensors.index.json").write_text(json.dumps(index))
    elif kind == "pt":
        torch.save(sd, directory / f"step_{step}.pt")
    elif kind in ("state_dict", "model_state_dict", "module"):
        torch.save({kind: sd, "global_step": step}, directory / f"ckpt_{kind}_{step}.pth")
    elif kind == "nanda":
        torch.save(
            {"model": sd, "optimizer": {"lr": 1e-3}, "train_losses": [1.0, 0.5], "epoch": step},
            directory / f"run_epoch_{step}.pth",
        )
    elif kind == "huggingface":
        checkpoint = directory / f"checkpoint-{step}"
        checkpoint.mkdir()
        save_file(sd, checkpoint / "model.safetensors")
        history = [{"step": s, "eval_accuracy": s / 400, "loss": 1 / s} for s in range(50, step + 1, 50)]
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    elif kind == "lightning":
        torch.save({"state_dict": sd, "global_step": step, "epoch": 0}, directory / f"epoch=0-step={step}.ckpt")
    elif kind == "npz":
        np.savez(directory / f"step_{step}.npz", **{k: v.numpy() for k, v in sd.items()})
    else:
        raise ValueError(kind)


FORMATS = ["safetensors", "sharded", "pt", "state_dict", "model_state_dict", "module", "nanda", "huggingface", "lightning", "npz"]


def weight_rows(result) -> pd.DataFrame:
    t = result.table
    rows = t[t["tensor"] != ""][WEIGHT_COLUMNS]
    return rows.sort_values(["step", "tensor", "metric"]).reset_index(drop=True)


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gives_the_same_rows_equal_to_the_engine(tmp_path, kind):
    for step in (100, 200):
        write_format(kind, tmp_path / kind, step)
    result = scan(tmp_path / kind, cache_path=None)
    assert result.failed_checkpoints == 0 and not [w for w in result.warnings if "tensor" in w]
    rows = weight_rows(result)
    # Reference: the same tensors through the library API.
    expected = []
    for step in (100, 200):
        for name, tensor in weights(step).items():
            shape = matrix_shape(tuple(tensor.shape))
            if shape is None or not tensor.is_floating_point():
                continue
            stats = spectral_stats(tensor.reshape(shape))
            for metric in ("entropy", "sigma_max", "frobenius_norm", "stable_rank", "effective_rank", "numerical_rank"):
                expected.append(
                    {
                        "step": step,
                        "tensor": name,
                        "rows": shape[0],
                        "cols": shape[1],
                        "metric": metric,
                        "value": float(getattr(stats, metric)),
                    }
                )
    want = pd.DataFrame(expected).sort_values(["step", "tensor", "metric"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, want, check_dtype=False, rtol=1e-12, atol=1e-12)
    assert set(rows["tensor"]) == {"encoder.layer.weight", "attn.qkv", "conv.weight", "embed"}, (
        "1-D and integer tensors are skipped"
    )


def test_bf16_and_f16_read_by_the_engine_match_torch(tmp_path):
    sd = {"w16": torch.randn(40, 24).half(), "wbf": torch.randn(33, 70).bfloat16()}
    (tmp_path / "st").mkdir()
    (tmp_path / "pt").mkdir()
    save_file(sd, tmp_path / "st" / "step_5.safetensors")
    torch.save(sd, tmp_path / "pt" / "step_5.pt")
    result = scan(tmp_path, cache_path=None)
    t = result.table
    for name, tensor in sd.items():
        values = t[(t["tensor"] == name) & (t["metric"] == "entropy")]["value"].tolist()
        assert len(values) == 2, "one row from safetensors, one from the .pt"
        assert values[0] == pytest.approx(values[1], abs=1e-12)
        assert values[0] == pytest.approx(spectral_stats(tensor).entropy, abs=1e-12)
    assert set(t[t["tensor"] == "wbf"]["dtype"]) == {"bfloat16"}


def test_step_sources(tmp_path):
    torch.save(weights(1), tmp_path / "step_300.pt")
    torch.save({"model": weights(2), "step": 7}, tmp_path / "step_400.pt")  # metadata wins over the name
    torch.save(weights(3), tmp_path / "step_init.pt")
    result = scan(tmp_path, cache_path=None)
    got = result.table.drop_duplicates("checkpoint").set_index("checkpoint")[["step", "step_source"]]
    assert got.loc["step_300.pt"].tolist() == [300, "name"]
    assert got.loc["step_400.pt"].tolist() == [7, "metadata:step"]
    names = tmp_path / "unnamed"
    names.mkdir()
    for i, name in enumerate(["b.pt", "a.pt", "c.pt"]):
        torch.save(weights(i), names / name)
        os.utime(names / name, ns=(10**18 + i, 10**18 + i))
    result = scan(names, cache_path=None)
    by_time = result.table.drop_duplicates("checkpoint").set_index("checkpoint")
    assert by_time.loc["b.pt", "step"] == 0 and by_time.loc["c.pt", "step"] == 2
    assert set(by_time["step_source"]) == {"mtime"}
    init = tmp_path / "init_dir"
    init.mkdir()
    torch.save(weights(4), init / "init.pt")
    torch.save(weights(5), init / "50.pt")
    steps = scan(init, cache_path=None).table.drop_duplicates("checkpoint").set_index("checkpoint")["step"]
    assert steps["init.pt"] == 0 and steps["50.pt"] == 50


def test_a_pickle_that_asks_to_run_code_is_read_as_inert_data(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": {"w": torch.randn(4, 4)}, "payload": Exploit()}, tmp_path / "step_1.pt")
    torch.save(weights(2), tmp_path / "step_2.pt")
    result = scan(tmp_path, cache_path=None)
    assert not marker.exists(), "the pickle's code ran"
    assert result.failed_checkpoints == 0, "the weights beside the payload are read (tests/test_safe_pickle.py has the payloads)"
    assert any("step_1.pt" in w and "system" in w and "nothing of it was run" in w for w in result.warnings)
    assert set(result.table["step"]) == {1, 2}
    # The same file with trust: the payload runs (so the check above can fail).
    scan(tmp_path, ScanOptions(trust_pickle=True), cache_path=None)
    assert marker.exists()


def test_corrupt_truncated_and_lying_files_are_warnings(tmp_path):
    save_file(weights(1), tmp_path / "step_1.safetensors")
    data = (tmp_path / "step_1.safetensors").read_bytes()
    (tmp_path / "step_2.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    header["embed"]["shape"] = [300, 12]  # lies about its size
    lying = json.dumps(header).encode()
    (tmp_path / "step_3.safetensors").write_bytes(len(lying).to_bytes(8, "little") + lying + data[8 + header_len :])
    (tmp_path / "step_4.safetensors").write_bytes(b"\x00" * 3)
    (tmp_path / "step_5.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "step_6.npz").write_bytes(b"PK\x03\x04 broken")
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 5
    assert set(result.table["step"]) == {1}
    joined = "\n".join(result.warnings)
    for name in ("step_2", "step_3", "step_4", "step_5", "step_6"):
        assert name in joined
    assert "outside" in joined or "truncated" in joined
    assert "needs" in joined  # the lying header names the size mismatch


def test_nan_tensor_is_a_warning_and_the_rest_is_scanned(tmp_path):
    sd = weights(1)
    sd["embed"][3, 4] = float("nan")
    save_file(sd, tmp_path / "step_1.safetensors")
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0
    assert any("embed" in w and "NaN" in w for w in result.warnings)
    assert "embed" not in set(result.table["tensor"]) and "conv.weight" in set(result.table["tensor"])


def test_empty_and_checkpointless_directories_cannot_be_scanned(tmp_path):
    with pytest.raises(ScanInputError, match="no checkpoints"):
        scan(tmp_path, cache_path=None)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ScanInputError, match="no checkpoints"):
        scan(tmp_path, cache_path=None)
    with pytest.raises(ScanInputError, match="not a directory"):
        scan(tmp_path / "missing", cache_path=None)


def test_a_folder_of_foreign_weights_names_their_formats(tmp_path):
    # Flax, Keras, TensorFlow and GGUF weights are not read; the error says
    # what was there instead of only "no checkpoints found". Nothing is opened.
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "flax_model.msgpack").write_bytes(b"\x81\xa3not read")
    (tmp_path / "tf" / "ckpt").mkdir(parents=True)
    (tmp_path / "tf" / "ckpt" / "ckpt-5.data-00000-of-00001").write_bytes(b"")
    (tmp_path / "model.Q4_K_M.gguf").write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ScanInputError) as raised:
        scan(tmp_path, cache_path=None)
    message = str(raised.value)
    assert "no checkpoints found" in message
    assert "checkpoint-10/flax_model.msgpack (Flax/JAX msgpack)" in message
    assert "model.Q4_K_M.gguf (GGUF" in message
    assert "ckpt-5.data-00000-of-00001 (TensorFlow checkpoint)" in message
    assert "notes.txt" not in message
    # A tree deeper than Python's recursion limit is not walked to the bottom
    # (discovery's walk raised RecursionError before), and says so.
    deep = tmp_path / "deep"
    deep.mkdir()
    for _ in range(1200):
        deep = deep / "d"
        deep.mkdir()  # 2,400 characters of path: still under PATH_MAX
    try:
        with pytest.raises(ScanInputError, match="no checkpoints found") as raised:
            scan(tmp_path, cache_path=None)
        assert "levels deep are not searched" in str(raised.value)
    finally:  # bottom up, without recursion (shutil.rmtree and pytest's cleanup recurse)
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent
    # Beside a readable checkpoint they are not an error.
    save_file({"w": torch.randn(8, 6)}, tmp_path / "step_1.safetensors")
    assert set(scan(tmp_path, cache_path=None).table["tensor"]) == {"w"}


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else False, reason="root reads any file")
def test_unreadable_file_is_a_warning(tmp_path):
    torch.save(weights(1), tmp_path / "step_1.pt")
    torch.save(weights(2), tmp_path / "step_2.pt")
    (tmp_path / "step_2.pt").chmod(0)
    try:
        result = scan(tmp_path, cache_path=None)
    finally:
        (tmp_path / "step_2.pt").chmod(0o600)
    assert result.failed_checkpoints == 1 and set(result.table["step"]) == {1}


def test_unreadable_file_is_a_warning_even_for_root(tmp_path, monkeypatch):
    import grokspec.scan.scan as scan_module

    torch.save(weights(1), tmp_path / "step_1.pt")
    torch.save(weights(2), tmp_path / "step_2.pt")
    real = scan_module.open_checkpoint

    def denied(path, **kwargs):
        if path.name == "step_2.pt":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(scan_module, "open_checkpoint", denied)
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 1
    assert any("Permission denied" in w for w in result.warnings)


def test_mixed_runs_in_one_tree_and_duplicate_steps(tmp_path):
    for step in (1, 2):
        torch.save(weights(step), tmp_path / f"alpha_step{step}.pt")
        torch.save(weights(step + 10), tmp_path / f"beta_step{step}.pt")
        write_format("huggingface", tmp_path / "hf", step * 100)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    save_file(weights(7), tmp_path / "deep" / "er" / "step_100.safetensors")
    save_file(weights(8), tmp_path / "deep" / "er" / "step_0100.safetensors")  # the same step again
    result = scan(tmp_path, cache_path=None)
    runs = set(result.table["run"])
    assert {f"{tmp_path.name}/alpha_step#", f"{tmp_path.name}/beta_step#", "hf", "deep/er"} <= runs
    assert any("step 100 appears twice" in w for w in result.warnings)
    deep = result.table[result.table["run"] == "deep/er"]
    assert set(deep["checkpoint"]) == {"step_0100.safetensors"}, "the first by name is kept"
    hf = result.table[(result.table["run"] == "hf") & (result.table["metric"] == "eval_accuracy")]
    assert len(hf) == 4 and set(hf["step_source"]) == {"log"}


def test_rescan_computes_only_new_checkpoints_and_resumes_after_interruption(tmp_path, monkeypatch):
    import grokspec.scan.scan as scan_module

    for step in (1, 2, 3):
        torch.save(weights(step), tmp_path / f"step_{step}.pt")
    calls = []
    real = scan_module._compute_group

    def counting(group, *args):
        calls.extend(p.ref.label for p in group)
        return real(group, *args)

    monkeypatch.setattr(scan_module, "_compute_group", counting)
    cache = tmp_path / "out" / "cache.sqlite"

    def interrupt(done, total, text):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(tmp_path, cache_path=cache, progress=interrupt)
    assert calls[:2] == ["step_1.pt", "step_2.pt"]
    calls.clear()
    first = scan(tmp_path, cache_path=cache)
    assert calls == ["step_3.pt"], "only what the interrupted scan had not finished"
    torch.save(weights(4), tmp_path / "step_4.pt")
    calls.clear()
    second = scan(tmp_path, cache_path=cache)
    assert calls == ["step_4.pt"]
    old = second.table[second.table["step"] < 4].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, first.table.reset_index(drop=True))
    # A rewritten checkpoint (new mtime/size) is recomputed; other options too.
    torch.save(weights(99), tmp_path / "step_2.pt")
    calls.clear()
    scan(tmp_path, cache_path=cache)
    assert calls == ["step_2.pt"]
    calls.clear()
    scan(tmp_path, ScanOptions(power=1.0), cache_path=cache)
    assert len(calls) == 4


def test_two_scans_of_one_directory_at_once(tmp_path):
    for step in range(1, 7):
        save_file(weights(step), tmp_path / f"step_{step}.safetensors")
    command = [sys.executable, "-m", "grokspec.cli", "scan", str(tmp_path), "--quiet", "--json"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        assert json.loads(out)["runs"][0]["checkpoints"] == 6
    table = pd.read_csv(tmp_path / "grokspec-scan" / "spectra.csv")
    assert sorted(table["step"].unique()) == list(range(1, 7))
    assert not list((tmp_path / "grokspec-scan").glob("*.tmp")) and not list((tmp_path / "grokspec-scan").glob(".*.tmp"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(0, 2**16))
def test_fuzzed_safetensors_headers_are_read_or_refused_never_crash(tmp_path, body, length):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(length.to_bytes(8, "little") + body)
    try:
        tensors, _ = _core.safetensors_header(str(path))
    except CheckpointError:
        return
    for name, dtype, shape in tensors:
        assert isinstance(name, str) and isinstance(dtype, str) and all(d >= 0 for d in shape)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_json_headers_with_valid_framing(tmp_path, data):
    entry = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "Q4", ""]),
            "shape": st.lists(st.integers(-2, 40), max_size=4),
            "data_offsets": st.lists(st.integers(-5, 10_000), min_size=0, max_size=3),
        }
    )
    header = data.draw(st.dictionaries(st.text(max_size=8), entry, max_size=4))
    payload = data.draw(st.binary(max_size=512))
    blob = json.dumps(header).encode()
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + payload)
    try:
        tensors, _ = _core.safetensors_header(str(path))
    except CheckpointError:
        return
    for name, _, shape in tensors:
        assert isinstance(name, str) and all(d >= 0 for d in shape)


_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_consistent_headers_compute_or_fail_cleanly(tmp_path, data):
    """Headers whose offsets are consistent (so the parser accepts them), with
    payload bytes that may be anything, NaN and Inf included: every matrix
    either gets a value or a clean per-item error."""
    count = data.draw(st.integers(1, 3))
    header, offset = {}, 0
    for i in range(count):
        dtype = data.draw(st.sampled_from(sorted(_SIZES)))
        shape = data.draw(st.lists(st.integers(1, 6), min_size=2, max_size=3))
        size = _SIZES[dtype] * int(np.prod(shape))
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    payload = data.draw(st.binary(min_size=offset, max_size=offset))
    blob = json.dumps(header).encode()
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + payload)
    tensors, _ = _core.safetensors_header(str(path))
    assert sorted(t[0] for t in tensors) == sorted(header)
    items = [(str(path), name, *matrix_shape(tuple(shape))) for name, _, shape in tensors]
    columns, errors = _core.safetensors_spectral(items)
    assert len(columns["entropy"]) == len(items)
    failed = {index for index, _ in errors}
    for _, error in errors:
        assert isinstance(error, GrokspecError), error
    for index in set(range(len(items))) - failed:
        value = columns["entropy"][index]
        assert math.isnan(value) or 0.0 <= value <= 1.0 + 1e-12


def test_outputs_in_every_format_and_the_report(tmp_path):
    for step in (100, 200, 300):
        write_format("safetensors", tmp_path, step)
    runner = CliRunner()
    for fmt, reader in (("csv", pd.read_csv), ("parquet", pd.read_parquet), ("json", pd.read_json)):
        result = runner.invoke(main, ["scan", str(tmp_path), "--format", fmt, "--out", str(tmp_path / fmt)])
        assert result.exit_code == 0, result.output
        table = reader(tmp_path / fmt / f"spectra.{fmt}")
        assert list(table.columns) == [
            "run",
            "checkpoint",
            "step",
            "step_source",
            "tensor",
            "rows",
            "cols",
            "dtype",
            "metric",
            "value",
        ]
        assert len(table) == 3 * 4 * 6
        assert (tmp_path / fmt / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "csv" / "report.json").read_text())
    run = report["runs"][0]
    assert run["checkpoints"] == 3 and run["weight_series"] == 4 and run["threshold_source"] is None
    assert {s["series"] for s in run["series"]} == {"encoder.layer.weight", "attn.qkv", "conv.weight", "embed"}


def test_cli_exit_codes_and_no_tracebacks(tmp_path):
    runner = CliRunner()
    empty = runner.invoke(main, ["scan", str(tmp_path)])
    assert empty.exit_code == 2 and "no checkpoints" in empty.output and "Traceback" not in empty.output
    torch.save(weights(1), tmp_path / "step_1.pt")
    (tmp_path / "step_2.pt").write_bytes(b"garbage")
    partial = runner.invoke(main, ["scan", str(tmp_path)])
    assert partial.exit_code == 1 and "step_2.pt" in partial.output and "Traceback" not in partial.output
    assert (tmp_path / "grokspec-scan" / "report.json").exists()
    assert runner.invoke(main, ["scan", str(tmp_path), "--threshold", "x"]).exit_code == 2


def test_metrics_file_joins_the_table(tmp_path):
    for step in (10, 20):
        torch.save(weights(step), tmp_path / f"step_{step}.pt")
    metrics = tmp_path / "log.csv"
    metrics.write_text("step,test_acc,loss\n10,0.2,1.0\n20,0.995,0.1\n")
    result = scan(tmp_path, ScanOptions(metrics_file=metrics), cache_path=None)
    acc = result.table[result.table["metric"] == "test_acc"]
    assert list(acc["value"]) == [0.2, 0.995]
    assert result.report.runs[0].t_grok == 20 and result.report.runs[0].grok_metric == "test_acc"
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,acc\n1,2\n")
    with pytest.raises(ScanInputError, match="step"):
        scan(tmp_path, ScanOptions(metrics_file=bad), cache_path=None)


def test_a_single_checkpoint_gets_no_plot_and_loses_a_stale_one(tmp_path):
    save_file(weights(1), tmp_path / "model.safetensors")
    out = tmp_path / "scan"
    out.mkdir()
    (out / "trajectories.png").write_bytes(b"stale")
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.json").exists() and (out / "spectra.csv").exists()
    assert not (out / "trajectories.png").exists(), "one checkpoint is no trajectory; a stale plot would mislead"


def test_logged_weight_entropies_fill_the_series_between_checkpoints(tmp_path):
    import dataclasses

    from configs import TINY
    from grokspec.lab.train import train

    train(dataclasses.replace(TINY, steps=100, log_weight_entropies=True), tmp_path / "run")
    result = scan(tmp_path, ScanOptions(representation=False), cache_path=None)
    weight_rows = result.table[(result.table["tensor"] != "") & (result.table["metric"] == "entropy")]
    logged = weight_rows[weight_rows["step_source"] == "log"]
    computed = weight_rows[weight_rows["step_source"] != "log"]
    assert set(logged["step"]) == set(range(0, 101, 20)) and set(computed["step"]) == {0, 50, 100}
    both = logged.merge(computed, on=["tensor", "step"], suffixes=("_log", "_checkpoint"))
    assert len(both) == 2 * len(set(computed["tensor"])), "steps 0 and 100 are both logged and checkpointed"
    np.testing.assert_allclose(both["value_log"], both["value_checkpoint"], atol=1e-6)
    (run,) = result.report.runs
    weight_series = [s for s in run.series if s.series != "representation"]
    assert weight_series and all(s.points == 7 for s in weight_series), "steps 0, 20, ..., 100 and the checkpoint at 50"
    # Other options compute other numbers: the logged ones are not mixed in.
    other = scan(tmp_path, ScanOptions(representation=False, power=1.0), cache_path=None).table
    assert set(other[other["tensor"] != ""]["step_source"]) == {"metadata:step"}
    only = scan(tmp_path, ScanOptions(representation=False, include=("*embed*",)), cache_path=None).table
    assert set(only[only["tensor"] != ""]["tensor"]) == {"token_embedding.weight", "position_embedding.weight"}
    assert set(only[only["tensor"] != ""]["step"]) == {0, 20, 40, 50, 60, 80, 100}, "--include applies to logged tensors too"
