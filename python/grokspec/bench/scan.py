"""Scan benchmarks behind ``grokspec bench --scan``.

- speed: scanning N checkpoints of the default grokking transformer against
  the plain-torch way (``torch.load`` each file, ``torch.linalg.svdvals``
  each matrix, the entropy in numpy), measured in one process, same threads;
- memory: the peak resident memory of a scan (in a fresh process) of a
  sharded safetensors checkpoint, against the size of its largest shard.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_scan_speed_benchmark", "run_sharded_memory_benchmark"]


def _write_checkpoints(directory: Path, count: int) -> tuple[Path, Path]:
    """`count` checkpoints of the default transformer, as safetensors and as .pt."""
    import torch
    from safetensors.torch import save_file

    from grokspec.lab.demo import DEMO_CONFIG
    from grokspec.lab.models import build_model

    model = build_model(DEMO_CONFIG, 97, [0])
    base = model.seed_state_dict(0)
    st_dir, pt_dir = directory / "safetensors", directory / "pt"
    st_dir.mkdir(parents=True)
    pt_dir.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for step in range(count):
        state = {k: v + 0.01 * step * torch.randn(v.shape, generator=g) for k, v in base.items()}
        save_file(state, st_dir / f"step_{step:06d}.safetensors", metadata={"step": str(step)})
        torch.save(state, pt_dir / f"step_{step:06d}.pt")
    return st_dir, pt_dir


def _torch_way(pt_dir: Path) -> dict[tuple[int, str], float]:
    """The plain-torch scan: load each file, svdvals each matrix, entropy in numpy."""
    import torch

    out = {}
    for path in sorted(pt_dir.glob("*.pt")):
        step = int(path.stem.split("_")[1])
        state = torch.load(path, map_location="cpu", weights_only=True)
        for name, tensor in state.items():
            if tensor.dim() < 2:
                continue
            matrix = tensor.reshape(tensor.shape[0], -1) if tensor.dim() != 3 else tensor.reshape(-1, tensor.shape[-1])
            sigma = torch.linalg.svdvals(matrix).double().numpy()
            w = sigma**2
            p = w[w > 0] / w.sum()
            out[(step, name)] = float(-(p * np.log(p)).sum() / np.log(min(matrix.shape)))
    return out


def run_scan_speed_benchmark(checkpoints: int = 100, threads: int | None = None, repeats: int = 3) -> dict[str, Any]:
    import torch

    from grokspec import _core
    from grokspec.bench.spectral import settle
    from grokspec.scan.scan import ScanOptions, scan

    threads = threads or _core.default_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            st_dir, pt_dir = _write_checkpoints(Path(tmp), checkpoints)
            options = ScanOptions(representation=False, threads=threads)

            def best_of(run: Callable[[], Any]) -> tuple[float, Any]:
                times, value = [], None
                settle()
                for _ in range(repeats):
                    start = time.perf_counter()
                    value = run()
                    times.append(time.perf_counter() - start)
                return min(times), value

            scan(st_dir, options, cache_path=None)  # warm-up (imports, thread pool)
            torch_seconds, reference = best_of(lambda: _torch_way(pt_dir))
            st_seconds, st_result = best_of(lambda: scan(st_dir, options, cache_path=None))
            pt_seconds, _ = best_of(lambda: scan(pt_dir, options, cache_path=None))
    finally:
        torch.set_num_threads(previous)
    table = st_result.table
    entropy = table[table["metric"] == "entropy"]
    ours = {(int(s), t): v for s, t, v in zip(entropy["step"], entropy["tensor"], entropy["value"])}
    error = max(abs(ours[key] - value) for key, value in reference.items())
    return {
        "checkpoints": checkpoints,
        "matrices": len(reference),
        "threads": threads,
        "torch_way_seconds": torch_seconds,
        "grokspec_safetensors_seconds": st_seconds,
        "grokspec_pt_seconds": pt_seconds,
        "speedup_safetensors": torch_seconds / st_seconds,
        "speedup_pt": torch_seconds / pt_seconds,
        "max_entropy_difference": error,
    }


# The peak resident memory of this process: VmHWM belongs to its own
# address space (ru_maxrss is inherited from the parent across fork/exec,
# which here just wrote the checkpoint and would inflate every reading).
PEAK_RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024"

_MEMORY_PROBE = f"""
import json, sys, time
from grokspec.scan.scan import ScanOptions, scan
start = time.perf_counter()
result = scan(sys.argv[1], ScanOptions(threads=int(sys.argv[2])), cache_path=None)
seconds = time.perf_counter() - start
summary = {{"peak_rss_bytes": {PEAK_RSS}, "seconds": seconds, "rows": len(result.table)}}
print(json.dumps({{**summary, "failed": result.failed_checkpoints}}))
"""

_BASELINE_PROBE = f"""
import json
import grokspec.scan.scan, grokspec.scan.formats
print(json.dumps({{"peak_rss_bytes": {PEAK_RSS}}}))
"""


def run_sharded_memory_benchmark(shard_bytes: int = 700_000_000, shards: int = 2, threads: int | None = None) -> dict[str, Any]:
    """Writes a sharded checkpoint of LLaMA-like layers (4096² and 11008×4096
    float32) and measures a fresh process's peak RSS while scanning it."""
    from safetensors.numpy import save_file

    from grokspec import _core

    threads = threads or _core.default_threads()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "checkpoint-1000"
        root.mkdir()
        names, sizes = [], []
        shapes = [(4096, 4096)] * 4 + [(11008, 4096)] * 2
        for s in range(shards):
            tensors: dict[str, Any] = {}
            used = 0
            for i, shape in enumerate(shapes):
                nbytes = shape[0] * shape[1] * 4
                if used + nbytes > shard_bytes and tensors:
                    break
                tensors[f"layers.{s}.w{i}"] = rng.standard_normal(shape, dtype=np.float32)
                used += nbytes
            name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file(tensors, str(root / name))
            del tensors
            sizes.append((root / name).stat().st_size)
            names.append(name)
        # The index maps each tensor to the shard that really holds it.
        weight_map = {}
        for name in names:
            header, _ = _core.safetensors_header(str(root / name))
            weight_map.update({t[0]: name for t in header})
        (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        baseline = json.loads(
            subprocess.run([sys.executable, "-c", _BASELINE_PROBE], capture_output=True, text=True, check=True).stdout
        )
        probe = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, tmp, str(threads)], capture_output=True, text=True, check=True
        )
        measured = json.loads(probe.stdout)
    largest = max(sizes)
    return {
        "total_bytes": sum(sizes),
        "largest_shard_bytes": largest,
        "peak_rss_bytes": measured["peak_rss_bytes"],
        "python_baseline_rss_bytes": baseline["peak_rss_bytes"],
        "peak_over_largest_shard": measured["peak_rss_bytes"] / largest,
        "seconds": measured["seconds"],
        "rows": measured["rows"],
        "failed_checkpoints": measured["failed"],
        "threads": threads,
    }
