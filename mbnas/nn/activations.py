"""Activation functions by name: one table shared by blocks, heads and the supernet."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "hsigmoid": nn.Hardsigmoid,
}


def make_activation(name: str | None) -> nn.Module:
    """A fresh activation module for ``name`` (``None`` gives identity, the linear bottleneck)."""
    if name is None:
        return nn.Identity()
    try:
        cls = _ACTIVATIONS[name]
    except KeyError:
        choices = ", ".join(_ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; choose one of {choices}") from None
    return cls() if cls is nn.Sigmoid else cls(inplace=True)
