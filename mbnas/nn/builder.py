"""Build a PyTorch network from an ArchSpec: stem, stages of blocks, head."""

from __future__ import annotations

import torch
from torch import nn

from mbnas.arch import ArchSpec, HeadSpec
from mbnas.architectures import load_arch
from mbnas.nn.activations import make_activation
from mbnas.nn.blocks import BLOCKS, ConvBNAct


class Head(nn.Module):
    """1x1 conv → global pool → [Linear → act, MobileNetV3] → dropout → classifier."""

    def __init__(self, in_ch: int, head: HeadSpec, num_classes: int, dropout: float, bn=None):
        super().__init__()
        self.conv = (ConvBNAct(in_ch, head.channels, 1, act=head.act, bn=bn) if head.channels
                     else nn.Identity())
        self.pool = nn.AdaptiveAvgPool2d(1)
        features = head.channels or in_ch
        if head.hidden:
            self.hidden = nn.Sequential(nn.Linear(features, head.hidden),
                                        make_activation(head.act))
            features = head.hidden
        else:
            self.hidden = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.classifier(self.dropout(self.hidden(x)))


class MobileNet(nn.Module):
    """A MobileNet/EfficientNet-style classifier built from an ArchSpec (kept as ``.arch``)."""

    def __init__(self, arch: ArchSpec):
        super().__init__()
        self.arch = arch
        bn = arch.bn
        self.stem = ConvBNAct(arch.in_channels, arch.stem.out, arch.stem.kernel, arch.stem.stride,
                              act=arch.stem.act, bn=bn)
        stages, index, total = [], 0, arch.total_blocks
        for stage_blocks in arch.stage_blocks():
            blocks = []
            for cfg in stage_blocks:
                # EfficientNet's linear stochastic-depth schedule over the block index.
                rate = arch.drop_path * index / total
                blocks.append(BLOCKS[cfg.type](cfg, bn=bn, drop_path=rate))
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = Head(arch.last_stage_channels, arch.head, arch.num_classes, arch.dropout, bn)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def init_weights(model: nn.Module) -> None:
    """torchvision's initialisation for these networks: He fan-out convs, unit BN, small Linear."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


def build(arch: ArchSpec | str) -> MobileNet:
    """The network an ArchSpec (or built-in name, or YAML path) describes, freshly initialised."""
    return MobileNet(load_arch(arch))
