"""grokspec on a CUDA device: speed and accuracy against torch.linalg on the
same GPU, and the scan of a synthetic Llama-2-7B-shaped checkpoint.

    python benches/device/gpu_bench.py OUT_DIR [--quick] [--layers 2]

Needs torch with CUDA, numpy, scipy, safetensors and an installed grokspec;
no network. Writes OUT_DIR/gpu_bench.json and OUT_DIR/gpu_bench.md and
prints the table. About two minutes on an H100.

Every contender gets float32 CUDA input (as a model's weights would be) and
returns the normalized entropy (power 2, "dim"); its error is against a
float64 reference: LAPACK (scipy, on the host) up to 4096², and float64
``torch.linalg.svdvals`` on the device for 8192² (LAPACK there takes minutes;
the label says which). Times are medians of synchronized runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import grokspec
from grokspec.bench import llm


def _entropy_of_squares(squares: np.ndarray, k: int) -> float:
    w = np.clip(np.asarray(squares, dtype=np.float64), 0.0, None)
    p = w[w > 0] / w.sum()
    return float(-(p * np.log(p)).sum() / np.log(k))


def _timed(run: Callable[[], Any], repeats: int, warm_up: Callable[[], Any]) -> tuple[float, Any]:
    warm_up()  # kernels, cuBLAS/cuSOLVER handles and workspaces
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        value = run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _contenders() -> dict[str, Callable[[list[torch.Tensor]], np.ndarray]]:
    def per_matrix(values: Callable[[torch.Tensor], torch.Tensor], squared: bool) -> Callable[[list[torch.Tensor]], np.ndarray]:
        def run(mats: list[torch.Tensor]) -> np.ndarray:
            # Batched when the shapes agree (as a user would call it).
            stack = torch.stack(mats)
            v = values(stack).double()
            v = v if squared else v**2
            k = min(mats[0].shape)
            return np.array([_entropy_of_squares(row, k) for row in v.cpu().numpy()])

        return run

    def gram(t: torch.Tensor) -> torch.Tensor:
        return t.mT @ t if t.shape[-2] >= t.shape[-1] else t @ t.mT

    return {
        "grokspec (CUDA)": lambda mats: np.atleast_1d(np.asarray(grokspec.spectral_entropy(mats if len(mats) > 1 else mats[0]))),
        "torch.linalg.svdvals f32": per_matrix(torch.linalg.svdvals, squared=False),
        "torch.linalg.eigvalsh(WᵀW) f32": per_matrix(lambda t: torch.linalg.eigvalsh(gram(t)), squared=True),
        "torch.linalg.svdvals f64": per_matrix(lambda t: torch.linalg.svdvals(t.double()), squared=False),
        "torch.linalg.eigvalsh(WᵀW) f64": per_matrix(lambda t: torch.linalg.eigvalsh(gram(t.double())), squared=True),
    }


def _reference(mats: list[torch.Tensor]) -> tuple[np.ndarray, str]:
    if max(max(m.shape) for m in mats) <= 4096:
        import scipy.linalg

        values = [scipy.linalg.svdvals(m.double().cpu().numpy()) ** 2 for m in mats]
        return np.array([_entropy_of_squares(v, min(m.shape)) for v, m in zip(values, mats)]), "LAPACK f64 (host)"
    values = [(torch.linalg.svdvals(m.double()) ** 2).cpu().numpy() for m in mats]
    return np.array([_entropy_of_squares(v, min(m.shape)) for v, m in zip(values, mats)]), "torch.linalg.svdvals f64 (device)"


def run_cases(quick: bool) -> list[dict[str, Any]]:
    cases = [("4096x4096", (4096, 4096), 1), ("8192x8192", (8192, 8192), 1), ("64 x (512x128)", (512, 128), 64)]
    if quick:
        cases = [("1024x1024", (1024, 1024), 1), ("64 x (512x128)", (512, 128), 64)]
    generator = torch.Generator(device="cuda").manual_seed(0)
    results = []
    for name, shape, count in cases:
        mats = [torch.randn(*shape, device="cuda", generator=generator) for _ in range(count)]
        reference, source = _reference(mats)
        # One timed run at 8192² (each f64 contender takes seconds there).
        repeats = 1 if shape[0] >= 8192 else 3 if shape[0] >= 4096 else 5
        timings = {}
        for contender, run in _contenders().items():
            # At 8192² one f64 SVD takes 10 s: warm up on a smaller matrix of the same kind there.
            warm = mats if shape[0] < 8192 else [m[:2048, :2048].contiguous() for m in mats]
            seconds, values = _timed(
                lambda run=run, mats=mats: run(mats),  # type: ignore[misc]
                repeats,
                lambda run=run, warm=warm: run(warm),  # type: ignore[misc]
            )
            timings[contender] = seconds
            results.append(
                {
                    "case": name,
                    "contender": contender,
                    "seconds": seconds,
                    "entropy_error": float(np.max(np.abs(values - reference))),
                    "reference": source,
                }
            )
            print(f"{name:16s} {contender:32s} {seconds * 1e3:9.2f} ms  err {results[-1]['entropy_error']:.1e}", flush=True)
        for r in results:
            if r["case"] == name:
                r["grokspec_speedup"] = r["seconds"] / timings["grokspec (CUDA)"]
        del mats
        torch.cuda.empty_cache()
    return results


def _device_scan(checkpoint: llm.WrittenCheckpoint) -> dict[str, Any]:
    """Every matrix of the checkpoint read straight to the GPU and analysed there."""
    from safetensors import safe_open

    torch.cuda.synchronize()
    start = time.perf_counter()
    entropies: dict[str, float] = {}
    for shard in checkpoint.shards:
        with safe_open(str(shard), framework="pt", device="cuda") as handle:
            names = [n for n in handle.keys() if len(handle.get_slice(n).get_shape()) == 2]  # noqa: SIM118 (a handle, not a dict)
            for n in names:
                stats = grokspec.spectral_stats(handle.get_tensor(n))
                assert not isinstance(stats, list)
                entropies[n] = stats.entropy
    torch.cuda.synchronize()
    return {
        "seconds": time.perf_counter() - start,
        "matrices": len(entropies),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(),
        "entropies": entropies,
    }


def run_scan(layers: int, work: Path) -> dict[str, Any]:
    start = time.perf_counter()
    checkpoint = llm.write_checkpoint(work / "llama-7b-shaped", layers=layers, max_shard_bytes=2**30)
    written = time.perf_counter() - start
    print(
        f"wrote a {layers}-layer 7B-shaped checkpoint ({checkpoint.total_bytes / 2**30:.2f} GiB) in {written:.1f} s", flush=True
    )
    host = llm.time_scan(checkpoint.directory, method="auto")  # a fresh process: its own peak RSS
    print(
        f"host scan (Rust engine, {host.threads} threads): {host.seconds:.1f} s, peak RSS {host.peak_rss_bytes / 2**30:.2f} GiB",
        flush=True,
    )
    torch.cuda.reset_peak_memory_stats()
    device = _device_scan(checkpoint)
    device_check = _device_scan(checkpoint)  # the second pass is warm (cuSOLVER workspaces, page cache)
    print(
        f"device scan: {device['seconds']:.1f} s cold, {device_check['seconds']:.1f} s warm for {device['matrices']} matrices",
        flush=True,
    )
    per_matrix = llm.time_matrices(checkpoint, methods=("auto",))
    return {
        "layers": layers,
        "total_bytes": checkpoint.total_bytes,
        "largest_shard_bytes": checkpoint.largest_shard_bytes,
        "write_seconds": written,
        "host_scan": llm.as_json(host),
        "device_scan_seconds_cold": device["seconds"],
        "device_scan_seconds_warm": device_check["seconds"],
        "device_peak_gpu_bytes": device["peak_gpu_bytes"],
        "matrices": device["matrices"],
        "host_per_matrix": per_matrix,
        "host_32_layer_extrapolated_seconds": llm.extrapolate(per_matrix, llm.LLAMA2_7B, "auto"),
    }


def markdown(machine: str, cases: list[dict[str, Any]], scan: dict[str, Any] | None) -> str:
    lines = [
        f"Device: {machine}",
        "",
        "| case | contender | time | grokspec speedup | max abs entropy error | reference |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in cases:
        speed = "—" if r["contender"].startswith("grokspec") else f"{r['grokspec_speedup']:.1f}×"
        error = f"{r['entropy_error']:.1e}"
        lines.append(f"| {r['case']} | {r['contender']} | {r['seconds'] * 1e3:.1f} ms | {speed} | {error} | {r['reference']} |")
    if scan is not None:
        gib = 2**30
        host = scan["host_scan"]
        lines += [
            "",
            f"Synthetic Llama-2-7B-shaped checkpoint, {scan['layers']} layers + embeddings ({scan['matrices']} matrices, "
            f"{scan['total_bytes'] / gib:.2f} GiB bf16, largest shard {scan['largest_shard_bytes'] / gib:.2f} GiB):",
            "",
            "| path | time | peak memory |",
            "| --- | ---: | ---: |",
            f"| grokspec scan (Rust engine on the host, {host['threads']} threads) | {host['seconds']:.1f} s | "
            f"{host['peak_rss_bytes'] / gib:.2f} GiB RSS |",
            f"| matrices read to the GPU, grokspec on CUDA (cold / warm) | {scan['device_scan_seconds_cold']:.1f} s / "
            f"{scan['device_scan_seconds_warm']:.1f} s | {scan['device_peak_gpu_bytes'] / gib:.2f} GiB GPU |",
            f"| host engine, 32 layers (extrapolated from per-shape times, not measured) | "
            f"{scan['host_32_layer_extrapolated_seconds']:.0f} s | — |",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true", help="small cases and a 1-layer toy scan (a smoke test)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--no-scan", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    versions = f"torch {torch.__version__}, Python {platform.python_version()}, grokspec {grokspec.__version__}"
    machine = f"{torch.cuda.get_device_name()}, {versions}"
    print(machine, flush=True)
    cases = run_cases(args.quick)
    scan = None
    if not args.no_scan:
        with tempfile.TemporaryDirectory() as tmp:
            scan = run_scan(1 if args.quick else args.layers, Path(tmp))
    (args.out / "gpu_bench.json").write_text(json.dumps({"machine": machine, "cases": cases, "scan": scan}, indent=1))
    table = markdown(machine, cases, scan)
    (args.out / "gpu_bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
