"""Generators of the hostile corpus (issue 10): each case writes one bad
thing into a folder that already holds two good checkpoints.

A :class:`Case` says what it writes and what a scan must do about it:

- ``failed``: the bad checkpoint counts as failed and a warning names it;
- ``warned``: a warning names it, but it is not a failure (it was scanned,
  or deliberately not, and said so);
- ``scanned``: its weights are in the table (``step`` the step they must have);
- ``named``: a warning names it, whether or not it counts as failed (a shard
  index that cannot be used is dropped with a warning at discovery, and the
  files it names are scanned on their own);
- ``handled``: no traceback, and either it is scanned or a warning (or the
  report's skipped list) names it — where either answer is right;
- ``ignored``: not a checkpoint at all (a folder named like one): nothing
  is said, nothing fails.

Every case also requires the good neighbours (steps 100 and 200) to be in
the table. The generators are plain functions of a folder, so the corpus is
code, not files; tests/test_hostile.py runs them.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

GOOD_STEPS = (100, 200)
BAD = "step_300"
FORMATS = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz", ".pt2")


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    build: Callable[[Path], None]
    expect: str  # failed | warned | named | scanned | handled | ignored
    #: Text a warning must contain (usually the bad file's name).
    names: str = ""
    #: For "scanned": the step the bad checkpoint's rows must have.
    step: int | None = None
    #: Environment for the scan (a small memory budget for the bombs).
    env: dict[str, str] = field(default_factory=dict)


# --- good and bad content -------------------------------------------------------------


def weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(12, 8, generator=g),
        "embed": torch.randn(16, 6, generator=g),
        "layer.bias": torch.randn(8, generator=g),
    }


@cache
def _pt(seed: int, extra: tuple[tuple[str, Any], ...] = ()) -> bytes:
    buffer = io.BytesIO()
    torch.save({**weights(seed), **dict(extra)}, buffer)
    return buffer.getvalue()


@cache
def _safetensors(seed: int) -> bytes:
    return safetensors_bytes(weights(seed))


@cache
def _npz(seed: int) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.numpy() for k, v in weights(seed).items()})
    return buffer.getvalue()


class _Exported(torch.nn.Module):
    """weights(seed) as the parameters of a module, for torch.export."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        tensors = weights(seed)
        self.layer = torch.nn.Module()
        self.layer.weight = torch.nn.Parameter(tensors["layer.weight"])
        self.layer.bias = torch.nn.Parameter(tensors["layer.bias"])
        self.embed = torch.nn.Parameter(tensors["embed"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.layer.weight + self.layer.bias).sum() + self.embed.sum()


@cache
def _pt2(seed: int) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(_Exported(seed), (torch.randn(2, 12),)), buffer)
    return buffer.getvalue()


def valid_bytes(extension: str, seed: int = 3) -> bytes:
    if extension == ".safetensors":
        return _safetensors(seed)
    if extension == ".npz":
        return _npz(seed)
    if extension == ".pt2":
        return _pt2(seed)
    return _pt(seed)


def write_good(folder: Path) -> None:
    """The two good neighbours: a safetensors and a .pt checkpoint of one series."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step_100.safetensors").write_bytes(_safetensors(100))
    (folder / "step_200.pt").write_bytes(_pt(200))


def _writer(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        (folder / name).write_bytes(data() if callable(data) else data)

    return build


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- family: unreadable files of every format --------------------------------------------------


def _garbage_contents(extension: str) -> dict[str, bytes | Callable[[], bytes]]:
    valid = valid_bytes(extension)
    other = ".npz" if extension != ".npz" else ".pt"
    return {
        "one-byte-q": b"q",
        "empty": b"",
        "zeros": bytes(64),
        "random": np.random.default_rng(7).bytes(4096),
        "text": b"this is not a checkpoint\n",
        "json": b'{"step": 1}',
        "other-format": valid_bytes(other),
        "npy": _npy(np.ones((4, 4), np.float32)),
        "empty-zip": _zip({}),
        "truncated-10%": valid[: len(valid) // 10],
        "truncated-50%": valid[: len(valid) // 2],
        "truncated-90%": valid[: len(valid) * 9 // 10],
        "minus-one-byte": valid[:-1],
        "flipped-header": bytes([valid[0] ^ 0xFF]) + valid[1:],
        "end-record-claims-many-disks": _claims_many_disks(valid),
    }


def _claims_many_disks(data: bytes) -> bytes:
    """A zip64 end-record locator saying the archive spans two disks, put just
    before the end record (zipfile.is_zipfile raises on it instead of answering)."""
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, 0, 2)
    end = data.rfind(b"PK\x05\x06")
    return data[: end - 20] + locator + data[end:] if end >= 20 else data + locator + bytes(22)


# Empty zips and other formats are unreadable for every format here, except
# that an empty .npz is a valid archive with nothing in it (warned as empty).
_READABLE_GARBAGE = {(".npz", "empty-zip")}


def unreadable_cases() -> list[Case]:
    cases = []
    for extension in FORMATS:
        for label, data in _garbage_contents(extension).items():
            name = f"{BAD}{extension}"
            expect = "handled" if (extension, label) in _READABLE_GARBAGE else "failed"
            cases.append(Case(f"unreadable{extension}-{label}", "unreadable", _writer(name, data), expect, name))
    return cases


# --- family: metadata steps ------------------------------------------------------------------


_STEP_VALUES: dict[str, tuple[Any, int]] = {
    # label: (value written as the step, the step the checkpoint must get: 300 = its name)
    "inf-string": ("inf", 300),
    "minus-inf": ("-inf", 300),
    "nan-string": ("nan", 300),
    "float-1e400": (float("inf"), 300),
    "int-10**400": (10**400, 300),
    "int-2**64": (2**64, 300),
    "negative": (-5, 300),
    "word": ("abc", 300),
    "fraction": (1.5, 300),
    "bool": (True, 300),
    "list": ([1], 300),
    "dict": ({"a": 1}, 300),
    "none": (None, 300),
    "valid-7": (7, 7),
}


def _pt_with_step(value: Any) -> Callable[[], bytes]:
    def data() -> bytes:
        buffer = io.BytesIO()
        torch.save({"state_dict": weights(3), "step": value}, buffer)
        return buffer.getvalue()

    return data


def _safetensors_with_step(value: Any) -> Callable[[], bytes]:
    return lambda: safetensors_bytes(weights(3), metadata={"step": str(value)[:200]})


def _npz_with_step(value: Any) -> Callable[[], bytes]:
    def data() -> bytes:
        buffer = io.BytesIO()
        step = np.array(value if isinstance(value, (int, float)) and abs(value) < 2**63 else str(value)[:100])
        np.savez(buffer, step=step, **{k: v.numpy() for k, v in weights(3).items()})
        return buffer.getvalue()

    return data


def step_cases() -> list[Case]:
    cases = []
    for label, (value, step) in _STEP_VALUES.items():
        cases.append(Case(f"step-pt-{label}", "metadata-step", _writer(f"{BAD}.pt", _pt_with_step(value)), "scanned", step=step))
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            cases.append(
                Case(
                    f"step-safetensors-{label}",
                    "metadata-step",
                    _writer(f"{BAD}.safetensors", _safetensors_with_step(value)),
                    "scanned",
                    step=step,
                )
            )
            cases.append(
                Case(f"step-npz-{label}", "metadata-step", _writer(f"{BAD}.npz", _npz_with_step(value)), "scanned", step=step)
            )
    return cases


# --- family: what a .pt holds -------------------------------------------------------------------


def _torch_zip_with_pickle(stream: bytes) -> bytes:
    """A torch zip archive whose data.pkl is `stream` (hand-made pickles)."""
    return _zip({"archive/data.pkl": stream, "archive/byteorder": b"little", "archive/version": b"3\n"})


def _deep_dict_pickle(depth: int) -> bytes:
    # {"a": {"a": ...}} written opcode by opcode: pickle itself recurses too deeply to write it.
    key = b"X" + struct.pack("<I", 1) + b"a"
    return b"\x80\x02" + (b"}" + key) * depth + b"}" + b"s" * depth + b"."


def _deep_list_pickle(depth: int) -> bytes:
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _saved(make: Callable[[], Any]) -> Callable[[], bytes]:
    """torch.save of what `make` builds, when the case is built (not at import)."""

    def data() -> bytes:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sparse CSR is "beta"
            torch.save(make(), buffer)
        return buffer.getvalue()

    return data


def _shared() -> dict[str, torch.Tensor]:
    base = torch.randn(10, 10)
    return {"a": base, "b": base[2:8, 1:9], **weights(3)}


def _self_referencing() -> Any:
    state: dict[str, Any] = {"w": torch.randn(4, 4)}
    state["self"] = state
    return state


def content_cases() -> list[Case]:
    name = f"{BAD}.pt"
    objects: dict[str, tuple[Callable[[], bytes], str]] = {
        "deep-dict-3000": (lambda: _torch_zip_with_pickle(_deep_dict_pickle(3000)), "handled"),
        "deep-dict-100000": (lambda: _torch_zip_with_pickle(_deep_dict_pickle(100_000)), "handled"),
        "deep-list-50000": (lambda: _torch_zip_with_pickle(_deep_list_pickle(50_000)), "handled"),
        "plain-pickle-deep": (lambda: _deep_dict_pickle(5000), "handled"),
        "self-referencing-dict": (_saved(_self_referencing), "handled"),
        "sparse-coo": (_saved(lambda: {"w": torch.eye(6).to_sparse(), **weights(3)}), "handled"),
        "sparse-csr": (_saved(lambda: {"w": torch.eye(6).to_sparse_csr(), **weights(3)}), "handled"),
        "meta-tensor": (_saved(lambda: {"w": torch.empty(6, 6, device="meta"), **weights(3)}), "handled"),
        "complex-tensor": (_saved(lambda: {"w": torch.randn(6, 6, dtype=torch.complex64), **weights(3)}), "scanned"),
        "int-and-bool-tensors": (
            _saved(lambda: {"i": torch.ones(6, 6, dtype=torch.int64), "b": torch.ones(6, 6, dtype=torch.bool), **weights(3)}),
            "scanned",
        ),
        "quantized": (
            _saved(lambda: {"q": torch.quantize_per_tensor(torch.randn(6, 6), 0.1, 0, torch.qint8), **weights(3)}),
            "handled",
        ),
        "zero-size": (_saved(lambda: {"z": torch.zeros(0, 5), **weights(3)}), "scanned"),
        "nan-tensor": (_saved(lambda: {"n": torch.full((6, 6), float("nan")), **weights(3)}), "scanned"),
        "inf-tensor": (_saved(lambda: {"n": torch.full((6, 6), float("inf")), **weights(3)}), "scanned"),
        "transposed-view": (_saved(lambda: {"t": torch.randn(8, 5).t(), **weights(3)}), "scanned"),
        "shared-storage": (_saved(_shared), "scanned"),
        "list-top-level": (_saved(lambda: [weights(3), weights(4)]), "handled"),
        "tensor-top-level": (_saved(lambda: torch.randn(6, 6)), "handled"),
        "none": (_saved(lambda: None), "handled"),
        "int": (_saved(lambda: 5), "handled"),
        "string": (_saved(lambda: "weights"), "handled"),
        "bytes-1MB": (_saved(lambda: {"blob": b"x" * 2**20, **weights(3)}), "scanned"),
        "int-keys": (_saved(lambda: {1: torch.randn(6, 6), 2: weights(3)}), "handled"),
        "tuple-keys": (_saved(lambda: {(1, 2): torch.randn(6, 6), **weights(3)}), "handled"),
        "empty-dict": (_saved(lambda: {}), "handled"),
        "metadata-only": (_saved(lambda: {"epoch": 3, "lr": 0.1}), "handled"),
        "many-tiny-tensors": (_saved(lambda: {f"t{i}": torch.randn(2, 2) for i in range(300)}), "scanned"),
        "name-collision": (_saved(lambda: {"a.b": torch.randn(4, 4), "a": {"b": torch.randn(5, 5)}, **weights(3)}), "scanned"),
        "legacy-format": (lambda: _legacy_pt(), "scanned"),
    }
    return [
        Case(
            f"content-{label}",
            "pt-content",
            _writer(name, data),
            expect,
            name if expect != "scanned" else "",
            step=300 if expect == "scanned" else None,
        )
        for label, (data, expect) in objects.items()
    ]


def _legacy_pt() -> bytes:
    buffer = io.BytesIO()
    torch.save(weights(3), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


# --- family: files that are not regular files -------------------------------------------------


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda folder: os.mkfifo(folder / name)


def _socket(name: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(folder / name))
        server.close()

    return build


def _symlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda folder: os.symlink(target, folder / name)


def _loop(name: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        os.symlink(folder / "loop_b", folder / name)
        os.symlink(folder / name, folder / "loop_b")

    return build


def _index_to(shard: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        make(folder)
        (folder / f"{BAD}.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))

    return build


def special_cases() -> list[Case]:
    cases = []
    for extension in (*FORMATS, ".safetensors.index.json", ".bin.index.json"):
        name = f"{BAD}{extension}"
        cases.append(Case(f"fifo{extension}", "special-file", _fifo(name), "failed", name))
    for extension in (".pt", ".safetensors", ".npz"):
        name = f"{BAD}{extension}"
        cases.append(Case(f"folder-named{extension}", "special-file", lambda f, n=name: (f / n).mkdir(), "ignored", name))
        cases.append(Case(f"dev-zero{extension}", "special-file", _symlink(name, "/dev/zero"), "failed", name))
        cases.append(Case(f"dangling-link{extension}", "special-file", _symlink(name, "/nonexistent/x"), "failed", name))
        cases.append(Case(f"link-loop{extension}", "special-file", _loop(name), "failed", name))
        cases.append(Case(f"socket{extension}", "special-file", _socket(name), "failed", name))
    cases.append(
        Case(
            "index-to-fifo", "special-file", _index_to("pipe.safetensors", _fifo("pipe.safetensors")), "named", "pipe.safetensors"
        )
    )
    cases.append(
        Case(
            "index-to-dev-zero",
            "special-file",
            _index_to("zero.safetensors", _symlink("zero.safetensors", "/dev/zero")),
            "named",
            "zero.safetensors",
        )
    )
    cases.append(
        Case(
            "index-to-folder",
            "special-file",
            _index_to("dir.safetensors", lambda f: (f / "dir.safetensors").mkdir()),
            "named",
            "dir.safetensors",
        )
    )
    return cases


# --- family: names ----------------------------------------------------------------------------


def _raw_name(folder: Path, raw: bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(folder), raw)
    with open(path, "wb") as handle:
        handle.write(data)


def name_cases() -> list[Case]:
    pt, st = valid_bytes(".pt"), valid_bytes(".safetensors")

    def in_folder(raw: bytes, data: bytes, file: bytes = b"step_300.pt") -> Callable[[Path], None]:
        def build(folder: Path) -> None:
            os.mkdir(os.path.join(os.fsencode(folder), raw))
            _raw_name(folder, raw + b"/" + file, data)

        return build

    names: dict[str, tuple[Callable[[Path], None], str, int | None]] = {
        "non-utf8-pt": (lambda f: _raw_name(f, b"step_300_\xff\xfe.pt", pt), "handled", None),
        "non-utf8-safetensors": (lambda f: _raw_name(f, b"step_300_\xff.safetensors", st), "handled", None),
        "non-utf8-folder": (in_folder(b"run_\xfe\xff", pt), "handled", None),
        "non-utf8-folder-safetensors": (in_folder(b"sub\xc3\x28", st, b"step_300.safetensors"), "handled", None),
        "latin1-name": (lambda f: _raw_name(f, "step_300_é.pt".encode("latin-1"), pt), "handled", None),
        "newline": (lambda f: (f / "step_300\nfake.pt").write_bytes(pt), "scanned", 300),
        "escape-sequence": (lambda f: (f / "step_300\x1b[31m.pt").write_bytes(pt), "scanned", 300),
        "right-to-left": (lambda f: (f / "step_300\u202egnp.pt").write_bytes(pt), "scanned", 300),
        "emoji": (lambda f: (f / "step_300_🦀.pt").write_bytes(pt), "scanned", 300),
        "glob-characters": (lambda f: (f / "step_300_[*?].pt").write_bytes(pt), "scanned", 300),
        "leading-dash": (lambda f: (f / "-step_300.pt").write_bytes(pt), "scanned", 300),
        "spaces": (lambda f: (f / "step 300 .pt").write_bytes(pt), "handled", None),
        "long-name": (lambda f: (f / ("step_300_" + "x" * 240 + ".pt")).write_bytes(pt), "scanned", 300),
        "huge-step-in-name": (lambda f: (f / "step_99999999999999999999999.pt").write_bytes(pt), "handled", None),
        "step-2**63-in-name": (lambda f: (f / f"step_{2**63}.pt").write_bytes(pt), "handled", None),
    }
    return [Case(f"name-{label}", "names", build, expect, step=step) for label, (build, expect, step) in names.items()]


# --- family: shard indexes ---------------------------------------------------------------------


def _index(
    content: bytes | str, name: str = f"{BAD}.safetensors.index.json", extra: Callable[[Path], None] | None = None
) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        if extra is not None:
            extra(folder)
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)

    return build


def _outside(folder: Path) -> None:
    # A readable checkpoint outside the scanned folder: an index must not reach it.
    (folder.parent / "outside.safetensors").write_bytes(valid_bytes(".safetensors"))


def _shard(folder: Path) -> None:
    (folder / "model-0001.safetensors").write_bytes(valid_bytes(".safetensors"))


def index_cases() -> list[Case]:
    wm = lambda value: json.dumps({"metadata": {}, "weight_map": value})
    contents: dict[str, tuple[bytes | str, Callable[[Path], None] | None]] = {
        "not-json": ("{not json", None),
        "null": ("null", None),
        "list": ("[1, 2]", None),
        "string": ('"weights"', None),
        "number": ("5", None),
        "no-weight-map": ('{"metadata": {}}', None),
        "weight-map-null": (wm(None), None),
        "weight-map-int": (wm(5), None),
        "weight-map-list": (wm(["model-0001.safetensors"]), _shard),
        "weight-map-string": (wm("model-0001.safetensors"), _shard),
        "weight-map-empty": (wm({}), None),
        "entry-int": (wm({"w": 5}), None),
        "entry-null": (wm({"w": None}), None),
        "entry-list": (wm({"w": ["a"]}), None),
        "absolute-path": (wm({"w": "/etc/passwd"}), None),
        "absolute-outside": (wm({"w": "__OUTSIDE__"}), _outside),
        "dot-dot": (wm({"w": "../outside.safetensors"}), _outside),
        "dot-dot-nested": (wm({"w": "sub/../../outside.safetensors"}), _outside),
        "backslash-dot-dot": (wm({"w": "..\\outside.safetensors"}), _outside),
        "nul-byte": (wm({"w": "model-0001.safetensors\x00.txt"}), _shard),
        "missing-shard": (wm({"w": "model-9999.safetensors"}), None),
        "shard-is-index": (wm({"w": f"{BAD}.safetensors.index.json"}), None),
        "shard-garbage": (wm({"w": "garbage.safetensors"}), lambda f: (f / "garbage.safetensors").write_bytes(b"q")),
        "non-utf8": (b'{"weight_map": {"w": "\xff"}}', None),
        "bom": ("\ufeff" + wm({"w": "model-0001.safetensors"}), _shard),
        "deep-nesting": ("[" * 100_000 + "]" * 100_000, None),
        "huge-number": ('{"weight_map": {"w": 1' + "0" * 5000 + "}}", None),
    }
    cases = []
    for label, (content, extra) in contents.items():

        def build(folder: Path, content: bytes | str = content, extra: Callable[[Path], None] | None = extra) -> None:
            if isinstance(content, str) and "__OUTSIDE__" in content:
                content = content.replace("__OUTSIDE__", str(folder.parent / "outside.safetensors"))
            _index(content, extra=extra)(folder)

        cases.append(Case(f"index-{label}", "shard-index", build, "named", f"{BAD}.safetensors.index.json"))
    for label in ("absolute-path", "dot-dot", "not-json", "weight-map-null"):
        content, extra = contents[label]
        cases.append(
            Case(
                f"bin-index-{label}",
                "shard-index",
                _index(content, f"{BAD}.bin.index.json", extra),
                "named",
                f"{BAD}.bin.index.json",
            )
        )
    return cases


# --- family: resource bombs ---------------------------------------------------------------------

SMALL_BUDGET = {"GROKSPEC_MEMORY_BUDGET": "8M"}


def _npz_bomb() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, w=np.zeros((2048, 4096), np.float32))  # 32 MB in ~30 kB
    return buffer.getvalue()


def _lying_npy_header(shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return _zip({"w.npy": header.getvalue() + bytes(64)})


def _pt_bomb() -> bytes:
    """A zip-format .pt whose members are deflated: 32 MB declared in ~40 kB."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2048, 4096)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    return _zip(members, zipfile.ZIP_DEFLATED)


def _patched_zip(data: bytes, patch: Callable[[bytearray], None]) -> bytes:
    raw = bytearray(data)
    patch(raw)
    return bytes(raw)


def _set_method(method: int) -> Callable[[bytearray], None]:
    def patch(raw: bytearray) -> None:
        # Every header's compression method: local (offset 8) and central (offset 10).
        for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            start = 0
            while (start := raw.find(signature, start)) != -1:
                raw[start + offset : start + offset + 2] = struct.pack("<H", method)
                start += 4

    return patch


def _set_encrypted(raw: bytearray) -> None:
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := raw.find(signature, start)) != -1:
            raw[start + offset] |= 1
            start += 4


def _sparse_safetensors(rows: int, cols: int) -> Callable[[Path], None]:
    """A valid safetensors file declaring one float32 rows x cols tensor whose
    bytes are a hole: large to compute, nothing on disk (found by fuzzing:
    60000 x 60000 grew a scan past 6 GB)."""

    def build(folder: Path) -> None:
        header = json.dumps({"w": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, 4 * rows * cols]}}).encode()
        header += b" " * (-len(header) % 8)
        path = folder / f"{BAD}.safetensors"
        with open(path, "wb") as handle:
            handle.write(len(header).to_bytes(8, "little") + header)
            handle.truncate(8 + len(header) + 4 * rows * cols)

    return build


def bomb_cases() -> list[Case]:
    npz, pt = f"{BAD}.npz", f"{BAD}.pt"
    small_npz = _npz(3)
    return [
        Case("bomb-npz-deflated-32MB", "bombs", _writer(npz, _npz_bomb), "failed", npz, env=SMALL_BUDGET),
        Case("bomb-pt-deflated-32MB", "bombs", _writer(pt, _pt_bomb), "failed", pt, env=SMALL_BUDGET),
        Case("bomb-npy-header-37GB", "bombs", _writer(npz, lambda: _lying_npy_header((100_000, 100_000))), "failed", npz),
        Case("bomb-npy-header-exabytes", "bombs", _writer(npz, lambda: _lying_npy_header((2**40, 2**40))), "failed", npz),
        Case("bomb-npy-header-negative", "bombs", _writer(npz, lambda: _lying_npy_header((-1, 5))), "failed", npz),
        Case("bomb-npz-object-array", "bombs", _writer(npz, lambda: _zip({"w.npy": _pickled_npy()})), "failed", npz),
        Case(
            "bomb-npz-unknown-compression", "bombs", _writer(npz, lambda: _patched_zip(small_npz, _set_method(99))), "failed", npz
        ),
        Case("bomb-npz-encrypted-flag", "bombs", _writer(npz, lambda: _patched_zip(small_npz, _set_encrypted)), "failed", npz),
        Case("bomb-pt-encrypted-flag", "bombs", _writer(pt, lambda: _patched_zip(_pt(3), _set_encrypted)), "failed", pt),
        Case(
            "bomb-npz-many-members",
            "bombs",
            _writer(npz, lambda: _zip({f"a{i}.npy": _npy(np.zeros(1)) for i in range(3000)})),
            "handled",
            npz,
        ),
        Case("bomb-pt-storage-beyond-file", "bombs", _writer(pt, _storage_beyond_file), "failed", pt),
        Case(
            "bomb-safetensors-sparse-2048x2048",
            "bombs",
            _sparse_safetensors(2048, 2048),
            "warned",
            "above the memory budget",
            env=SMALL_BUDGET,
        ),
    ]


def _pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _storage_beyond_file() -> bytes:
    """A torch zip whose pickle declares a storage of 10**12 elements."""
    buffer = io.BytesIO()
    torch.save({"w": torch.randn(4, 4)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    key = next(name for name in members if name.endswith("data.pkl"))
    # The pickle stores numel (16) as BININT1 after the location 'cpu' (memo 6); make it LONG1 10**12.
    patched = members[key].replace(b"cpuq\x06K\x10", b"cpuq\x06\x8a\x06\x00\x10\xa5\xd4\xe8\x00")
    assert patched != members[key], "torch.save changed its pickle; update the patch"
    members[key] = patched
    return _zip(members)


# --- safetensors whose tensors do not tile the data ---------------------------------------------


def _raw_safetensors(entries: list[tuple[str, list[int], tuple[int, int]]], data_len: int) -> bytes:
    """A safetensors file written by hand: F32 `entries` (name, shape, offsets) as given — names
    may repeat (the JSON is written, not dumped from a dict) — and `data_len` bytes of data."""
    body = ",".join(
        f'"{name}":{{"dtype":"F32","shape":{json.dumps(shape)},"data_offsets":[{start},{end}]}}'
        for name, shape, (start, end) in entries
    )
    header = ("{" + body + "}").encode()
    data = np.random.default_rng(0).standard_normal(data_len // 4).astype(np.float32).tobytes()
    return struct.pack("<Q", len(header)) + header + data


#: Files the format's own reader (``safetensors``) refuses: tests/test_hostile.py checks that it
#: does, and that a scan reports each as a failed checkpoint.
UNTILED_SAFETENSORS: dict[str, Callable[[], bytes]] = {
    "gap": lambda: _raw_safetensors([("a", [4, 4], (0, 64)), ("b", [4, 4], (128, 192))], 192),
    "name-twice": lambda: _raw_safetensors([("w", [4, 4], (0, 64)), ("w", [4, 4], (64, 128))], 128),
    "trailing-bytes": lambda: _raw_safetensors([("w", [4, 4], (0, 64))], 4096),
    "overlap": lambda: _raw_safetensors([("a", [4, 4], (0, 64)), ("b", [4, 4], (32, 96))], 96),
    "not-from-zero": lambda: _raw_safetensors([("w", [4, 4], (64, 128))], 128),
}


def layout_cases() -> list[Case]:
    name = f"{BAD}.safetensors"
    return [
        Case(f"safetensors-{label}", "safetensors-layout", _writer(name, data), "failed", name)
        for label, data in UNTILED_SAFETENSORS.items()
    ]


# --- the whole scan corpus ---------------------------------------------------------------------


def scan_cases() -> list[Case]:
    return [
        *unreadable_cases(),
        *step_cases(),
        *content_cases(),
        *special_cases(),
        *name_cases(),
        *index_cases(),
        *bomb_cases(),
        *layout_cases(),
    ]
