"""A/B of the approximation's block products: numpy's BLAS against the
default choice ("auto": torch's MKL from 4096² up), alternated in one
process, with the exact engine's best of two for the speedup.

    python benches/approx_products.py [--threads 2] [--rounds 3] [--json out.json]

Prints one line per shape: median seconds per estimate by each backend and
the speedup of each against the exact engine (docs/APPROX.md)."""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from grokspec import spectral_entropy
from grokspec.approx import ApproxOptions, approx_entropy
from grokspec.bench.approx import speed_matrix
from grokspec.cpu import cpu_model

SHAPES = ((4096, 4096), (4096, 11008), (8192, 8192))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    records = []
    print(f"CPU {cpu_model()} ({platform.machine()}), {args.threads} threads")
    for rows, cols in SHAPES:
        _, a = speed_matrix(rows, cols)  # the matrices of grokspec bench --approx
        exact_times = []
        for _ in range(2):
            start = time.perf_counter()
            exact = float(spectral_entropy(a, threads=args.threads))
            exact_times.append(time.perf_counter() - start)
        times: dict[str, list[float]] = {"numpy": [], "auto": []}
        errors: dict[str, list[float]] = {"numpy": [], "auto": []}
        for products in times:  # warm-up (imports, BLAS threads)
            approx_entropy(a, options=ApproxOptions(seed=0, products=products), threads=args.threads)
        for _ in range(args.rounds):
            for seed in (1, 2, 3):
                for products in times:
                    start = time.perf_counter()
                    result = approx_entropy(a, options=ApproxOptions(seed=seed, products=products), threads=args.threads)
                    times[products].append(time.perf_counter() - start)
                    errors[products].append(abs(result.entropy - exact))
        best_exact = min(exact_times)
        record = {"shape": f"{rows}x{cols}", "exact_seconds": best_exact}
        for products, seconds in times.items():
            median = float(np.median(seconds))
            record[products] = {"median_seconds": median, "speedup": best_exact / median, "max_abs_error": max(errors[products])}
        records.append(record)
        print(
            f"{rows}x{cols}: exact {best_exact:.2f} s; numpy {record['numpy']['median_seconds']:.3f} s "
            f"({record['numpy']['speedup']:.1f}x); auto {record['auto']['median_seconds']:.3f} s "
            f"({record['auto']['speedup']:.1f}x); max |dH| {record['numpy']['max_abs_error']:.1e} / "
            f"{record['auto']['max_abs_error']:.1e}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"cpu": cpu_model(), "threads": args.threads, "results": records}, handle, indent=2)


if __name__ == "__main__":
    main()
