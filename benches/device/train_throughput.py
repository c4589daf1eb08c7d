"""Seed-runs per minute of seed-batched training (``grokspec train --seeds``).

For each number of seeds S, trains the default config (transformer, (a+b) mod 97,
batch 512, evaluation every 100 steps) for a short and a long budget through the
library's ``train_seeds`` and takes the difference, so start-up (model build,
data, the first evaluation) cancels; reports ms per seed-step and seed-runs of
3,000 steps per minute. Usage: python benches/device/train_throughput.py OUT_DIR
[--device cuda] [--seeds 1,10,50] [--steps 300]. Writes OUT_DIR/train_throughput.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

from grokspec.lab.config import TrainConfig
from grokspec.lab.train import train_seeds


def _seconds(config: TrainConfig, seeds: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        train_seeds(dataclasses.replace(config, steps=steps), list(range(seeds)), Path(tmp))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", default="1,10,50")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()

    config = TrainConfig(device=args.device, checkpoint_every=100_000)
    rows = []
    for seeds in (int(s) for s in args.seeds.split(",")):
        _seconds(config, seeds, 10)  # warm-up: kernels, allocator
        short = _seconds(config, seeds, 10)
        long = _seconds(config, seeds, args.steps)
        per_seed_step = (long - short) / ((args.steps - 10) * seeds)
        rows.append(
            {
                "seeds": seeds,
                "seconds_short": round(short, 3),
                "seconds_long": round(long, 3),
                "ms_per_seed_step": round(per_seed_step * 1e3, 4),
                "seed_runs_of_3000_steps_per_minute": round(60.0 / (per_seed_step * 3000), 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        # Written after every row: a run cut by its time limit keeps what it measured.
        _write(args.out, args.device, rows)


def _write(out: Path, device_arg: str, rows: list[dict[str, float]]) -> None:
    import torch

    device = str(torch.device("cuda") if device_arg in ("auto", "cuda") and torch.cuda.is_available() else device_arg)
    result = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "config": "TrainConfig() defaults: transformer d_model 128, (a+b) mod 97, batch 512, eval every 100",
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
