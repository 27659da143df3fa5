"""ArchSpec: one concrete network, readable like the stage tables of the MobileNet papers.

The YAML file format is parsed, validated and written here and nowhere else. A stage row gives
a block type, kernel, expansion ratio (``expand``) or absolute expanded width (``mid``), output
channels, depth, the stride of its first block, SE ratio and activation. Any of ``block``,
``kernel``, ``expand``, ``mid``, ``se`` and ``act`` may instead be a list with one value per block.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbnas.channels import make_divisible
from mbnas.errors import ConfigError
from mbnas.validation import Reader, check_choice, check_float, check_int, read_yaml
from mbnas.yaml_style import Row, dump_yaml, row

BLOCK_TYPES = ("mbconv", "fused", "ds", "conv", "skip")
ACTIVATIONS = ("relu", "relu6", "hswish", "silu")
SE_STYLES = ("mobilenetv3", "efficientnet")
PER_BLOCK_FIELDS = ("block", "kernel", "expand", "mid", "se", "act")
EXPANDING_BLOCKS = ("mbconv", "fused")
# Blocks whose output is never added to their input: a plain conv, MobileNetV1's
# depthwise-separable block (as in the paper and timm's `dsa`), and a skip layer, which is itself
# the identity (or, where the shape changes, a linear 1x1 projection).
NON_RESIDUAL_BLOCKS = ("conv", "ds", "skip")


@dataclass(frozen=True)
class BlockConfig:
    """One block with every derived width resolved: what the builder and cost model consume."""

    type: str
    in_ch: int
    out_ch: int
    mid_ch: int
    kernel: int
    stride: int
    se_ch: int
    se_style: str
    act: str

    @property
    def residual(self) -> bool:
        return (self.type not in NON_RESIDUAL_BLOCKS and self.stride == 1
                and self.in_ch == self.out_ch)

    @property
    def expands(self) -> bool:
        """Whether the block has its own expansion conv (skipped when mid equals the input)."""
        return self.type in EXPANDING_BLOCKS and self.mid_ch != self.in_ch


@dataclass(frozen=True)
class StemSpec:
    out: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"


@dataclass(frozen=True)
class HeadSpec:
    """1x1 conv to ``channels`` (none if unset, as in MobileNetV1), pooling, an optional
    MobileNetV3 Linear of width ``hidden``."""

    channels: int | None = None
    act: str = "relu"
    hidden: int | None = None


@dataclass(frozen=True)
class BatchNormSpec:
    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True)
class StageSpec:
    out: int
    depth: int = 1
    stride: int = 1
    block: str | tuple[str, ...] = "mbconv"
    kernel: int | tuple[int, ...] = 3
    expand: float | tuple[float, ...] | None = None
    mid: int | tuple[int, ...] | None = None
    se: float | tuple[float, ...] = 0.0
    act: str | tuple[str, ...] = "relu"

    def value(self, name: str, index: int) -> Any:
        """The value of a per-block field for block ``index`` of this stage."""
        value = getattr(self, name)
        return value[index] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ArchSpec:
    """A complete network: resolution, stem, stages of blocks, head, regularisation."""

    resolution: int
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    name: str = "custom"
    num_classes: int = 1000
    in_channels: int = 3
    se_style: str = "efficientnet"
    bn: BatchNormSpec = field(default_factory=BatchNormSpec)
    dropout: float = 0.2
    drop_path: float = 0.0

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)

    def stage_blocks(self) -> list[list[BlockConfig]]:
        """Every block of every stage, with input, expanded and SE widths resolved."""
        in_ch = self.stem.out
        stages = []
        for stage in self.stages:
            blocks = []
            for index in range(stage.depth):
                block = _resolve_block(self, stage, index, in_ch)
                blocks.append(block)
                in_ch = block.out_ch
            stages.append(blocks)
        return stages

    def blocks(self) -> Iterator[BlockConfig]:
        for stage in self.stage_blocks():
            yield from stage

    @property
    def total_blocks(self) -> int:
        return sum(stage.depth for stage in self.stages)

    @property
    def last_stage_channels(self) -> int:
        return self.stages[-1].out if self.stages else self.stem.out

    def to_dict(self) -> dict[str, Any]:
        return _arch_to_dict(self)

    def digest(self) -> str:
        """A short stable identity of the network (its name aside), equal across processes."""
        return hashlib.sha1(self.replace(name="").to_yaml().encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "<arch>") -> ArchSpec:
        return _arch_from_dict(data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ArchSpec:
        return cls.from_dict(read_yaml(path), source=str(path))


def _resolve_block(arch: ArchSpec, stage: StageSpec, index: int, in_ch: int) -> BlockConfig:
    block_type = stage.value("block", index)
    out_ch = stage.out
    stride = stage.stride if index == 0 else 1
    if block_type == "skip":
        # Kernel, expansion, SE and activation mean nothing to a skip layer: fix them, so that two
        # skips compare equal whatever the stage row says for the other blocks.
        return BlockConfig(type="skip", in_ch=in_ch, out_ch=out_ch, mid_ch=in_ch, kernel=1,
                           stride=stride, se_ch=0, se_style=arch.se_style, act="relu")
    mid = stage.value("mid", index)
    expand = stage.value("expand", index)
    if block_type not in EXPANDING_BLOCKS:
        mid_ch = in_ch
    elif mid is not None:
        mid_ch = mid
    elif expand == 1:
        mid_ch = in_ch
    else:
        mid_ch = make_divisible(in_ch * expand)
    return BlockConfig(
        type=block_type,
        in_ch=in_ch,
        out_ch=out_ch,
        mid_ch=mid_ch,
        kernel=stage.value("kernel", index),
        stride=stride,
        se_ch=_se_channels(arch.se_style, stage.value("se", index), block_type, in_ch, mid_ch,
                           out_ch),
        se_style=arch.se_style,
        act=stage.value("act", index),
    )


def _se_channels(style: str, ratio: float, block_type: str, in_ch: int, mid_ch: int,
                 out_ch: int) -> int:
    """SE bottleneck width: MobileNetV3 scales the gated width, EfficientNet the block input."""
    if not ratio:
        return 0
    if style == "efficientnet":
        return max(1, int(in_ch * ratio))
    gated = out_ch if block_type == "fused" and mid_ch == in_ch else mid_ch
    if block_type == "conv":
        gated = out_ch
    return make_divisible(int(gated * ratio))


# ---------------------------------------------------------------- reading and validation


def _per_block(reader: Reader, key: str, check, default: Any = None) -> Any:
    """A stage field given once for the stage or as a list with one value per block."""
    value = reader.data.get(key, default)
    where = f"{reader.where}.{key}"
    if isinstance(value, list):
        if not value:
            raise ConfigError(where, "empty list", "give one value per block, or a single value")
        return tuple(check(item, f"{where}[{i}]") for i, item in enumerate(value))
    return value if value is None else check(value, where)


_STAGE_KEYS = ("block", "kernel", "expand", "mid", "out", "depth", "stride", "se", "act")


def _stage_from_dict(data: Any, where: str) -> StageSpec:
    reader = Reader(data, where, _STAGE_KEYS, required=("out",))
    values = {
        "block": _per_block(reader, "block", lambda v, w: check_choice(v, w, BLOCK_TYPES),
                            "mbconv"),
        "kernel": _per_block(reader, "kernel", lambda v, w: check_int(v, w, odd=True), 3),
        "expand": _per_block(reader, "expand", lambda v, w: check_float(v, w, 0.0, None, False)),
        "mid": _per_block(reader, "mid", check_int),
        "se": _per_block(reader, "se", lambda v, w: check_float(v, w, 0.0, 1.0), 0.0),
        "act": _per_block(reader, "act", lambda v, w: check_choice(v, w, ACTIVATIONS), "relu"),
    }
    lengths = {len(v) for v in values.values() if isinstance(v, tuple)}
    depth = reader.int("depth", default=next(iter(lengths), 1))
    if lengths - {depth}:
        raise ConfigError(f"{where}.depth", f"{depth} does not match the per-block lists of "
                          f"length {', '.join(map(str, sorted(lengths - {depth})))}",
                          "give one list entry per block")
    if values["expand"] is not None and values["mid"] is not None:
        raise ConfigError(where, "both expand and mid are given", "give only one of them")
    blocks = values["block"] if isinstance(values["block"], tuple) else (values["block"],)
    if values["expand"] is None and values["mid"] is None and set(blocks) & set(EXPANDING_BLOCKS):
        raise ConfigError(f"{where}.expand", "missing for an mbconv/fused stage",
                          "give an expansion ratio (expand: 6) or an expanded width (mid: 96)")
    stride = reader.int("stride", default=1)
    return StageSpec(out=reader.int("out"), depth=depth, stride=stride, **values)


_ARCH_KEYS = ("name", "resolution", "num_classes", "in_channels", "se_style", "bn", "stem",
              "stages", "head", "dropout", "drop_path")


@dataclass(frozen=True)
class NetworkReaders:
    """The parts every network file shares (ArchSpec and SearchSpace): checked top level,
    stem and head readers, the BatchNorm settings and the list of stage rows."""

    top: Reader
    stem: Reader
    head: Reader
    bn: BatchNormSpec
    stages: list


def network_readers(data: Any, source: str, keys: Sequence[str]) -> NetworkReaders:
    """Check a network file's top-level keys and open readers on its parts."""
    top = Reader(data, source, keys, required=("resolution", "stem", "stages", "head"))
    stem = Reader(data["stem"], f"{source}: stem", ("out", "kernel", "stride", "act"), ("out",))
    head = Reader(data["head"], f"{source}: head", ("channels", "act", "hidden"))
    bn = Reader(data.get("bn", {}), f"{source}: bn", ("eps", "momentum"))
    stages = data["stages"]
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{source}: stages", "expected a non-empty list of stage rows")
    return NetworkReaders(top, stem, head, BatchNormSpec(
        eps=bn.float("eps", 1e-5, 0.0, 1.0, False), momentum=bn.float("momentum", 0.1, 0.0, 1.0)),
        stages)


def _arch_from_dict(data: Any, source: str) -> ArchSpec:
    parts = network_readers(data, source, _ARCH_KEYS)
    reader, stem, head = parts.top, parts.stem, parts.head
    return ArchSpec(
        name=reader.str("name", "custom"),
        resolution=reader.int("resolution", minimum=8),
        num_classes=reader.int("num_classes", default=1000),
        in_channels=reader.int("in_channels", default=3),
        se_style=reader.choice("se_style", SE_STYLES, default="efficientnet"),
        bn=parts.bn,
        stem=StemSpec(out=stem.int("out"), kernel=stem.int("kernel", 3, odd=True),
                      stride=stem.int("stride", 2), act=stem.choice("act", ACTIVATIONS, "relu")),
        stages=tuple(_stage_from_dict(row, f"{source}: stages[{i}]")
                     for i, row in enumerate(parts.stages)),
        head=HeadSpec(channels=head.int("channels"), act=head.choice("act", ACTIVATIONS, "relu"),
                      hidden=head.int("hidden")),
        dropout=reader.float("dropout", 0.2, 0.0, 1.0),
        drop_path=reader.float("drop_path", 0.0, 0.0, 1.0),
    )


def _arch_to_dict(arch: ArchSpec) -> dict[str, Any]:
    return {
        "name": arch.name,
        "resolution": arch.resolution,
        "num_classes": arch.num_classes,
        "in_channels": arch.in_channels,
        "se_style": arch.se_style,
        "bn": Row(eps=arch.bn.eps, momentum=arch.bn.momentum),
        "stem": row(arch.stem, ("out", "kernel", "stride", "act")),
        "stages": [row(stage, _STAGE_KEYS) for stage in arch.stages],
        "head": row(arch.head, ("channels", "act", "hidden")),
        "dropout": arch.dropout,
        "drop_path": arch.drop_path,
    }
