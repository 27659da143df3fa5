"""The MobileNet/EfficientNet width, depth and resolution scaling rules."""

from __future__ import annotations

import math
from dataclasses import replace

from mbnas.arch import ArchSpec
from mbnas.channels import make_divisible


def scale_width(channels: int, multiplier: float) -> int:
    """Channels times the width multiplier α, made divisible by 8 (identity at α = 1)."""
    if multiplier == 1.0:
        return channels
    return make_divisible(channels * multiplier)


def scale_depth(repeats: int, multiplier: float) -> int:
    """Repeats times the depth multiplier, rounded up as EfficientNet does."""
    return int(math.ceil(repeats * multiplier))


def scale_resolution(resolution: int, multiplier: float) -> int:
    """Resolution times the multiplier ρ, rounded to the nearest integer."""
    return int(round(resolution * multiplier))


def _resize(values, depth: int):
    """Per-block lists follow a new depth: truncated, or extended by repeating the last value."""
    if not isinstance(values, tuple):
        return values
    return tuple(values[min(i, len(values) - 1)] for i in range(depth))


def scale_arch(arch: ArchSpec, width: float = 1.0, depth: float = 1.0,
               resolution: int | None = None) -> ArchSpec:
    """Apply width α (all channels, made divisible by 8), depth and resolution scaling."""
    stages = []
    for stage in arch.stages:
        repeats = scale_depth(stage.depth, depth)
        mid = stage.mid
        if mid is not None:
            mid = tuple(scale_width(m, width) for m in mid) if isinstance(mid, tuple) else \
                scale_width(mid, width)
        changes = {name: _resize(getattr(stage, name), repeats)
                   for name in ("block", "kernel", "expand", "se", "act")}
        stages.append(replace(stage, out=scale_width(stage.out, width), depth=repeats,
                              mid=_resize(mid, repeats), **changes))
    head = arch.head
    return arch.replace(
        stem=replace(arch.stem, out=scale_width(arch.stem.out, width)),
        stages=tuple(stages),
        head=replace(head, channels=head.channels and scale_width(head.channels, width),
                     hidden=head.hidden and scale_width(head.hidden, width)),
        resolution=resolution or arch.resolution,
    )
