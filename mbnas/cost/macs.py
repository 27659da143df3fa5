"""Analytical MACs, parameters and activations of an ArchSpec, per stage, without building the
network.

Convention (reproduces the published torchvision figures exactly): MACs sum
``Cout·Hout·Wout·(Cin/groups)·k²`` over every conv (SE convs on their 1x1 maps) and ``in·out``
over every Linear; BN, activations, pooling, residual adds and biases are not counted.
Parameters count every weight and bias plus ``2·C`` per BatchNorm. Activations (as Radosavovic
et al. 2020 count them: EfficientNet-B0 has 6.7M) are the elements of every conv's output,
``Cout·Hout·Wout`` per image, and of every Linear's: what a network writes to memory as it runs,
which its inference time tracks on memory-bound hardware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mbnas.arch import ArchSpec
from mbnas.architectures import load_arch
from mbnas.nn.blocks import BLOCKS, ConvShape


@dataclass(frozen=True)
class StageCost:
    """One row of the breakdown: the stem, a stage, or the head."""

    name: str
    resolution: int
    channels: int
    macs: int
    params: int
    activations: int


@dataclass(frozen=True)
class Cost:
    """MACs, parameters and activations of a whole network, with the per-stage rows they add up
    from."""

    macs: int
    params: int
    activations: int
    stages: tuple[StageCost, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"macs": self.macs, "params": self.params, "activations": self.activations,
                "stages": [vars(stage) for stage in self.stages]}


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    padding = (kernel - 1) // 2
    return (size + 2 * padding - kernel) // stride + 1


def _convs_cost(convs: Iterable[ConvShape], size: int) -> tuple[int, int, int, int]:
    """MACs, params and activations of a sequence of convs applied to a ``size``², and the size
    after them."""
    macs = params = activations = 0
    for conv in convs:
        out_size = 1 if conv.pooled else conv_output_size(size, conv.kernel, conv.stride)
        weights = conv.out_ch * (conv.in_ch // conv.groups) * conv.kernel ** 2
        macs += weights * out_size * out_size
        params += weights + (conv.out_ch if conv.bias else 0) + 2 * conv.out_ch * conv.batch_norm
        activations += conv.out_ch * out_size * out_size
        if not conv.pooled:
            size = out_size
    return macs, params, activations, size


def count(arch: ArchSpec | str, resolution: int | None = None) -> Cost:
    """MACs, parameters and activations of ``arch`` at its deployment resolution (or
    ``resolution``)."""
    arch = load_arch(arch)
    size = resolution or arch.resolution
    rows = []
    stem = ConvShape(arch.in_channels, arch.stem.out, arch.stem.kernel, arch.stem.stride)
    macs, params, activations, size = _convs_cost([stem], size)
    rows.append(StageCost("stem", size, arch.stem.out, macs, params, activations))
    for index, blocks in enumerate(arch.stage_blocks(), start=1):
        convs = [conv for cfg in blocks for conv in BLOCKS[cfg.type].conv_shapes(cfg)]
        macs, params, activations, size = _convs_cost(convs, size)
        rows.append(StageCost(f"stage{index}", size, arch.stages[index - 1].out, macs, params,
                              activations))
    head = arch.head
    features = head.channels or arch.last_stage_channels
    convs = [ConvShape(arch.last_stage_channels, head.channels)] if head.channels else []
    macs, params, activations, _ = _convs_cost(convs, size)
    for width in ([head.hidden] if head.hidden else []) + [arch.num_classes]:
        macs += features * width
        params += features * width + width
        activations += width
        features = width
    rows.append(StageCost("head", 1, arch.num_classes, macs, params, activations))
    return Cost(sum(r.macs for r in rows), sum(r.params for r in rows),
                sum(r.activations for r in rows), tuple(rows))
