"""The Llama-2-7B-shaped checkpoint of benches/llm_scan.py (2 layers, 1.33 GB
of bf16) saved as a torch.distributed checkpoint (one ``.distcp`` file, as a
one-rank ``torch.distributed.checkpoint.save`` writes it), then scanned exact
and with ``--approx`` in fresh processes: wall time and peak RSS. A DCP
folder's tensors are read into memory (no memory map), so its peak is the
measure of the scan's batching, not of the file's size.

    python benches/dcp_scan.py OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from grokspec import _core
from grokspec.bench import llm


def write_dcp(directory: Path) -> tuple[Path, int, int]:
    """(folder, total bytes, largest tensor's bytes as float32) of the DCP copy."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file

    checkpoint = llm.write_checkpoint(directory / "safetensors", layers=2, max_shard_bytes=2**30)
    state = {name: tensor for shard in checkpoint.shards for name, tensor in load_file(shard).items()}
    folder = directory / "dcp" / "step_1"
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.simplefilter("ignore")
        dcp.save({"model": state}, checkpoint_id=folder)
    largest = max(t.numel() for t in state.values()) * 4
    return folder.parent, checkpoint.total_bytes, largest


def main(out: Path) -> None:
    threads = _core.default_threads()
    with tempfile.TemporaryDirectory(prefix="grokspec-dcp-") as directory:
        start = time.perf_counter()
        folder, total, largest = write_dcp(Path(directory))
        write_seconds = time.perf_counter() - start
        scans = [llm.time_scan(folder, method=method, threads=threads) for method in ("auto", "approx")]
    result = {
        "threads": threads,
        "write_seconds": write_seconds,
        "total_bytes": total,
        "largest_matrix_float32_bytes": largest,
        "scans": [llm.as_json(s) for s in scans],
    }
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benches/dcp_scan.py OUT.json")
    main(Path(sys.argv[1]))
