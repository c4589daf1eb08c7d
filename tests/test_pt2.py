"""torch.export ``.pt2`` archives: written by the real ``torch.export.save``
(and, for older torch's layouts, in their exact structures), scanned without
torch and compared with a float64 LAPACK reference; damaged and hostile
archives are reported and the scan goes on."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grokspec.errors import CheckpointError
from grokspec.scan.formats import matrix_shape, open_checkpoint
from grokspec.scan.scan import ScanOptions, scan
from reference import reference_entropy


class _Model(torch.nn.Module):
    """Weights of every kind a scan meets: a linear layer, a 4-D convolution,
    an embedding tied to the output layer (one storage for two names), a
    buffer that is a strided view into a parameter's storage, and a 1-D norm."""

    def __init__(self, seed: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(50, 24)
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.linear = torch.nn.Linear(24, 40)
        self.norm = torch.nn.LayerNorm(40)
        self.head = torch.nn.Linear(24, 50, bias=False)
        self.head.weight = self.embed.weight  # tied, as language models do
        self.to(dtype)
        self.register_buffer("view", self.linear.weight.detach()[5:, 2:].t())  # offset and strides into a storage

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens)
        return self.head(hidden).sum() + self.norm(self.linear(hidden)).sum() + self.conv(image).sum() + self.view.sum()


def _export(path: Path, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    model = _Model(seed, dtype).eval()
    inputs = (torch.tensor([[1, 2, 3]]), torch.randn(1, 3, 8, 8, dtype=dtype))
    program = torch.export.export(model, inputs)
    torch.export.save(program, path)
    return {name: tensor.detach() for name, tensor in program.state_dict.items()}


def _expected(state: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for name, tensor in state.items():
        shape = matrix_shape(tuple(tensor.shape))
        if shape is not None and tensor.is_floating_point():
            out[name] = reference_entropy(tensor.float().reshape(shape).numpy().astype(np.float64))
    return out


def _entropies(result, step: int) -> dict[str, float]:
    table = result.table
    rows = table[(table["metric"] == "entropy") & (table["step"] == step) & (table["tensor"] != "")]
    return dict(zip(rows["tensor"], rows["value"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_exported_programs_scan_like_their_state_dicts(tmp_path, dtype):
    states = {step: _export(tmp_path / f"step_{step}.pt2", seed=step, dtype=dtype) for step in (100, 200)}
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0, result.warnings
    for step, state in states.items():
        expected, got = _expected(state), _entropies(result, step)
        assert set(got) == set(expected) and {"embed.weight", "conv.weight", "linear.weight", "view"} <= set(got)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-6), name
    # Trusting pickles changes nothing: torch.load cannot read a .pt2, grokspec's reader always does.
    trusted = scan(tmp_path, ScanOptions(trust_pickle=True), cache_path=None)
    assert _entropies(trusted, 100) == _entropies(result, 100)


def _legacy_archive(path: Path, state: dict[str, torch.Tensor], layout: str) -> None:
    """The layouts of older torch.export.save: the flat one put a torch.save of
    the state dict at the top as serialized_state_dict.pt; the first PT2
    archives put it in data/weights/<model>.pt (torch's loader still reads both)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(path, "w") as archive:  # stored, as torch writes them
        if layout == "flat":
            archive.writestr("serialized_exported_program.json", "{}")
            archive.writestr("serialized_state_dict.pt", buffer.getvalue())
            archive.writestr("serialized_constants.pt", b"")
            archive.writestr("version", "7.3")
        else:
            root = path.stem
            archive.writestr(f"{root}/archive_format", "pt2")
            archive.writestr(f"{root}/archive_version", "0")
            archive.writestr(f"{root}/byteorder", "little")
            archive.writestr(f"{root}/models/model.json", "{}")
            archive.writestr(f"{root}/data/weights/model.pt", buffer.getvalue())


@pytest.mark.parametrize("layout", ["flat", "pickled-in-pt2"])
def test_older_torch_export_layouts(tmp_path, layout):
    state = {"a.weight": torch.randn(30, 20), "b.weight": torch.randn(12, 44).t(), "bias": torch.randn(5)}
    _legacy_archive(tmp_path / "step_7.pt2", state, layout)
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0, result.warnings
    got = _entropies(result, 7)
    assert set(got) == {"a.weight", "b.weight"}
    for name, value in _expected(state).items():
        assert got[name] == pytest.approx(value, abs=1e-6)


def _rewrite(source: Path, target: Path, change) -> None:
    """A copy of an archive with some members changed: change(name, data) -> (data, compress) or None to drop."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            changed = change(info.filename, old.read(info))
            if changed is not None:
                data, compress = changed
                new.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)


def _config_changer(edit):
    def change(name: str, data: bytes):
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            edit(config["config"])
            return json.dumps(config).encode(), False
        return data, False

    return change


def _first_matrix(config: dict) -> dict:
    return next(meta for meta in config.values() if len(meta["tensor_meta"]["sizes"]) == 2)


def _grow(config: dict) -> None:
    _first_matrix(config)["tensor_meta"]["sizes"][0]["as_int"] = 10**6


def _symbolic(config: dict) -> None:
    _first_matrix(config)["tensor_meta"]["sizes"][0] = {"as_expr": {"expr_str": "s0"}}


def _missing_file(config: dict) -> None:
    _first_matrix(config)["path_name"] = "../../etc/passwd"


def _unknown_dtype(config: dict) -> None:
    _first_matrix(config)["tensor_meta"]["dtype"] = 99


_DAMAGE = {
    "a size past the member's bytes": (_config_changer(_grow), "needs"),
    "a symbolic size": (_config_changer(_symbolic), "not a plain integer"),
    "a file name outside the archive": (_config_changer(_missing_file), "missing from the archive"),
    "an unknown dtype": (_config_changer(_unknown_dtype), "dtype number 99"),
    "a compressed weight": (lambda name, data: (data, "/data/weights/weight_" in name), "compressed"),
    "no weights config": (lambda name, data: None if name.endswith("_weights_config.json") else (data, False), "missing"),
    "a config that is not JSON": (
        lambda name, data: (b"[" * 100_000, False) if name.endswith("_weights_config.json") else (data, False),
        "JSON",
    ),
    "no archive_format": (lambda name, data: None if name.endswith("/archive_format") else (data, False), "archive_format"),
}


@pytest.mark.parametrize("damage", list(_DAMAGE))
def test_damaged_archives_are_reported_and_the_scan_goes_on(tmp_path, damage):
    change, message = _DAMAGE[damage]
    _export(tmp_path / "step_1.pt2", seed=1)
    good = tmp_path / "good"
    good.mkdir()
    _export(good / "source.pt2", seed=2)
    _rewrite(good / "source.pt2", tmp_path / "step_2.pt2", change)
    (good / "source.pt2").unlink()
    good.rmdir()
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 1
    assert set(result.table["step"]) == {1}
    assert any("step_2.pt2" in w and message in w for w in result.warnings), result.warnings


def test_an_aotinductor_package_is_named_not_misread(tmp_path):
    # AOTInductor compiles the weights into its model library: no weights config.
    with zipfile.ZipFile(tmp_path / "model.pt2", "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/models/model.json", "{}")
        archive.writestr("model/data/aotinductor/model/model.wrapper.so", b"\x7fELF")
    with zipfile.ZipFile(tmp_path / "bare.pt2", "w") as archive:  # no exported program beside the library either
        archive.writestr("bare/archive_format", "pt2")
        archive.writestr("bare/data/aotinductor/model/model.wrapper.so", b"\x7fELF")
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 2
    assert sum("AOTInductor" in w for w in result.warnings) == 2, result.warnings


def test_a_pickled_weight_that_asks_to_run_code_is_not_run(tmp_path):
    # Tensor subclasses are saved with torch.save inside the archive (use_pickle);
    # a hostile one is read as inert data, never run.
    class Payload:
        def __reduce__(self):
            return (exec, ("open('/tmp/grokspec-pt2-ran', 'w').write('ran')",))

    source = tmp_path / "source.pt2"
    _export(source, seed=3)
    marker = Path("/tmp/grokspec-pt2-ran")
    marker.unlink(missing_ok=True)
    hostile = io.BytesIO()
    torch.save({"x": Payload()}, hostile)

    def swap_first_matrix(config: dict) -> None:
        for meta in config.values():  # the embedding and the head tied to it
            meta["use_pickle"] = meta["use_pickle"] or meta["path_name"] == "weight_0"

    def change(name: str, data: bytes):
        if name.endswith("_weights_config.json"):
            return _config_changer(swap_first_matrix)(name, data)
        if name.endswith("/data/weights/weight_0"):
            return hostile.getvalue(), False
        return data, False

    folder = tmp_path / "run"
    folder.mkdir()
    _rewrite(source, folder / "step_4.pt2", change)
    result = scan(folder, cache_path=None)
    assert not marker.exists()
    assert any("step_4.pt2" in w and "nothing of it was run" in w for w in result.warnings), result.warnings


def test_an_archive_of_several_programs_names_each_weight_by_its_model(tmp_path):
    package = pytest.importorskip("torch.export.pt2_archive._package")  # how torch writes several programs to one file
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(16, 32), torch.nn.Linear(8, 12)
    programs = {
        "encoder": torch.export.export(encoder, (torch.randn(2, 16),)),
        "decoder": torch.export.export(decoder, (torch.randn(2, 8),)),
    }
    package.package_pt2(tmp_path / "step_5.pt2", exported_programs=programs)
    result = scan(tmp_path, cache_path=None)
    got = _entropies(result, 5)
    assert set(got) == {"encoder.weight", "decoder.weight"}
    assert got["encoder.weight"] == pytest.approx(reference_entropy(encoder.weight.detach().double().numpy()), abs=1e-6)
    assert got["decoder.weight"] == pytest.approx(reference_entropy(decoder.weight.detach().double().numpy()), abs=1e-6)


@pytest.fixture(scope="module")
def exported_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    _export(path, seed=5)
    return path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_archives_are_read_or_refused_never_crash(tmp_path, exported_bytes, data):
    # Bytes flipped anywhere (zip directory, JSON config, storages) and cut
    # short: the reader gives tensors or a CheckpointError, nothing else.
    damaged = bytearray(exported_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(damaged) // 2, len(damaged)))
    path = tmp_path / "fuzz.pt2"
    path.write_bytes(bytes(damaged[:cut]))
    try:
        checkpoint = open_checkpoint(path)
        names = [t.name for t in checkpoint.tensors() if t.is_float]
        checkpoint.arrays(names)
    except CheckpointError:
        return
