"""Where the representation is read, and how it becomes an N × d matrix.

The site is, by default, the input of the model's readout (unembedding):
the last module named ``lm_head``, ``unembed``, ``readout``, ``classifier``
or ``score``, else the last ``nn.Linear`` whose ``out_features`` is the
vocabulary or the number of classes of ``model.config`` (or, without a
config, the last ``nn.Linear``). Any module can be named instead (dotted
name or the module itself; its input or its output), or a function
``layer(model, batch) -> z`` given for models whose readout is not a module.

A hook exists only during the probe pass: it is registered, records the
tensor, ends the forward pass at once (the readout and whatever follows are
not needed) and is removed in a ``finally`` block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from grokspec.monitor.errors import MonitorError
from grokspec.monitor.probe import Batch

__all__ = ["READOUT_NAMES", "Capture", "Layer", "Position", "Site", "find_readout", "representation", "resolve_site"]

#: Module names that mark a readout, in the order models use them.
READOUT_NAMES = ("lm_head", "unembed", "readout", "classifier", "score")
Position = Literal["last", "mean", "all"]
Capture = Literal["input", "output"]
LayerFunction = Callable[[nn.Module, Batch], torch.Tensor]
Layer = None | str | nn.Module | LayerFunction


class _Captured(Exception):
    """Ends the probe's forward pass once the representation is in hand."""


@dataclass(frozen=True)
class Site:
    #: How the site is named in messages: a module's dotted name or the function's name.
    name: str
    module: nn.Module | None
    function: LayerFunction | None
    capture: Capture


def _class_counts(model: nn.Module) -> set[int]:
    config = getattr(model, "config", None)
    counts = {getattr(config, key, None) for key in ("vocab_size", "num_labels")}
    return {c for c in counts if isinstance(c, int) and not isinstance(c, bool)}


def find_readout(model: nn.Module) -> tuple[str, nn.Module]:
    """The readout module of `model` (see the module notes), or a MonitorError."""
    named = [(name, module) for name, module in model.named_modules() if name]
    by_name = [(n, m) for n, m in named if n.rsplit(".", 1)[-1] in READOUT_NAMES]
    if by_name:
        return by_name[-1]
    counts = _class_counts(model)
    linears = [(n, m) for n, m in named if isinstance(m, nn.Linear) and (not counts or m.out_features in counts)]
    if linears:
        return linears[-1]
    raise MonitorError(
        f"cannot find the readout of {type(model).__name__} (no module named {', '.join(READOUT_NAMES)}, no matching "
        "nn.Linear); name the layer whose input is the representation (layer='head.proj') or pass layer=callable "
        "(a function model, batch -> z)"
    )


def resolve_site(model: nn.Module, layer: Layer, capture: Capture) -> Site:
    if capture not in ("input", "output"):
        raise MonitorError(f"capture must be 'input' or 'output', got {capture!r}")
    if layer is None:
        name, module = find_readout(model)
        return Site(name, module, None, capture)
    if isinstance(layer, str):
        try:
            return Site(layer, model.get_submodule(layer), None, capture)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            hint = ", ".join(names[-8:])
            raise MonitorError(f"{type(model).__name__} has no module {layer!r} (its last modules: {hint})") from None
    if isinstance(layer, nn.Module):
        found = next((n for n, m in model.named_modules() if m is layer), None)
        if found is None:
            raise MonitorError(f"the layer {type(layer).__name__} is not a module of {type(model).__name__}")
        return Site(found or type(model).__name__, layer, None, capture)
    if callable(layer):
        return Site(getattr(layer, "__name__", "layer"), None, layer, capture)
    raise MonitorError(f"layer must be a module name, an nn.Module or a function (model, batch) -> z; got {type(layer).__name__}")


def _call(model: nn.Module, batch: Batch) -> object:
    return model(**batch) if isinstance(batch, dict) else model(batch)


def _first_tensor(values: Any) -> torch.Tensor | None:
    if isinstance(values, torch.Tensor):
        return values
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, (tuple, list)):
        return next((t for v in values if (t := _first_tensor(v)) is not None), None)
    return None


def _hooked(model: nn.Module, site: Site, batch: Batch) -> torch.Tensor:
    assert site.module is not None
    box: list[torch.Tensor | None] = []

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        box.append(_first_tensor(args) if args else _first_tensor(kwargs))
        raise _Captured

    def after(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        box.append(_first_tensor(output))
        raise _Captured

    if site.capture == "input":
        handle = site.module.register_forward_pre_hook(before, with_kwargs=True)
    else:
        handle = site.module.register_forward_hook(after, with_kwargs=True)
    try:
        _call(model, batch)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not box or box[0] is None:
        raise MonitorError(f"the probe's forward pass did not pass a tensor through {site.name!r}; name another layer")
    return box[0]


def _attention_mask(batch: Batch) -> torch.Tensor | None:
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    return mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def _positions(z: torch.Tensor, position: Position, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, d) as is; (B, T, d) -> (B, d) ("last", "mean") or (B·T, d) ("all"),
    counting only the positions an attention mask keeps (left or right padding)."""
    if z.dim() < 2:
        raise MonitorError(f"the representation must have a batch and a feature axis, got shape {tuple(z.shape)}")
    if z.dim() == 2:
        return z
    z = z.reshape(z.shape[0], -1, z.shape[-1])  # (B, T, d)
    keep = mask.bool() if mask is not None and tuple(mask.shape) == tuple(z.shape[:2]) else None
    if position == "last":
        if keep is None:
            return z[:, -1]
        index = (keep * torch.arange(z.shape[1], device=z.device)).argmax(dim=1)  # the last kept position
        return z[torch.arange(z.shape[0], device=z.device), index]
    if position == "mean":
        if keep is None:
            return z.mean(dim=1)
        weights = keep.to(z.dtype).unsqueeze(-1)
        return (z * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)
    if position == "all":
        return z.reshape(-1, z.shape[-1]) if keep is None else z[keep]
    raise MonitorError(f"position must be 'last', 'mean' or 'all', got {position!r}")


def representation(model: nn.Module, site: Site, batch: Batch, position: Position) -> torch.Tensor:
    """z of one probe batch: (N, d), detached, on the model's device."""
    z = site.function(model, batch) if site.function is not None else _hooked(model, site, batch)
    if not isinstance(z, torch.Tensor):
        raise MonitorError(f"the layer function {site.name} returned {type(z).__name__}, not a tensor")
    return _positions(z.detach(), position, _attention_mask(batch))
