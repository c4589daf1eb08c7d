"""The Llama-2-7B-shaped scan of docs/APPROX.md: writes a synthetic 2-layer
checkpoint (1.33 GB, bf16, two shards) into a temporary folder, scans it
exact and with ``--approx`` in fresh processes (wall time, peak RSS), times
one matrix of each shape both ways, and writes everything as JSON.

    python benches/llm_scan.py docs/approx-llm-scan.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from grokspec import _core
from grokspec.bench import llm


def main(out: Path) -> None:
    threads = _core.default_threads()
    with tempfile.TemporaryDirectory(prefix="grokspec-llm-") as directory:
        start = time.perf_counter()
        checkpoint = llm.write_checkpoint(directory, layers=2, max_shard_bytes=2**30)
        write_seconds = time.perf_counter() - start
        scan_approx = llm.time_scan(checkpoint.directory, method="approx", threads=threads)
        scan_auto = llm.time_scan(checkpoint.directory, method="auto", threads=threads)
        per_matrix = llm.time_matrices(checkpoint, threads=threads)
    result = {
        "threads": threads,
        "write_seconds": write_seconds,
        "total_bytes": checkpoint.total_bytes,
        "largest_shard_bytes": checkpoint.largest_shard_bytes,
        "shards": len(checkpoint.shards),
        "scan_approx": llm.as_json(scan_approx),
        "scan_auto": llm.as_json(scan_auto),
        "per_matrix": per_matrix,
        "extrapolated_32_layers_auto_seconds": llm.extrapolate(per_matrix, llm.LLAMA2_7B, "auto"),
        "extrapolated_32_layers_approx_seconds": llm.extrapolate(per_matrix, llm.LLAMA2_7B, "approx"),
    }
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_matrix"}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benches/llm_scan.py OUT.json")
    main(Path(sys.argv[1]))
