"""Synthetic LLM-shaped checkpoints and the timing of their scan.

:func:`write_checkpoint` writes a Llama-2-7B-shaped checkpoint — bf16,
sharded safetensors with ``model.safetensors.index.json``, the real layer
shapes (q/k/v/o 4096×4096, gate/up 11008×4096, down 4096×11008, embed and
lm_head 32000×4096, 1-D norms) — generated here, never downloaded, with
``layers`` decoder layers (the full 32 are 13 GB). Each weight is Gaussian
noise plus a rank-32 power-law spike part, so its spectrum has a bulk and a
heavy top, as trained weights do. Writing streams row blocks: memory stays
at one block whatever the checkpoint's size.

:func:`time_scan` scans such a checkpoint in a fresh process and reports
its wall time and peak RSS; :func:`time_matrices` times one matrix of each
shape, from which :func:`extrapolate` estimates a 32-layer checkpoint
(labelled as an extrapolation wherever it is printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grokspec.bench.scan import PEAK_RSS

__all__ = [
    "LLAMA2_7B",
    "TINY_LLAMA",
    "ModelShape",
    "ScanTiming",
    "WrittenCheckpoint",
    "extrapolate",
    "tensor_specs",
    "time_matrices",
    "time_scan",
    "write_checkpoint",
    "write_series",
]


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-style decoder."""

    name: str
    hidden: int
    intermediate: int
    vocab: int
    #: Layers of the real model (the generator may write fewer).
    layers: int


LLAMA2_7B = ModelShape("llama-2-7b", hidden=4096, intermediate=11008, vocab=32000, layers=32)
#: The same layout at toy size, for tests.
TINY_LLAMA = ModelShape("tiny-llama", hidden=64, intermediate=172, vocab=300, layers=2)

_ROW_BLOCK = 2048
_SPIKES = 32


@dataclass(frozen=True)
class WrittenCheckpoint:
    directory: Path
    index: Path
    shards: tuple[Path, ...]
    total_bytes: int
    largest_shard_bytes: int
    #: (name, rows, cols) of every 2-D tensor.
    matrices: tuple[tuple[str, int, int], ...]


def tensor_specs(model: ModelShape, layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor, in the Hugging Face Llama naming."""
    h, f = model.hidden, model.intermediate
    specs: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (model.vocab, h))]
    for i in range(layers):
        p = f"model.layers.{i}."
        specs += [(p + f"self_attn.{x}_proj.weight", (h, h)) for x in "qkvo"]
        specs += [(p + "mlp.gate_proj.weight", (f, h)), (p + "mlp.up_proj.weight", (f, h)), (p + "mlp.down_proj.weight", (h, f))]
        specs += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,))]
    specs += [("model.norm.weight", (h,)), ("lm_head.weight", (model.vocab, h))]
    return specs


def _to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even (as torch does)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded: np.ndarray = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(
        np.uint16
    )
    return rounded


def _blocks(shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    """Row blocks of one tensor as float32: noise plus power-law spikes (2-D),
    ones plus noise (1-D norms)."""
    if len(shape) == 1:
        yield (1.0 + 0.05 * rng.standard_normal(shape[0], dtype=np.float32)).astype(np.float32)
        return
    rows, cols = shape
    edge = np.sqrt(rows) + np.sqrt(cols)  # ‖noise‖₂ of an iid N(0, 1) matrix
    strengths = (4.0 * edge * np.arange(1, _SPIKES + 1) ** -0.7).astype(np.float32)
    right = (rng.standard_normal((_SPIKES, cols), dtype=np.float32) / np.sqrt(cols)) * strengths[:, None]
    for start in range(0, rows, _ROW_BLOCK):
        n = min(_ROW_BLOCK, rows - start)
        left = rng.standard_normal((n, _SPIKES), dtype=np.float32) / np.float32(np.sqrt(rows))
        block = rng.standard_normal((n, cols), dtype=np.float32)
        block += left @ right
        block *= np.float32(0.02)
        yield block


def _shard_plan(specs: list[tuple[str, tuple[int, ...]]], max_shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    used = 0
    for name, shape in specs:
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and used + nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += nbytes
    return shards


def _write_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]], seed: int, first: int, metadata: dict[str, str]) -> int:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, shape in tensors:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for k, (_, shape) in enumerate(tensors):
            rng = np.random.default_rng([seed, first + k])
            for block in _blocks(shape, rng):
                handle.write(_to_bf16_bits(block).tobytes())
    partial.replace(path)
    return 8 + len(encoded) + offset


def write_checkpoint(
    directory: str | Path,
    *,
    layers: int = 2,
    model: ModelShape = LLAMA2_7B,
    max_shard_bytes: int = 2 * 2**30,
    seed: int = 0,
    step: int | None = None,
) -> WrittenCheckpoint:
    """Writes a `layers`-layer checkpoint of `model`'s shapes into `directory`
    as bf16 shards and ``model.safetensors.index.json``; deterministic in `seed`."""
    if not 0 <= layers <= 4096:
        raise ValueError(f"layers must be between 0 and 4096, got {layers}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specs = tensor_specs(model, layers)
    plan = _shard_plan(specs, max_shard_bytes)
    metadata = {"format": "pt"} | ({"step": str(step)} if step is not None else {})
    shards, sizes, weight_map = [], [], {}
    first = 0
    for number, tensors in enumerate(plan, start=1):
        name = f"model-{number:05d}-of-{len(plan):05d}.safetensors"
        sizes.append(_write_shard(directory / name, tensors, seed, first, metadata))
        shards.append(directory / name)
        weight_map.update({t: name for t, _ in tensors})
        first += len(tensors)
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}, indent=1))
    matrices = tuple((n, s[0], s[1]) for n, s in specs if len(s) == 2)
    return WrittenCheckpoint(directory, index, tuple(shards), sum(sizes), max(sizes), matrices)


def write_series(
    directory: str | Path, steps: list[int], *, layers: int = 1, model: ModelShape = TINY_LLAMA, max_shard_bytes: int = 2**20
) -> list[WrittenCheckpoint]:
    """A series of checkpoints ``checkpoint-<step>/`` (Hugging Face Trainer
    layout), each with its own seed, for scans of a series."""
    return [
        write_checkpoint(
            Path(directory) / f"checkpoint-{step}", layers=layers, model=model, max_shard_bytes=max_shard_bytes, seed=step
        )
        for step in steps
    ]


@dataclass(frozen=True)
class ScanTiming:
    """One scan of one checkpoint in a fresh process."""

    method: str
    seconds: float
    peak_rss_bytes: int
    #: The same process's peak RSS before it scanned anything.
    baseline_rss_bytes: int
    matrices: int
    threads: int


# The peak is VmHWM (see bench.scan.PEAK_RSS): ru_maxrss would count the parent's
# memory at the fork. The baseline is taken after what every scan costs whatever
# the checkpoint — its imports (pandas alone is 65 MB) and the engines' first use
# (thread pools, BLAS buffers: 22 MB for the estimate) on a 1024² matrix — so that
# peak - baseline is what the checkpoint costs.
_SCAN_PROBE = f"""
import json, sys, time
import numpy, pandas
from grokspec.scan.scan import ScanOptions, scan
from grokspec.approx import approx_entropy
from grokspec.spectral import spectral_entropy
peak = lambda: {PEAK_RSS}
warm = numpy.random.default_rng(0).standard_normal((1024, 1024)).astype(numpy.float32)
approx_entropy(warm, threads=int(sys.argv[3])), spectral_entropy(warm, threads=int(sys.argv[3]))
del warm
baseline = peak()
method, threads = sys.argv[2], int(sys.argv[3])
chosen = {{"approx": True}} if method == "approx" else {{"method": method}}
options = ScanOptions(threads=threads, representation=False, **chosen)
start = time.perf_counter()
result = scan(sys.argv[1], options, cache_path=None)
seconds = time.perf_counter() - start
rows = result.table[result.table["metric"] == "entropy"]
measured = {{"seconds": seconds, "peak": peak(), "baseline": baseline, "matrices": len(rows)}}
print(json.dumps(measured | {{"failed": result.failed_checkpoints}}))
"""


def time_scan(directory: str | Path, *, method: str = "auto", threads: int | None = None) -> ScanTiming:
    """Scans `directory` (``method="approx"`` for the approximate entropy) in a
    fresh process; its wall time and peak RSS."""
    from grokspec import _core

    threads = threads or _core.default_threads()
    done = subprocess.run(
        [sys.executable, "-c", _SCAN_PROBE, str(directory), method, str(threads)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the scan probe failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["failed"]:
        raise RuntimeError(f"the scan of {directory} could not read {measured['failed']} checkpoint(s)")
    return ScanTiming(method, measured["seconds"], measured["peak"], measured["baseline"], measured["matrices"], threads)


def _bf16_matrix(checkpoint: WrittenCheckpoint, name: str) -> np.ndarray:
    """One tensor of a written checkpoint as float32 (bf16 widened exactly)."""
    shard = checkpoint.directory / json.loads(checkpoint.index.read_text())["weight_map"][name]
    with open(shard, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        entry = json.loads(handle.read(length))[name]
        start, end = entry["data_offsets"]
        handle.seek(8 + length + start)
        bits = np.frombuffer(handle.read(end - start), dtype=np.uint16)
    widened: np.ndarray = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(entry["shape"])
    return widened


def time_matrices(
    checkpoint: WrittenCheckpoint, *, methods: tuple[str, ...] = ("auto", "approx"), threads: int | None = None
) -> list[dict[str, Any]]:
    """Seconds for one matrix of each distinct shape, per method (one run
    each after loading: these matrices take seconds, not microseconds)."""
    from grokspec.block_products import choose_backend
    from grokspec.spectral import spectral_entropy, spectral_stats

    # The first estimate of a large matrix imports torch for its products (a
    # one-off cost per process, ~2 s, not a matrix's): paid here, untimed.
    choose_backend((4096, 4096), "auto")
    seen: dict[tuple[int, int], str] = {}
    for name, rows, cols in checkpoint.matrices:
        seen.setdefault((rows, cols), name)
    out = []
    for (rows, cols), name in seen.items():
        matrix = _bf16_matrix(checkpoint, name)
        record: dict[str, Any] = {"shape": f"{rows}x{cols}", "tensor": name}
        for method in methods:
            start = time.perf_counter()
            if method == "approx":
                stats = spectral_stats(matrix, method="approx", threads=threads)
                assert not isinstance(stats, list)
                record["approx_entropy"], record["approx_error"] = stats.entropy, stats.entropy_error
            else:
                record[f"{method}_entropy"] = spectral_entropy(matrix, method=method, threads=threads)  # type: ignore[call-overload]
            record[f"{method}_seconds"] = time.perf_counter() - start
        out.append(record)
    return out


def extrapolate(per_matrix: list[dict[str, Any]], model: ModelShape, method: str) -> float:
    """Seconds for all ``model.layers`` layers, from the per-shape times:
    an extrapolation (it assumes every matrix of a shape takes the same
    time), to be labelled as such."""
    seconds: dict[tuple[int, ...], float] = {
        tuple(int(v) for v in r["shape"].split("x")): float(r[f"{method}_seconds"]) for r in per_matrix
    }
    return sum(seconds[(n[1], n[2])] for n in _matrix_shapes(model, model.layers))


def _matrix_shapes(model: ModelShape, layers: int) -> list[tuple[str, int, int]]:
    return [(n, s[0], s[1]) for n, s in tensor_specs(model, layers) if len(s) == 2]


def as_json(value: Any) -> Any:
    """A dataclass (or list of them) as JSON values."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(value).items()}
