"""The grokking models, batched over seeds.

Every parameter has a leading *seed* axis of size S, so one module holds S
independent models; their losses are summed, so their gradients stay
independent, and AdamW (elementwise, weight decay included) then trains S
independent runs in one process — the way several seeds share one GPU.
With S = 1 this is one ordinary model.

- ``transformer``: the paper authors' setup — learned token and position
  embeddings for the two input tokens, ``n_layers`` post-LayerNorm encoder
  layers with exactly the arithmetic of ``nn.TransformerEncoderLayer``
  (dropout 0), then ``z = LayerNorm(h[:, -1])`` and ``logits = Linear(z)``.
- ``mlp``: the control — embeddings of a and b concatenated, hidden layers,
  a projection to the representation width, ``z = LayerNorm(...)``, readout.

``z`` (the readout's input) is the representation whose spectral entropy is
the paper's order parameter. Parameters are initialized as PyTorch
initializes the corresponding layers, each seed from its own generator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from grokspec.lab.config import ACTIVATION_NAMES, TrainConfig
from grokspec.lab.seeding import INIT_STREAM, generators

__all__ = ["SeedBatchedModel", "GrokTransformer", "GrokMLP", "ACTIVATIONS", "build_model"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES, "config and models must agree on the activations"


def _uniform(shape: Sequence[int], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * bound


def _linear_init(out_features: int, in_features: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's default: kaiming_uniform(a=√5) weight and U(±1/√fan_in) bias."""
    bound = 1 / math.sqrt(in_features)
    return _uniform((out_features, in_features), bound, generator), _uniform((out_features,), bound, generator)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last axis with per-seed affine (weight, bias: (S, d))."""
    shape = (weight.shape[0],) + (1,) * (x.dim() - 2) + (weight.shape[1],)
    return F.layer_norm(x, x.shape[-1:]) * weight.view(shape) + bias.view(shape)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x: (S, ..., in), weight: (S, out, in), bias: (S, out) -> (S, ..., out)."""
    s = x.shape[0]
    flat = x.reshape(s, -1, x.shape[-1])  # (S, M, in)
    out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))  # (S, M, out)
    return out.reshape(*x.shape[:-1], weight.shape[1])


class SeedBatchedModel(nn.Module):
    """S models in one: parameters are stored stacked, named per model."""

    def __init__(self, seeds: Sequence[int]):
        super().__init__()
        if not seeds:
            raise ValueError("at least one seed is needed")
        self.seeds = list(seeds)
        self._names: list[str] = []

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def _add(self, name: str, per_seed: Sequence[torch.Tensor]) -> None:
        """Registers a stacked parameter; `name` is its name in one model's state dict."""
        self.register_parameter(name.replace(".", "__"), nn.Parameter(torch.stack(list(per_seed))))
        self._names.append(name)

    def _param(self, name: str) -> torch.Tensor:
        parameter: torch.Tensor = getattr(self, name.replace(".", "__"))
        return parameter

    def parameter_names(self) -> list[str]:
        return list(self._names)

    def seed_state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """One model's weights (float32, contiguous, on the CPU)."""
        return {name: self._param(name)[index].detach().to("cpu", torch.float32).contiguous() for name in self._names}

    def load_seed_state_dict(self, index: int, state: dict[str, torch.Tensor]) -> None:
        """Loads one model's weights; the names and shapes must match exactly."""
        missing = [n for n in self._names if n not in state]
        extra = [n for n in state if n not in self._names]
        if missing or extra:
            raise ValueError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
        with torch.no_grad():
            for name in self._names:
                target = self._param(name)
                value = state[name]
                if tuple(value.shape) != tuple(target.shape[1:]):
                    raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} != model shape {tuple(target.shape[1:])}")
                target[index].copy_(value.to(target.device, target.dtype))

    def parameter_norms(self) -> torch.Tensor:
        """The L2 norm of all of each model's parameters: (S,)."""
        squares = sum(p.detach().pow(2).reshape(p.shape[0], -1).sum(1) for p in self.parameters())
        assert isinstance(squares, torch.Tensor)
        return squares.sqrt()

    def scale_parameters(self, factors: torch.Tensor) -> None:
        """Multiplies every parameter of model s by factors[s]."""
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(factors.view(-1, *([1] * (p.dim() - 1))).to(p.dtype))

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, T) token ids -> (S, B, T, d) embeddings of each model."""
        table = self._param("token_embedding.weight")  # (S, V, d)
        seeds = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
        return table[seeds, x]

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        return _linear(z, self._param("readout.weight"), self._param("readout.bias"))

    def forward(
        self, x: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (S, B, 2) -> (logits (S, B, V), z (S, B, d)); `mix` may replace z
        before the readout (the paper's intervention)."""
        z = self.representation(x)
        return self.readout(mix(z) if mix is not None else z), z


class GrokTransformer(SeedBatchedModel):
    def __init__(
        self,
        vocab_size: int,
        seeds: Sequence[int],
        generators: Sequence[torch.Generator],
        *,
        n_tokens: int = 2,
        d_model: int = 128,
        n_heads: int = 4,
        d_ff: int = 512,
        n_layers: int = 1,
        activation: str = "gelu",
    ):
        super().__init__(seeds)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.activation = ACTIVATIONS[activation]
        gens = list(generators)
        self._add("token_embedding.weight", [torch.randn(vocab_size, d_model, generator=g) for g in gens])
        self._add("position_embedding.weight", [torch.randn(n_tokens, d_model, generator=g) for g in gens])
        for layer in range(n_layers):
            prefix = f"layers.{layer}."
            # nn.MultiheadAttention: xavier_uniform in_proj, zero biases, Linear-initialized out_proj weight.
            xavier = math.sqrt(6 / (d_model + 3 * d_model))
            self._add(prefix + "self_attn.in_proj_weight", [_uniform((3 * d_model, d_model), xavier, g) for g in gens])
            self._add(prefix + "self_attn.in_proj_bias", [torch.zeros(3 * d_model) for _ in gens])
            self._add(prefix + "self_attn.out_proj.weight", [_linear_init(d_model, d_model, g)[0] for g in gens])
            self._add(prefix + "self_attn.out_proj.bias", [torch.zeros(d_model) for _ in gens])
            first = [_linear_init(d_ff, d_model, g) for g in gens]
            self._add(prefix + "linear1.weight", [w for w, _ in first])
            self._add(prefix + "linear1.bias", [b for _, b in first])
            second = [_linear_init(d_model, d_ff, g) for g in gens]
            self._add(prefix + "linear2.weight", [w for w, _ in second])
            self._add(prefix + "linear2.bias", [b for _, b in second])
            for norm in ("norm1", "norm2"):
                self._add(prefix + norm + ".weight", [torch.ones(d_model) for _ in gens])
                self._add(prefix + norm + ".bias", [torch.zeros(d_model) for _ in gens])
        self._add("final_norm.weight", [torch.ones(d_model) for _ in gens])
        self._add("final_norm.bias", [torch.zeros(d_model) for _ in gens])
        readout = [_linear_init(vocab_size, d_model, g) for g in gens]
        self._add("readout.weight", [w for w, _ in readout])
        self._add("readout.bias", [b for _, b in readout])

    def _attention(self, h: torch.Tensor, prefix: str) -> torch.Tensor:
        s, b, t, d = h.shape
        heads, dh = self.n_heads, d // self.n_heads
        qkv = _linear(h, self._param(prefix + "in_proj_weight"), self._param(prefix + "in_proj_bias"))
        q, k, v = qkv.view(s, b, t, 3, heads, dh).unbind(dim=3)  # each (S, B, T, H, dh)
        scores = torch.einsum("sbthe,sbuhe->sbhtu", q, k) / math.sqrt(dh)
        attended = torch.einsum("sbhtu,sbuhe->sbthe", scores.softmax(dim=-1), v).reshape(s, b, t, d)
        return _linear(attended, self._param(prefix + "out_proj.weight"), self._param(prefix + "out_proj.bias"))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, T) -> z: (S, B, d), the final position after the last LayerNorm."""
        positions = self._param("position_embedding.weight")[:, : x.shape[-1]]  # (S, T, d)
        h = self.embed_tokens(x) + positions.unsqueeze(1)  # (S, B, T, d)
        for layer in range(self.n_layers):
            p = f"layers.{layer}."
            # Post-LayerNorm, as nn.TransformerEncoderLayer(norm_first=False).
            h = _layer_norm(
                h + self._attention(h, p + "self_attn."), self._param(p + "norm1.weight"), self._param(p + "norm1.bias")
            )
            hidden = self.activation(_linear(h, self._param(p + "linear1.weight"), self._param(p + "linear1.bias")))
            ff = _linear(hidden, self._param(p + "linear2.weight"), self._param(p + "linear2.bias"))
            h = _layer_norm(h + ff, self._param(p + "norm2.weight"), self._param(p + "norm2.bias"))
        return _layer_norm(h[:, :, -1], self._param("final_norm.weight"), self._param("final_norm.bias"))


class GrokMLP(SeedBatchedModel):
    def __init__(
        self,
        vocab_size: int,
        seeds: Sequence[int],
        generators: Sequence[torch.Generator],
        *,
        embed_dim: int = 128,
        hidden: Sequence[int] = (512,),
        d_repr: int = 128,
        activation: str = "relu",
    ):
        super().__init__(seeds)
        self.activation = ACTIVATIONS[activation]
        gens = list(generators)
        self._add("token_embedding.weight", [torch.randn(vocab_size, embed_dim, generator=g) for g in gens])
        widths = [2 * embed_dim, *hidden, d_repr]
        self.n_hidden = len(widths) - 1
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            layer = [_linear_init(fan_out, fan_in, g) for g in gens]
            self._add(f"hidden.{i}.weight", [w for w, _ in layer])
            self._add(f"hidden.{i}.bias", [b for _, b in layer])
        self._add("final_norm.weight", [torch.ones(d_repr) for _ in gens])
        self._add("final_norm.bias", [torch.zeros(d_repr) for _ in gens])
        readout = [_linear_init(vocab_size, d_repr, g) for g in gens]
        self._add("readout.weight", [w for w, _ in readout])
        self._add("readout.bias", [b for _, b in readout])

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, 2) -> z: (S, B, d_repr) = LayerNorm(act(... act(W [e_a; e_b])))."""
        e = self.embed_tokens(x)  # (S, B, 2, embed)
        h = e.reshape(*e.shape[:2], -1)  # (S, B, 2·embed)
        for i in range(self.n_hidden):
            h = self.activation(_linear(h, self._param(f"hidden.{i}.weight"), self._param(f"hidden.{i}.bias")))
        return _layer_norm(h, self._param("final_norm.weight"), self._param("final_norm.bias"))


def build_model(config: TrainConfig, vocab_size: int, seeds: Sequence[int]) -> SeedBatchedModel:
    """The model of `config` for each seed, initialized from the seed."""
    init = generators(list(seeds), INIT_STREAM)
    if config.model == "transformer":
        return GrokTransformer(
            vocab_size,
            seeds,
            init,
            d_model=config.d_model,
            n_heads=config.n_heads,
            d_ff=config.d_ff,
            n_layers=config.n_layers,
            activation=config.resolved_activation,
        )
    return GrokMLP(
        vocab_size,
        seeds,
        init,
        embed_dim=config.d_model,
        hidden=config.mlp_hidden,
        d_repr=config.d_model,
        activation=config.resolved_activation,
    )
