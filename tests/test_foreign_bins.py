"""``.bin`` files that are other libraries' weights. A model repo downloaded whole
(``snapshot_download(local_dir=...)`` of sentence-transformers/all-MiniLM-L6-v2, say)
holds ``openvino/openvino_model.bin`` beside its ``.xml``, and llama.cpp/whisper.cpp
models are GGML ``.bin`` files: they were opened as torch files and reported as
damaged checkpoints (exit code 1). They are now listed as skipped ``foreign`` files;
a ``.bin`` of unknown bytes is still read as torch's and reported when it is not."""

from __future__ import annotations

import json
import os

import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from grokspec.cli import main
from grokspec.scan.scan import scan
from reference import reference_entropy


def write_repo(folder):
    torch.manual_seed(0)
    weights = {"encoder.layer.0.attention.self.query.weight": torch.randn(24, 24)}
    save_file(weights, folder / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "openvino").mkdir()
    (folder / "openvino" / "openvino_model.bin").write_bytes(os.urandom(2048))  # raw IR weights, no header
    (folder / "openvino" / "openvino_model.xml").write_text('<?xml version="1.0"?><net name="torch_jit" version="11"/>')
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(os.urandom(64))
    (folder / "ggml-model-q4_0.bin").write_bytes(b"tjgg" + os.urandom(256))  # llama.cpp's ggjt magic, little-endian
    (folder / "cc.en.300.bin").write_bytes((793712314).to_bytes(4, "little") + os.urandom(64))  # fastText
    return weights


def test_a_whole_model_repo_scans_cleanly(tmp_path):
    weights = write_repo(tmp_path)
    result = scan(tmp_path)
    assert result.failed_checkpoints == 0 and not result.warnings
    skipped = {s.path: (s.role, s.reason) for s in result.report.skipped}
    assert skipped["openvino/openvino_model.bin"][0] == "foreign" and "OpenVINO" in skipped["openvino/openvino_model.bin"][1]
    assert skipped["ggml-model-q4_0.bin"][0] == "foreign" and "GGML" in skipped["ggml-model-q4_0.bin"][1]
    assert skipped["cc.en.300.bin"][0] == "foreign" and "fastText" in skipped["cc.en.300.bin"][1]
    assert skipped["pytorch_model.bin"][0] == "duplicate"
    rows = result.table[result.table["metric"] == "entropy"]
    (value,) = rows["value"]
    want = reference_entropy(weights["encoder.layer.0.attention.self.query.weight"].double().numpy())
    assert abs(value - want) <= 1e-6
    out = CliRunner().invoke(main, ["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"])
    assert out.exit_code == 0, out.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {s["role"] for s in report["skipped"]} == {"foreign", "duplicate"}


def test_a_bin_of_unknown_bytes_is_still_reported_as_a_damaged_checkpoint(tmp_path):
    save_file({"w": torch.randn(6, 6)}, tmp_path / "model.safetensors")
    (tmp_path / "step_5.bin").write_bytes(os.urandom(512))  # no known magic: maybe a damaged torch file
    result = scan(tmp_path)
    assert result.failed_checkpoints == 1
    assert any("step_5.bin" in w for w in result.warnings)
