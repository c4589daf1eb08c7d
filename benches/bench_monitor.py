"""The cost of EntropyMonitor in a plain torch loop on the default grokking run.

The default model (``TrainConfig()``: (a + b) mod 97, d_model 128, batch 512,
probe 512) trains in blocks of `every` steps, alternately without and with
the monitor (ABBA order, so that drift in the machine's load hits both
alike); each monitored block holds exactly one evaluation, as at the
default interval. Reported: the time per block with and without, their
ratio, and the monitor's own time per evaluation against the time of the
`every` training steps it watches (the overhead without the noise of two
separate measurements).

    python benches/bench_monitor.py [--rounds 8] [--every 100] [--device auto]
    pytest benches/bench_monitor.py -s
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grokspec.lab.config import TrainConfig
from grokspec.lab.models import build_model
from grokspec.lab.seeding import select_device
from grokspec.lab.tasks import make_dataset, split_indices
from grokspec.monitor import DEFAULT_EVERY, EntropyMonitor


@dataclass(frozen=True)
class MonitorOverhead:
    device: str
    every: int
    rounds: int
    #: Median seconds of `every` training steps without / with the monitor.
    block_without: float
    block_with: float
    #: block_with / block_without − 1 (medians).
    overhead: float
    #: Median seconds of one monitor evaluation (forward pass on the probe + entropy).
    evaluation: float
    #: evaluation / block_without: the monitor's share at this interval.
    evaluation_share: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_monitor_overhead(rounds: int = 8, every: int = DEFAULT_EVERY, device_name: str = "auto") -> MonitorOverhead:
    config = TrainConfig(device=device_name)
    device = select_device(config.device)
    dataset = make_dataset(config.task, config.p)
    train_rows, _ = split_indices(len(dataset), config.train_fraction, config.seed)
    x = dataset.inputs[train_rows].unsqueeze(0).to(device)  # (1 seed, Ntrain, 2)
    y = dataset.labels[train_rows].unsqueeze(0).to(device)  # (1, Ntrain)
    model = build_model(config, dataset.vocab_size, [config.seed]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # grokspec's readout is a parameter pair: the representation comes from a function.
    monitor = EntropyMonitor(model, probe=x[:, : config.probe_size], layer=lambda m, b: m.representation(b)[0], every=every)
    generator = torch.Generator().manual_seed(0)
    n_train = x.shape[1]

    def block(start: int, watched: bool) -> float:
        _sync(device)
        began = time.perf_counter()
        for step in range(start + 1, start + every + 1):
            rows = torch.randperm(n_train, generator=generator)[: config.batch_size].to(device)
            logits, _ = model(x[:, rows])  # (1, B, V)
            loss = F.cross_entropy(logits.flatten(0, 1), y[:, rows].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if watched:
                monitor.step(step)
        _sync(device)
        return time.perf_counter() - began

    model.train()
    step = 0
    block(step, True)  # warm-up: allocator, kernels, the engine's threads
    step += every
    times: dict[bool, list[float]] = {False: [], True: []}
    for index in range(rounds):
        for watched in (False, True) if index % 2 == 0 else (True, False):
            times[watched].append(block(step, watched))
            step += every
    evaluations = [r.seconds for r in monitor.records[1:]]  # after the warm-up's
    without, with_monitor = statistics.median(times[False]), statistics.median(times[True])
    evaluation = statistics.median(evaluations)
    return MonitorOverhead(
        device=str(device),
        every=every,
        rounds=rounds,
        block_without=without,
        block_with=with_monitor,
        overhead=with_monitor / without - 1,
        evaluation=evaluation,
        evaluation_share=evaluation / without,
    )


def test_monitor_overhead(benchmark):
    result = benchmark.pedantic(run_monitor_overhead, kwargs={"rounds": 6}, rounds=1)
    benchmark.extra_info.update(result.__dict__)
    assert result.evaluation_share <= 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY)
    parser.add_argument("--device", default="auto")
    options = parser.parse_args()
    r = run_monitor_overhead(options.rounds, options.every, options.device)
    print(f"device {r.device}, default grokking model, every {r.every} steps, {r.rounds} rounds (ABBA)")
    print(f"  {r.every} steps without the monitor: {r.block_without:.3f} s (median)")
    print(f"  {r.every} steps with the monitor:    {r.block_with:.3f} s (median)  overhead {r.overhead:+.2%}")
    print(f"  one evaluation: {r.evaluation * 1e3:.1f} ms = {r.evaluation_share:.2%} of the {r.every} steps it watches")


if __name__ == "__main__":
    main()
