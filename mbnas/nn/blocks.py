"""The blocks of MobileNet/EfficientNet networks, each defined once.

Every block is built from a resolved :class:`~mbnas.arch.BlockConfig` with the same constructor
contract, and describes its own convolutions (:meth:`conv_shapes`) so the analytical cost model
counts exactly what the module contains. ``BLOCKS`` maps each ArchSpec block type to its class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mbnas.arch import BatchNormSpec, BlockConfig
from mbnas.nn.activations import make_activation

SE_ACTIVATIONS = {"mobilenetv3": ("relu", "hsigmoid"), "efficientnet": ("silu", "sigmoid")}


@dataclass(frozen=True)
class ConvShape:
    """One convolution as the cost model sees it; ``pooled`` convs run on a 1x1 map (SE)."""

    in_ch: int
    out_ch: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    bias: bool = False
    batch_norm: bool = True
    pooled: bool = False


class ConvBNAct(nn.Module):
    """Conv (same padding, no bias) → BatchNorm → activation (none for a linear projection)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, act: str | None = "relu", bn: BatchNormSpec | None = None):
        super().__init__()
        bn = bn or BatchNormSpec()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn.eps, momentum=bn.momentum)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Global pool → reduce → act → expand → gate, multiplied back onto the input."""

    def __init__(self, channels: int, squeezed: int, style: str = "efficientnet"):
        super().__init__()
        act, gate = SE_ACTIVATIONS[style]
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))

    @staticmethod
    def conv_shapes(channels: int, squeezed: int) -> list[ConvShape]:
        return [ConvShape(channels, squeezed, bias=True, batch_norm=False, pooled=True),
                ConvShape(squeezed, channels, bias=True, batch_norm=False, pooled=True)]


class StochasticDepth(nn.Module):
    """Drops the residual branch per sample while training (EfficientNet's "row" mode)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def _se_module(cfg: BlockConfig, channels: int) -> nn.Module:
    return SqueezeExcite(channels, cfg.se_ch, cfg.se_style) if cfg.se_ch else nn.Identity()


def _se_shapes(cfg: BlockConfig, channels: int) -> list[ConvShape]:
    return SqueezeExcite.conv_shapes(channels, cfg.se_ch) if cfg.se_ch else []


class Block(nn.Module):
    """Shared residual wiring: ``body`` is the block's own path, added to the input if allowed."""

    def __init__(self, cfg: BlockConfig, drop_path: float = 0.0):
        super().__init__()
        self.residual = cfg.residual
        self.drop_path = StochasticDepth(drop_path if cfg.residual else 0.0)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + self.drop_path(out) if self.residual else out


class MBConv(Block):
    """Inverted residual: [1x1 expand] → kxk depthwise → [SE] → 1x1 linear projection."""

    def __init__(self, cfg: BlockConfig, bn: BatchNormSpec | None = None, drop_path: float = 0.0):
        super().__init__(cfg, drop_path)
        self.expand = (ConvBNAct(cfg.in_ch, cfg.mid_ch, 1, act=cfg.act, bn=bn) if cfg.expands
                       else nn.Identity())
        self.dw = ConvBNAct(cfg.mid_ch, cfg.mid_ch, cfg.kernel, cfg.stride, groups=cfg.mid_ch,
                            act=cfg.act, bn=bn)
        self.se = _se_module(cfg, cfg.mid_ch)
        self.project = ConvBNAct(cfg.mid_ch, cfg.out_ch, 1, act=None, bn=bn)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.dw(self.expand(x))))

    @staticmethod
    def conv_shapes(cfg: BlockConfig) -> list[ConvShape]:
        expand = [ConvShape(cfg.in_ch, cfg.mid_ch)] if cfg.expands else []
        depthwise = ConvShape(cfg.mid_ch, cfg.mid_ch, cfg.kernel, cfg.stride, groups=cfg.mid_ch)
        return [*expand, depthwise, *_se_shapes(cfg, cfg.mid_ch), ConvShape(cfg.mid_ch, cfg.out_ch)]


class FusedMBConv(Block):
    """EfficientNetV2's fused block: kxk expand → [SE] → 1x1 projection; one kxk conv at t = 1."""

    def __init__(self, cfg: BlockConfig, bn: BatchNormSpec | None = None, drop_path: float = 0.0):
        super().__init__(cfg, drop_path)
        conv_out = cfg.mid_ch if cfg.expands else cfg.out_ch
        self.conv = ConvBNAct(cfg.in_ch, conv_out, cfg.kernel, cfg.stride, act=cfg.act, bn=bn)
        self.se = _se_module(cfg, conv_out)
        self.project = (ConvBNAct(cfg.mid_ch, cfg.out_ch, 1, act=None, bn=bn) if cfg.expands
                        else nn.Identity())

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.conv(x)))

    @staticmethod
    def conv_shapes(cfg: BlockConfig) -> list[ConvShape]:
        conv_out = cfg.mid_ch if cfg.expands else cfg.out_ch
        project = [ConvShape(cfg.mid_ch, cfg.out_ch)] if cfg.expands else []
        return [ConvShape(cfg.in_ch, conv_out, cfg.kernel, cfg.stride),
                *_se_shapes(cfg, conv_out), *project]


class DepthwiseSeparable(Block):
    """MobileNetV1's block: kxk depthwise → [SE] → 1x1 pointwise, both activated."""

    def __init__(self, cfg: BlockConfig, bn: BatchNormSpec | None = None, drop_path: float = 0.0):
        super().__init__(cfg, drop_path)
        self.dw = ConvBNAct(cfg.in_ch, cfg.in_ch, cfg.kernel, cfg.stride, groups=cfg.in_ch,
                            act=cfg.act, bn=bn)
        self.se = _se_module(cfg, cfg.in_ch)
        self.pw = ConvBNAct(cfg.in_ch, cfg.out_ch, 1, act=cfg.act, bn=bn)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))

    @staticmethod
    def conv_shapes(cfg: BlockConfig) -> list[ConvShape]:
        return [ConvShape(cfg.in_ch, cfg.in_ch, cfg.kernel, cfg.stride, groups=cfg.in_ch),
                *_se_shapes(cfg, cfg.in_ch), ConvShape(cfg.in_ch, cfg.out_ch)]


class PlainConv(Block):
    """A plain kxk ConvBNAct (with optional SE), never residual."""

    def __init__(self, cfg: BlockConfig, bn: BatchNormSpec | None = None, drop_path: float = 0.0):
        super().__init__(cfg, drop_path)
        self.conv = ConvBNAct(cfg.in_ch, cfg.out_ch, cfg.kernel, cfg.stride, act=cfg.act, bn=bn)
        self.se = _se_module(cfg, cfg.out_ch)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))

    @staticmethod
    def conv_shapes(cfg: BlockConfig) -> list[ConvShape]:
        return [ConvShape(cfg.in_ch, cfg.out_ch, cfg.kernel, cfg.stride),
                *_se_shapes(cfg, cfg.out_ch)]


class Skip(Block):
    """A layer that does nothing: the identity, or a linear 1x1 conv + BN where shape changes.

    The projection (NAS-Bench-Macro's and ProxylessNAS's rule) lets ``skip`` be a candidate op
    at any position, including the first layer of a stage that strides or widens.
    """

    def __init__(self, cfg: BlockConfig, bn: BatchNormSpec | None = None, drop_path: float = 0.0):
        super().__init__(cfg, drop_path)
        self.project = (ConvBNAct(cfg.in_ch, cfg.out_ch, 1, cfg.stride, act=None, bn=bn)
                        if self.projects(cfg) else nn.Identity())

    @staticmethod
    def projects(cfg: BlockConfig) -> bool:
        """Whether the layer changes shape, and so needs a projection instead of the identity."""
        return cfg.stride != 1 or cfg.in_ch != cfg.out_ch

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)

    @staticmethod
    def conv_shapes(cfg: BlockConfig) -> list[ConvShape]:
        return [ConvShape(cfg.in_ch, cfg.out_ch, 1, cfg.stride)] if Skip.projects(cfg) else []


BLOCKS: dict[str, type[Block]] = {
    "mbconv": MBConv,
    "fused": FusedMBConv,
    "ds": DepthwiseSeparable,
    "conv": PlainConv,
    "skip": Skip,
}
