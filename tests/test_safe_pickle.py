"""grokspec's pickle reader runs no code, needs no foreign library, and stays bounded.

Every payload below tries to create a marker file when unpickled. Each is
first unpickled for real (the marker appears: the payload is live), then
read by grokspec in every container a checkpoint comes in — torch's zip
format and its legacy format, as .pt/.bin/.pth/.ckpt, pickle protocols 0–5
— and the marker must never exist.
"""

from __future__ import annotations

import copyreg
import io
import operator
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from grokspec.errors import CheckpointError
from grokspec.scan.formats import open_checkpoint
from grokspec.scan.safe_pickle import Opaque, UnreadablePickle, opaque_fields, safe_load
from grokspec.scan.scan import scan
from grokspec.scan.torch_pickle import load_torch_file

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"grokspec-pwned-{os.getpid()}"
PROTOCOLS = range(6)
EXTENSIONS = (".pt", ".bin", ".pth", ".ckpt")


def _touch_marker(*args: Any, **kwargs: Any) -> None:
    MARKER.write_text("pwned")


class Call:
    """Pickles as REDUCE(func, args): func may itself be a Call (a chain)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __call__(self, *args: Any) -> Any:  # the pickler insists the reduce function be callable
        raise AssertionError("never called while pickling")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


class EvilNew:
    """NEWOBJ: unpickling calls __new__ with the pickled arguments."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            _touch_marker()
        return super().__new__(cls)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return copyreg.__newobj__, (type(self), "x")  # type: ignore[attr-defined]


class EvilNewEx(EvilNew):
    """NEWOBJ_EX: __new__ with keyword arguments."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return copyreg.__newobj_ex__, (type(self), ("x",), {"k": 1})  # type: ignore[attr-defined]


class EvilState:
    """BUILD: unpickling calls __setstate__."""

    def __reduce__(self) -> tuple[Any, ...]:
        return EvilState, (), {"x": 1}

    def __setstate__(self, state: Any) -> None:
        _touch_marker()


class EvilInit:
    """INST / OBJ (protocols 0 and 1): unpickling calls the class."""

    def __init__(self, *args: Any) -> None:
        if args:
            _touch_marker()


def _command() -> str:
    return f"touch {MARKER}"


def _code() -> str:
    return f"open({str(MARKER)!r}, 'w').close()"


#: name -> the payload object (pickled by Python's pickler at any protocol).
PAYLOADS: dict[str, Callable[[], Any]] = {
    "reduce os.system": lambda: Call(os.system, _command()),
    "reduce posix.system via __import__+getattr": lambda: Call(Call(getattr, Call(__import__, "os"), "system"), _command()),
    "builtins.eval": lambda: Call(eval, _code()),
    "builtins.exec": lambda: Call(exec, _code()),
    "getattr(builtins, exec)": lambda: Call(Call(getattr, Call(__import__, "builtins"), "exec"), _code()),
    "operator.attrgetter chain": lambda: Call(Call(Call(operator.attrgetter, "system"), Call(__import__, "os")), _command()),
    "subprocess.Popen": lambda: Call(subprocess.Popen, ["touch", str(MARKER)]),
    "subprocess.call": lambda: Call(subprocess.call, ["touch", str(MARKER)]),
    "pickle.loads nested": lambda: Call(pickle.loads, pickle.dumps(Call(os.system, _command()), protocol=2)),
    "test function": lambda: Call(_touch_marker),
    "NEWOBJ": EvilNew,
    "NEWOBJ_EX": EvilNewEx,
    "BUILD __setstate__": EvilState,
    "OrderedDict of a payload": lambda: Call(__import__("collections").OrderedDict, Call(os.system, _command())),
}


def _inst_payloads(protocol: int) -> dict[str, bytes]:
    """INST and OBJ exist only as opcodes of protocols 0 and 1: written by hand."""
    command = _command().encode()
    module = EvilInit.__module__.encode()
    return {
        "INST os.system": b"(V" + command + b"\nios\nsystem\n.",
        "OBJ os.system": b"(cos\nsystem\nV" + command + b"\no.",
        "INST test class": b"(Vx\ni" + module + b"\nEvilInit\n.",
        "GLOBAL+REDUCE by hand": b"cos\nsystem\n(V" + command + b"\ntR.",
        "STACK_GLOBAL by hand": b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(command)]) + command + b"\x85R.",
    }


def _payload_pickles(protocol: int) -> dict[str, bytes]:
    """Each payload as the top-level pickle {"model": {"w": array}, "payload": ...}."""
    out = {}
    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    for name, make in PAYLOADS.items():
        out[name] = pickle.dumps({"model": {"w": weights}, "payload": make()}, protocol=protocol)
    if protocol <= 1:
        out.update(_inst_payloads(protocol))
    return out


def _zip_container(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def _legacy_container(data: bytes) -> bytes:
    head = b"".join(
        pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    return head + data + pickle.dumps([], protocol=2)


@pytest.fixture(autouse=True)
def no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    MARKER.unlink(missing_ok=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_payload_is_live_when_unpickled_for_real(protocol):
    """The control: Python's own unpickler runs each payload (so the tests below can fail)."""
    for name, data in _payload_pickles(protocol).items():
        MARKER.unlink(missing_ok=True)
        try:
            loaded = pickle.loads(data)
        except Exception:
            loaded = None  # some hand-written payloads fail after running
        if isinstance(loaded, dict) and isinstance(loaded.get("payload"), subprocess.Popen):
            loaded["payload"].wait()  # the process touches the marker on its own time
        assert MARKER.exists(), f"payload {name!r} (protocol {protocol}) did not run under pickle.loads"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_no_payload_runs_in_any_container(tmp_path, protocol, container):
    wrap = _zip_container if container == "zip" else _legacy_container
    for i, (name, data) in enumerate(_payload_pickles(protocol).items()):
        path = tmp_path / f"step_{i}{EXTENSIONS[i % len(EXTENSIONS)]}"
        path.write_bytes(wrap(data))
        try:
            checkpoint = open_checkpoint(path)
        except CheckpointError:
            checkpoint = None  # refusing is fine; running is not
        assert not MARKER.exists(), f"payload {name!r} ran (protocol {protocol}, {container})"
        if checkpoint is not None and name in PAYLOADS:
            (weights,) = checkpoint.sources([("w", 4, 3)]) if "w" in {t.name for t in checkpoint.tensors()} else [None]
            assert weights is not None, f"the weights beside payload {name!r} were not read"
            np.testing.assert_array_equal(weights, np.arange(12, dtype=np.float32).reshape(4, 3) / 7)
    result = scan(tmp_path, cache_path=None)
    assert not MARKER.exists()
    assert any("nothing of it was run" in w for w in result.warnings), "the scan names what the pickles asked for"


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("zip_format", [True, False])
def test_payloads_beside_real_torch_tensors(tmp_path, protocol, zip_format):
    """torch.save's own containers (storages, persistent ids), each extension, each payload."""
    tensor = torch.randn(6, 5)
    for i, (name, make) in enumerate(PAYLOADS.items()):
        extension = EXTENSIONS[i % len(EXTENSIONS)]
        path = tmp_path / f"ckpt_{i}{extension}"
        torch.save(
            {"state_dict": {"layer.weight": tensor}, "payload": make()},
            path,
            pickle_protocol=protocol,
            _use_new_zipfile_serialization=zip_format,
        )
        checkpoint = open_checkpoint(path)
        assert not MARKER.exists(), f"payload {name!r} ran"
        (matrix,) = checkpoint.sources([("layer.weight", 6, 5)])
        np.testing.assert_array_equal(matrix, tensor.numpy())


def test_placeholders_keep_state_and_run_nothing():
    class Config:  # pickled under a module that will not exist when read
        pass

    config = Config()
    config.d_model, config.path = 128, Path("/runs/a")
    Config.__module__, Config.__qualname__ = "not_installed.configs", "Config"
    sys.modules["not_installed"] = type(sys)("not_installed")
    sys.modules["not_installed.configs"] = module = type(sys)("not_installed.configs")
    module.Config = Config  # type: ignore[attr-defined]
    try:
        data = pickle.dumps({"cfg": config, "w": np.ones((2, 2))}, protocol=4)
    finally:
        del sys.modules["not_installed"], sys.modules["not_installed.configs"]
    value, suspicious = safe_load(data)
    assert isinstance(value["cfg"], Opaque) and value["cfg"].qualname == "not_installed.configs.Config"
    fields = opaque_fields(value["cfg"])
    assert fields["d_model"] == 128 and isinstance(fields["path"], Opaque) and fields["path"].qualname.startswith("pathlib.")
    assert not suspicious


def test_deep_nesting_and_shared_references_stay_bounded(tmp_path):
    deep = b"\x80\x02}" + b"X\x01\x00\x00\x00a}" * 200_000 + b"s" * 200_000 + b"."
    value, _ = safe_load(deep)  # CPython's unpickler is iterative: no recursion to blow
    assert isinstance(value, dict)
    (tmp_path / "deep.pt").write_bytes(_zip_container(deep))
    checkpoint = open_checkpoint(tmp_path / "deep.pt")  # the walks stop at their depth bound
    assert not checkpoint.tensors()
    assert any("no tensors" in n for n in checkpoint.notes) and any("deeper than" in n for n in checkpoint.notes), "never silent"
    shared: dict[str, Any] = {"w": torch.randn(3, 3)}
    for _ in range(40):  # 2**40 paths to one tensor: each object is visited once
        shared = {"a": shared, "b": shared}
    torch.save(shared, tmp_path / "laughs.pt")
    names = [t.name for t in open_checkpoint(tmp_path / "laughs.pt").tensors()]
    assert names == ["a." * 40 + "w"]


def _rewrite_zip(source: Path, target: Path, edit: Callable[[str, bytes], bytes]) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            new.writestr(info.filename, edit(info.filename, old.read(info.filename)))


def test_declared_sizes_are_checked_against_the_bytes_present(tmp_path):
    torch.save({"w": torch.randn(64, 32)}, tmp_path / "good.pt")
    # A storage cut short: the pickle still declares 64*32 floats.
    _rewrite_zip(tmp_path / "good.pt", tmp_path / "short.pt", lambda n, b: b[:100] if "/data/" in n else b)
    # A tensor view claiming more elements than its storage holds.
    _rewrite_zip(
        tmp_path / "good.pt",
        tmp_path / "view.pt",
        lambda n, b: b.replace(b"K@K ", b"K@M\x00\x01") if n.endswith("data.pkl") else b,
    )
    for name in ("short.pt", "view.pt"):
        with pytest.raises(CheckpointError, match=r"declares|needs"):
            open_checkpoint(tmp_path / name).sources([("w", 64, 32)])
    # A deflated data.pkl that would inflate to 1000 times its archive (a zip bomb).
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"pad": bytes(50 * 2**20)}, protocol=4))
    (tmp_path / "bomb.pt").write_bytes(bomb.getvalue())
    with pytest.raises(UnreadablePickle, match="more than the archive"):
        load_torch_file(tmp_path / "bomb.pt")
    # A bytes opcode declaring 2**62 bytes, and a numpy array larger than its data.
    huge = b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc."
    with pytest.raises(UnreadablePickle):
        safe_load(huge)
    array = pickle.dumps(np.ones((4, 4)), protocol=2).replace(b"K\x04K\x04\x86", b"M\x00\x10K\x04\x86")
    with pytest.raises(UnreadablePickle, match="bytes"):
        safe_load(array)
    # Legacy: a storage header that disagrees with the pickle.
    torch.save({"w": torch.randn(8, 8)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    data = bytearray((tmp_path / "legacy.pt").read_bytes())
    where = data.rfind(struct.pack("<q", 64))
    data[where : where + 8] = struct.pack("<q", 10**12)
    (tmp_path / "legacy_bad.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"declares"):
        open_checkpoint(tmp_path / "legacy_bad.pt")


def test_both_formats_dtypes_views_and_byte_order(tmp_path):
    base = torch.randn(10, 12, dtype=torch.float64)
    tensors = {
        "f32": base.float(),
        "f64": base,
        "f16": base.half(),
        "bf16": base.bfloat16(),
        "transposed": base.float().t(),
        "view": base.float()[2:8, 3:9],
        "param": torch.nn.Parameter(base.float()),
    }
    for zip_format in (True, False):
        path = tmp_path / f"t_{zip_format}.pt"
        torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
        loaded = load_torch_file(path)
        assert loaded.container == ("zip" if zip_format else "legacy")
        for name, tensor in tensors.items():
            expected = tensor.detach().to(torch.float64 if tensor.dtype == torch.float64 else torch.float32).numpy()
            np.testing.assert_array_equal(loaded.value[name].array(), expected, err_msg=name)
    # A big-endian archive (as written on s390x): same values.
    path = tmp_path / "t_True.pt"
    _rewrite_zip(
        path,
        tmp_path / "big.pt",
        lambda n, b: (
            b"big"
            if n.endswith("byteorder")
            else (np.frombuffer(b, "<f4").astype(">f4").tobytes() if "/data/" in n and len(b) == 480 else b)
        ),
    )
    big = load_torch_file(tmp_path / "big.pt")
    np.testing.assert_array_equal(big.value["f32"].array(), tensors["f32"].numpy())


def test_reading_pt_files_needs_no_torch(tmp_path):
    for step in (1, 2):
        torch.save({"model": {"w": torch.randn(8, 6), "b": torch.randn(6)}, "step": step}, tmp_path / f"step_{step}.pt")
    program = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from grokspec.scan.scan import scan\n"
        f"r = scan({str(tmp_path)!r}, cache_path=None)\n"
        "assert r.failed_checkpoints == 0, r.warnings\n"
        "print(sorted(set(r.table['step'])), sorted(set(r.table['tensor'])))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 2] ['w']"
