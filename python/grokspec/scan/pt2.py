"""torch.export's ``.pt2`` archives, read without torch and without running code.

``torch.export.save`` writes an exported program as a zip archive. Its
weights (the program's state dict: parameters and persistent buffers) are
found in one of three layouts, by torch version:

- the PT2 archive (today's torch): ``<root>/archive_format`` holds ``pt2``;
  ``<root>/data/weights/<model>_weights_config.json`` names, for each weight,
  the member holding its storage's raw bytes (``weight_N``), its dtype (the
  export schema's ``ScalarType`` number), sizes, strides and storage offset;
  weights that are tensor subclasses are ``torch.save`` archives instead
  (``use_pickle``). Weights that share a storage share a member;
- the same archive with ``<root>/data/weights/<model>.pt``, one ``torch.save``
  archive of the whole state dict (the first PT2 archives; torch still reads it);
- ``serialized_state_dict.pt`` at the top of the archive, a ``torch.save``
  archive of the state dict (the flat layout before the PT2 archive).

Every member is addressed in place (never inflated: torch stores them
uncompressed, and a compressed one is refused), every declared size is
checked against the member's bytes before anything is read, and the JSON
config is bounded in size. An archive with several models gives each its
weights under ``<model>.``. AOTInductor packages (compiled weights, no
weights config) are refused with a clear error.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from grokspec.errors import CheckpointError
from grokspec.scan.embedded_torch import read_embedded
from grokspec.scan.safe_pickle import UnreadablePickle
from grokspec.scan.torch_pickle import LoadedPickle, Storage, tensor_ref
from grokspec.scan.zip_members import check_inflated, member_offset, read_member

__all__ = ["PT2_SUFFIX", "load_pt2"]

PT2_SUFFIX = ".pt2"
#: torch/_export/serde/schema.py ScalarType -> element dtype (those grokspec reads).
_SCALAR_TYPES = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
    10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16", 28: "uint16", 29: "float8_e4m3fn",
    30: "float8_e5m2", 34: "uint32", 35: "uint64",
}  # fmt: skip
_STRIDED = 7  # schema.Layout.Strided
#: A weights config larger than this is not torch's (it holds a few hundred bytes per weight).
_MAX_CONFIG_BYTES = 64 * 2**20
_LEGACY_STATE_DICT = "serialized_state_dict.pt"


def load_pt2(path: Path) -> LoadedPickle:
    """The weights of the exported program(s) in `path`, as a state dict of
    :class:`TensorRef` (nested by model when there are several)."""
    try:
        with open(path, "rb") as raw:
            size = raw.seek(0, 2)
            raw.seek(0)
            with zipfile.ZipFile(raw) as archive:
                records = {info.filename: info for info in archive.infolist()}
                if _LEGACY_STATE_DICT in records:
                    return _embedded(path, raw, records[_LEGACY_STATE_DICT], size)
                return _Archive(path, raw, archive, records, size).weights()
    except UnreadablePickle:  # already says what is wrong (it is a ValueError too)
        raise
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:
        raise UnreadablePickle(f"not a readable .pt2 archive: {error}") from error


def _embedded(path: Path, raw: BinaryIO, info: zipfile.ZipInfo, size: int) -> LoadedPickle:
    """A torch.save archive stored as a member (read in place)."""
    start = member_offset(raw, info, size)
    try:
        return read_embedded(path, start, info.file_size, info.filename)
    except CheckpointError as error:
        raise UnreadablePickle(str(error)) from error


class _Archive:
    """One PT2 archive being read: its members, root folder and byte order."""

    def __init__(self, path: Path, raw: BinaryIO, archive: zipfile.ZipFile, records: dict[str, zipfile.ZipInfo], size: int):
        self.path, self.raw, self.archive, self.records, self.size = path, raw, archive, records, size
        roots = sorted(
            name[: -len("archive_format")] for name in records if name.endswith("/archive_format") and name.count("/") == 1
        )
        if not roots:
            raise UnreadablePickle("a zip archive without archive_format (not a torch.export .pt2 archive)")
        self.root = roots[0]
        order = self._text("byteorder", limit=16) if f"{self.root}byteorder" in records else "little"
        self.big_endian = order == "big"
        self.storages: dict[str, Storage] = {}
        self.suspicious: set[str] = set()

    def weights(self) -> LoadedPickle:
        models_dir = f"{self.root}models/"
        models = sorted(
            name[len(models_dir) : -len(".json")]
            for name in self.records
            if name.startswith(models_dir) and name.endswith(".json") and "/" not in name[len(models_dir) :]
        )
        if not models:
            raise UnreadablePickle(f"a .pt2 archive without an exported program (no models/*.json{self._aoti_hint()})")
        by_model = {model: self._model_weights(model) for model in models}
        value = by_model[models[0]] if len(models) == 1 else by_model
        return LoadedPickle(value, frozenset(self.suspicious), "pt2")

    def _model_weights(self, model: str) -> dict[str, Any]:
        legacy = self.records.get(f"{self.root}data/weights/{model}.pt")
        if legacy is not None:
            loaded = _embedded(self.path, self.raw, legacy, self.size)
            self.suspicious |= loaded.suspicious
            return loaded.value if isinstance(loaded.value, dict) else {}
        config_name = f"data/weights/{model}_weights_config.json"
        if f"{self.root}{config_name}" not in self.records:
            raise UnreadablePickle(f"model {model!r} of the .pt2 archive has {config_name} missing{self._aoti_hint()}")
        try:
            config = json.loads(self._text(config_name, limit=_MAX_CONFIG_BYTES))
        except (ValueError, RecursionError) as error:
            raise UnreadablePickle(f"{config_name} is not valid JSON: {error}") from error
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise UnreadablePickle(f"{config_name} holds no 'config' object")
        return {str(name): self._weight(str(name), meta) for name, meta in entries.items()}

    def _aoti_hint(self) -> str:
        if any(name.startswith(f"{self.root}data/aotinductor/") for name in self.records):
            return "; an AOTInductor package: its weights are compiled into the model, not read"
        return ""

    def _weight(self, name: str, meta: Any) -> Any:
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise UnreadablePickle(f"the weights config entry of {name} names no file")
        member = self.records.get(f"{self.root}data/weights/{meta['path_name']}")
        if member is None:
            raise UnreadablePickle(f"the bytes of {name} ({meta['path_name']}) are missing from the archive")
        if meta.get("use_pickle") is True:  # a tensor subclass, saved with torch.save
            loaded = _embedded(self.path, self.raw, member, self.size)
            self.suspicious |= loaded.suspicious
            return loaded.value
        tensor = meta.get("tensor_meta")
        if not isinstance(tensor, dict):
            raise UnreadablePickle(f"the weights config entry of {name} has no tensor_meta")
        if tensor.get("layout", _STRIDED) != _STRIDED:
            raise UnreadablePickle(f"{name} is not a dense (strided) tensor")
        number = tensor.get("dtype")
        dtype = _SCALAR_TYPES.get(number) if isinstance(number, int) else None
        if dtype is None:
            raise UnreadablePickle(f"{name} has dtype number {tensor.get('dtype')!r}, which grokspec does not read")
        storage = self._storage(member, dtype)
        sizes, strides = _ints(tensor.get("sizes"), name), _ints(tensor.get("strides"), name)
        return tensor_ref(storage, _int(tensor.get("storage_offset", {"as_int": 0}), name), sizes, strides, dtype)

    def _storage(self, member: zipfile.ZipInfo, dtype: str) -> Storage:
        """The raw bytes of one member, shared by every weight that names it."""
        if member.filename not in self.storages:
            start = member_offset(self.raw, member, self.size)
            self.storages[member.filename] = Storage(self.path, dtype, member.file_size, start, self.big_endian)
        return self.storages[member.filename]

    def _text(self, name: str, limit: int) -> str:
        info = self.records[f"{self.root}{name}"]
        if info.file_size > limit:
            raise UnreadablePickle(f"{name} declares {info.file_size} bytes, more than {limit} allowed")
        check_inflated(info, self.size)
        return read_member(self.archive, info).decode("utf-8", "replace").strip()


def _int(value: Any, name: str) -> int:
    """An export-schema SymInt that must be a plain integer ({"as_int": n})."""
    number = value.get("as_int") if isinstance(value, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        raise UnreadablePickle(f"{name} has a size, stride or offset that is not a plain integer: {str(value)[:80]}")
    return number


def _ints(values: Any, name: str) -> list[int]:
    if not isinstance(values, list):
        raise UnreadablePickle(f"{name} has no list of sizes or strides")
    return [_int(value, name) for value in values]
