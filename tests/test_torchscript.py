"""TorchScript archives (``torch.jit.save`` of a scripted or traced module) are
read as checkpoints: the module's parameters and buffers, named as in its
state dict, without torch.jit and without running the archive's code."""

from __future__ import annotations

import pytest
import torch

from grokspec.scan.formats import matrix_shape
from grokspec.scan.scan import scan
from reference import reference_entropy

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # jit is deprecated, its files are not


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.Linear(16, 48)
        self.conv = torch.nn.Conv1d(4, 8, 3)
        self.norm = torch.nn.LayerNorm(48)

    def forward(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        return self.norm(self.attn(x)).sum() + self.conv(signal).sum()


def _save(module: torch.nn.Module, path, how: str) -> dict[str, torch.Tensor]:
    inputs = (torch.randn(2, 16), torch.randn(1, 4, 10))
    compiled = torch.jit.script(module) if how == "script" else torch.jit.trace(module, inputs)
    torch.jit.save(compiled, str(path))
    return {name: tensor.detach() for name, tensor in module.state_dict().items()}


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_archives_scan_like_their_state_dicts(tmp_path, how):
    states = {}
    for step in (10, 20):
        torch.manual_seed(step)
        states[step] = _save(_Block(), tmp_path / f"step_{step}.pt", how)
    result = scan(tmp_path, cache_path=None)
    assert result.failed_checkpoints == 0, result.warnings
    table = result.table
    for step, state in states.items():
        rows = table[(table["metric"] == "entropy") & (table["step"] == step) & (table["tensor"] != "")]
        got = dict(zip(rows["tensor"], rows["value"]))
        expected = {
            name: reference_entropy(t.reshape(shape).double().numpy())
            for name, t in state.items()
            if (shape := matrix_shape(tuple(t.shape))) is not None
        }
        assert set(got) == set(expected) == {"attn.weight", "conv.weight"}
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-6), name
