"""Writes a torch.distributed checkpoint the way sharded training does: two
ranks (gloo, CPU) each save their shards of DTensors with
``torch.distributed.checkpoint.save``; run as a script by tests/test_dcp.py."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

WORLD_SIZE = 2


def full_tensors(step: int) -> dict[str, torch.Tensor]:
    """The whole tensors every rank starts from (a float32 matrix sharded by rows,
    a bf16 one by columns, a 3-D one by its first dimension, a replicated bias)."""
    g = torch.Generator().manual_seed(step)
    return {
        "layers.0.attn.weight": torch.randn(48, 40, generator=g),
        "layers.0.mlp.weight": torch.randn(30, 64, generator=g).to(torch.bfloat16),
        "layers.0.heads": torch.randn(4, 12, 10, generator=g),
        "layers.0.mlp.bias": torch.randn(30, generator=g),
    }


def _save(rank: int, folder: str, step: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    placements = {"layers.0.attn.weight": Shard(0), "layers.0.mlp.weight": Shard(1), "layers.0.heads": Shard(0)}
    model = {name: distribute_tensor(t, mesh, [placements.get(name, Replicate())]) for name, t in full_tensors(step).items()}
    momentum = {name: distribute_tensor(torch.ones_like(t), mesh, [Replicate()]) for name, t in full_tensors(step).items()}
    dcp.save({"model": model, "optimizer": {"state": momentum}, "step": step}, checkpoint_id=folder)
    dist.destroy_process_group()


if __name__ == "__main__":
    folder, step, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mp.spawn(_save, args=(folder, step, port), nprocs=WORLD_SIZE)
