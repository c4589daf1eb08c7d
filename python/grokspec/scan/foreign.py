"""Checkpoint formats grokspec does not read, named when nothing else is found.

A folder of Flax, Keras/TensorFlow, GGUF or ONNX weights is not a PyTorch
run; "no checkpoints found" alone leaves the user guessing whether the scan
missed something. Only names are looked at (nothing is opened), links are not
followed, and the walk stops after a bounded number of entries and levels, so
a hostile tree cannot make this slow or deep. Beside readable checkpoints,
:func:`foreign_bin` tells other libraries' ``.bin`` weights from torch's by
their first four bytes (regular files only).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from grokspec.scan import guards

__all__ = ["ForeignFile", "find_foreign", "foreign_bin"]

#: Entries looked at, at most (a huge tree is sampled, not walked).
MAX_ENTRIES = 20_000
#: Folder levels below the scanned one looked into (foreign weights sit near
#: the top; see also guards.MAX_FOLDER_DEPTH).
MAX_DEPTH = 6

_BY_SUFFIX = {
    ".msgpack": "Flax/JAX msgpack",
    ".h5": "Keras/TensorFlow HDF5",
    ".hdf5": "Keras/TensorFlow HDF5",
    ".keras": "Keras",
    ".gguf": "GGUF (llama.cpp)",
    ".ggml": "GGML (llama.cpp)",
    ".onnx": "ONNX",
    ".pb": "TensorFlow SavedModel",
    ".tflite": "TensorFlow Lite",
    ".mlmodel": "Core ML",
}
# TensorFlow's tf.train.Checkpoint shards (`ckpt-5.data-00000-of-00001`) and
# Orbax's (JAX) checkpoint marker.
_TF_DATA = re.compile(r"\.data-\d{5}-of-\d{5}$")
_BY_NAME = {"_CHECKPOINT_METADATA": "Orbax (JAX)"}


#: The first bytes of other libraries' ``.bin`` weights (torch's start with a zip or pickle header):
#: GGML and its successors (llama.cpp, whisper.cpp; the magic number little-endian), fastText.
_BIN_MAGICS = {
    b"lmgg": "GGML (llama.cpp/whisper.cpp)",
    b"fmgg": "GGML (llama.cpp)",
    b"tjgg": "GGML (llama.cpp)",
    b"algg": "GGML LoRA (llama.cpp)",
    b"GGUF": "GGUF (llama.cpp)",
    b"\xba\x16\x4f\x2f": "fastText",
}


def foreign_bin(path: Path) -> str | None:
    """The format of a ``.bin`` file that is another library's weights, not a torch.save
    file: by its magic number, or OpenVINO IR (``X.bin`` beside its ``X.xml``). None
    otherwise — an unknown ``.bin`` is still read as torch's, and reported if it is not."""
    if path.with_suffix(".xml").is_file():
        return "OpenVINO IR"
    return _BIN_MAGICS.get(guards.first_bytes(path, 4))


@dataclass(frozen=True)
class ForeignFile:
    path: str
    format: str


def _format_of(name: str) -> str | None:
    if name in _BY_NAME:
        return _BY_NAME[name]
    if _TF_DATA.search(name):
        return "TensorFlow checkpoint"
    return _BY_SUFFIX.get(os.path.splitext(name)[1].lower())


def find_foreign(directory: Path, limit: int = 3) -> list[ForeignFile]:
    """Up to `limit` files under `directory` in formats grokspec does not read
    (paths relative to `directory`), in walk order."""
    found: list[ForeignFile] = []
    seen = 0
    for here, dirs, files in guards.walk_within(directory, MAX_DEPTH):
        for name in sorted(files):
            seen += 1
            kind = _format_of(name)
            if kind is not None:
                found.append(ForeignFile(os.path.relpath(here / name, directory), kind))
                if len(found) >= limit:
                    return found
        seen += len(dirs)
        if seen >= MAX_ENTRIES:
            break
    return found
