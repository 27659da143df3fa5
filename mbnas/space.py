"""SearchSpace: the set of architectures a search may pick from, read from a YAML file.

A space file reads like an ArchSpec whose values may be lists of choices::

    name: default
    resolution: 224              # deployment resolution: MACs and latency are counted here
    num_classes: 1000
    in_channels: 3
    se_style: efficientnet       # as in an ArchSpec
    bn: {eps: 1.0e-05, momentum: 0.1}
    per: block                   # block: kernel/expand/se/act chosen for every block;
                                 # stage: chosen once and shared by the stage's blocks
    stem: {out: [16, 24], kernel: 3, stride: 2, act: hswish}
    stages:                      # stride is fixed; any other key: one value or a list of choices
    - {block: [mbconv, fused], kernel: [3, 5, 7], expand: [1, 3, 4, 6], se: [0, 0.25],
       act: [relu, hswish], depth: [1, 2, 3], out: [24, 32], stride: 2}
    head: {channels: [960, 1280], act: hswish, hidden: 1280}   # hidden may be a list too
    dropout: 0.2
    drop_path: 0.0

``depth`` lists every allowed number of blocks (elastic depth keeps the first ``d`` blocks),
``out`` the allowed output widths of the stage. The block type is chosen once per stage; the
other block choices per block or per stage as ``per`` says. Every member has the space's
resolution, classes, stem kernel/stride/activation, head activation, BN and SE style.

Optuna parameter names are hierarchical and 1-based: ``stem.out``, ``stage3.block``,
``stage3.depth``, ``stage3.out``, ``stage3.block2.kernel`` (per block) or ``stage3.kernel``
(per stage), ``head.channels``, ``head.hidden``. A value with a single choice is fixed and never
suggested; blocks beyond the sampled depth are never suggested.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbnas.arch import (
    ACTIVATIONS,
    EXPANDING_BLOCKS,
    SE_STYLES,
    ArchSpec,
    BatchNormSpec,
    BlockConfig,
    HeadSpec,
    StageSpec,
    StemSpec,
    network_readers,
)
from mbnas.cost import count
from mbnas.errors import ConfigError
from mbnas.resources import search_spaces_dir
from mbnas.validation import Reader, check_choice, check_float, check_int, read_yaml

DEFAULT_SPACE = "default"
PER = ("block", "stage")
BLOCK_CHOICES = ("kernel", "expand", "se", "act")

Pick = Callable[[str, tuple], Any]


@dataclass(frozen=True)
class StageChoices:
    """One stage row: the choices for its blocks, its depth and width; the stride is fixed."""

    block: tuple[str, ...]
    kernel: tuple[int, ...]
    expand: tuple[float, ...]
    se: tuple[float, ...]
    act: tuple[str, ...]
    depth: tuple[int, ...]
    out: tuple[int, ...]
    stride: int = 1


@dataclass(frozen=True)
class SearchSpace:
    """A family of ArchSpecs; see the module docstring for the YAML format."""

    name: str
    resolution: int
    num_classes: int
    stem_out: tuple[int, ...]
    stages: tuple[StageChoices, ...]
    head_channels: tuple[int, ...]
    head_hidden: tuple[int, ...] | None = None
    per: str = "block"
    in_channels: int = 3
    se_style: str = "efficientnet"
    bn: BatchNormSpec = dataclasses.field(default_factory=BatchNormSpec)
    stem_kernel: int = 3
    stem_stride: int = 2
    stem_act: str = "relu"
    head_act: str = "relu"
    dropout: float = 0.2
    drop_path: float = 0.0

    def replace(self, **changes: Any) -> SearchSpace:
        """A copy with some fields changed, e.g. ``space.replace(resolution=64)`` for tests."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ sampling

    def sample(self, trial: Any) -> ArchSpec:
        """The member an Optuna trial suggests, define-by-run (conditional on depth)."""
        return self._build(lambda name, options: trial.suggest_categorical(name, list(options)))

    def sample_random(self, rng: random.Random) -> ArchSpec:
        """A uniformly random choice at every decision, drawn from ``rng``."""
        return self._build(lambda name, options: rng.choice(options))

    def smallest(self) -> ArchSpec:
        """The member with the fewest MACs (see :meth:`largest` for the rule)."""
        return self._extreme(min)

    def largest(self) -> ArchSpec:
        """The member with the most MACs.

        Depth, widths, kernel, expansion and SE ratio raise MACs monotonically, so each takes its
        extreme; activations do not change MACs (the first listed is taken); the block type of a
        stage only changes that stage's MACs, so each stage takes the type with the extreme cost.
        """
        return self._extreme(max)

    def _extreme(self, pick: Callable) -> ArchSpec:
        types: dict[str, str] = {}

        def decide(name: str, options: tuple) -> Any:
            if name in types:
                return types[name]
            if isinstance(options[0], str):
                return options[0]
            return pick(options)

        for index, stage in enumerate(self.stages, start=1):
            name = f"stage{index}.block"
            if len(stage.block) > 1:
                costs = {}
                for block in stage.block:
                    types[name] = block
                    costs[block] = count(self._build(decide)).stages[index].macs
                types[name] = pick(costs, key=costs.get)
        return self._build(decide)

    def _build(self, pick: Pick) -> ArchSpec:
        """The one path from decisions to an ArchSpec; ``pick`` only sees real choices."""

        def decide(name: str, options: tuple) -> Any:
            return options[0] if len(options) == 1 else pick(name, options)

        stages = []
        for index, stage in enumerate(self.stages, start=1):
            prefix = f"stage{index}"
            block = decide(f"{prefix}.block", stage.block)
            depth = decide(f"{prefix}.depth", stage.depth)
            out = decide(f"{prefix}.out", stage.out)
            if self.per == "stage":
                values = {key: decide(f"{prefix}.{key}", getattr(stage, key))
                          for key in BLOCK_CHOICES}
            else:
                per_block = [{key: decide(f"{prefix}.block{j}.{key}", getattr(stage, key))
                              for key in BLOCK_CHOICES} for j in range(1, depth + 1)]
                values = {key: tuple(b[key] for b in per_block) for key in BLOCK_CHOICES}
            stages.append(StageSpec(out=out, depth=depth, stride=stage.stride, block=block,
                                    **values))
        hidden = decide("head.hidden", self.head_hidden) if self.head_hidden else None
        return ArchSpec(
            name=self.name, resolution=self.resolution, num_classes=self.num_classes,
            in_channels=self.in_channels, se_style=self.se_style, bn=self.bn,
            stem=StemSpec(out=decide("stem.out", self.stem_out), kernel=self.stem_kernel,
                          stride=self.stem_stride, act=self.stem_act),
            stages=tuple(stages),
            head=HeadSpec(channels=decide("head.channels", self.head_channels),
                          act=self.head_act, hidden=hidden),
            dropout=self.dropout, drop_path=self.drop_path)

    # ------------------------------------------------------------ membership

    @property
    def size(self) -> int:
        """The number of distinct choice combinations (members), an exact and possibly huge int."""
        per_block = [math.prod(len(getattr(s, k)) for k in BLOCK_CHOICES) for s in self.stages]
        total = len(self.stem_out) * len(self.head_channels) * len(self.head_hidden or (None,))
        for stage, options in zip(self.stages, per_block, strict=True):
            if self.per == "stage":
                blocks = len(stage.depth) * options
            else:
                blocks = sum(options ** depth for depth in stage.depth)
            total *= len(stage.block) * len(stage.out) * blocks
        return total

    def choices(self, arch: ArchSpec) -> dict[str, Any]:
        """The parameters :meth:`sample` would suggest to produce ``arch`` (ConfigError if none)."""
        values = self._read(arch)
        chosen: dict[str, Any] = {}

        def replay(name: str, options: tuple) -> Any:
            if name not in values:
                raise ConfigError(f"{arch.name}: {name}", "has no value in this architecture")
            value = values[name]
            if value not in options:
                raise ConfigError(f"{arch.name}: {name}", f"{value!r} is not a choice of space "
                                  f"{self.name!r}", f"allowed: {', '.join(map(str, options))}")
            chosen[name] = options[options.index(value)]
            return chosen[name]

        rebuilt = self._build(replay)
        mismatch = _first_difference(rebuilt, arch)
        if mismatch:
            raise ConfigError(f"{arch.name}: {mismatch}", f"differs from every member of space "
                              f"{self.name!r} (per: {self.per})")
        return chosen

    def contains(self, arch: ArchSpec) -> bool:
        """Whether ``arch`` is a member (names, dropout and drop path are ignored)."""
        try:
            self.choices(arch)
        except ConfigError:
            return False
        return True

    def _read(self, arch: ArchSpec) -> dict[str, Any]:
        """Every decision's value as ``arch`` states it, by parameter name (not yet checked)."""
        values: dict[str, Any] = {"stem.out": arch.stem.out, "head.channels": arch.head.channels,
                                  "head.hidden": arch.head.hidden}
        resolved = zip(arch.stages, arch.stage_blocks(), strict=True)
        for index, (stage, blocks) in enumerate(resolved, start=1):
            prefix = f"stage{index}"
            values.update({f"{prefix}.block": blocks[0].type, f"{prefix}.depth": stage.depth,
                           f"{prefix}.out": stage.out})
            options = self.stages[index - 1] if index <= len(self.stages) else None
            for j, cfg in enumerate(blocks, start=1):
                read = {"kernel": cfg.kernel, "act": cfg.act,
                        **_ratios_of(cfg, options, self.se_style)}
                for key, value in read.items():
                    values[f"{prefix}.block{j}.{key}"] = value
                    if j == 1:
                        values[f"{prefix}.{key}"] = value
        return values


def _ratios_of(cfg: BlockConfig, options: StageChoices | None, se_style: str) -> dict[str, Any]:
    """The listed expansion and SE ratios that resolve to the block's widths (or its widths)."""
    found = {"expand": f"expanded width {cfg.mid_ch}", "se": f"SE width {cfg.se_ch}"}
    for expand in options.expand if options else ():
        for ratio in options.se:
            probe = probe_block(cfg.type, cfg.in_ch, cfg.out_ch, expand, ratio, se_style)
            if probe.mid_ch == cfg.mid_ch:
                found["expand"] = expand
                if probe.se_ch == cfg.se_ch:
                    return {"expand": expand, "se": ratio}
    return found


def _first_difference(built: ArchSpec, arch: ArchSpec) -> str:
    """The first field where two ArchSpecs differ as networks, or '' when they are the same."""
    for key in ("resolution", "num_classes", "in_channels", "se_style", "bn", "stem", "head"):
        if getattr(built, key) != getattr(arch, key):
            return key
    if len(built.stages) != len(arch.stages):
        return f"stages ({len(arch.stages)} instead of {len(built.stages)})"
    pairs = zip(built.stage_blocks(), arch.stage_blocks(), strict=True)
    for index, (mine, theirs) in enumerate(pairs, start=1):
        if mine != theirs:
            return f"stage{index}"
    return ""


@functools.lru_cache(maxsize=65536)
def probe_block(block: str, in_ch: int, out_ch: int, expand: float, se: float,
                se_style: str) -> BlockConfig:
    """The resolved first block of a one-block stage: the widths ArchSpec derives for it."""
    arch = ArchSpec(resolution=32, stem=StemSpec(out=in_ch), head=HeadSpec(channels=8),
                    se_style=se_style,
                    stages=(StageSpec(out=out_ch, block=block, expand=expand, se=se),))
    return arch.stage_blocks()[0][0]


# ---------------------------------------------------------------- reading and validation


def _options(reader: Reader, key: str, check: Callable[[Any, str], Any],
             default: Any = None) -> tuple:
    """A value given once or as a list of distinct choices, each checked."""
    value = reader.data.get(key, default)
    where = f"{reader.where}.{key}"
    if value is None:
        raise ConfigError(where, "missing required key", "give a value or a list of choices")
    if not isinstance(value, list):
        return (check(value, where),)
    if not value:
        raise ConfigError(where, "empty list of choices", "give at least one value")
    options = tuple(check(item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(set(options)) != len(options):
        raise ConfigError(where, f"repeated choices in {value!r}", "list each value once")
    return options


def _ratio(value: Any, where: str) -> int | float:
    number = check_float(value, where, 0.0, None, low_inclusive=False)
    return int(number) if number.is_integer() else number


_STAGE_KEYS = ("block", "kernel", "expand", "se", "act", "depth", "out", "stride")


def _stage_from_dict(data: Any, where: str) -> StageChoices:
    reader = Reader(data, where, _STAGE_KEYS, required=("expand", "depth", "out"))
    return StageChoices(
        block=_options(reader, "block", lambda v, w: check_choice(v, w, EXPANDING_BLOCKS),
                       "mbconv"),
        kernel=_options(reader, "kernel", lambda v, w: check_int(v, w, odd=True), 3),
        expand=_options(reader, "expand", _ratio),
        se=_options(reader, "se", lambda v, w: check_float(v, w, 0.0, 1.0), 0.0),
        act=_options(reader, "act", lambda v, w: check_choice(v, w, ACTIVATIONS), "relu"),
        depth=_options(reader, "depth", check_int),
        out=_options(reader, "out", check_int),
        stride=reader.int("stride", default=1))


_SPACE_KEYS = ("name", "resolution", "num_classes", "in_channels", "se_style", "bn", "per",
               "stem", "stages", "head", "dropout", "drop_path")


def space_from_dict(data: Any, source: str = "<space>") -> SearchSpace:
    """A validated SearchSpace; errors name the source, the key, the value and what is allowed."""
    parts = network_readers(data, source, _SPACE_KEYS)
    reader, stem, head = parts.top, parts.stem, parts.head
    return SearchSpace(
        name=reader.str("name", Path(source).stem),
        resolution=reader.int("resolution", minimum=8),
        num_classes=reader.int("num_classes", default=1000),
        in_channels=reader.int("in_channels", default=3),
        se_style=reader.choice("se_style", SE_STYLES, default="efficientnet"),
        bn=parts.bn,
        per=reader.choice("per", PER, default="block"),
        stem_out=_options(stem, "out", check_int),
        stem_kernel=stem.int("kernel", 3, odd=True),
        stem_stride=stem.int("stride", 2),
        stem_act=stem.choice("act", ACTIVATIONS, "relu"),
        stages=tuple(_stage_from_dict(row, f"{source}: stages[{i}]")
                     for i, row in enumerate(parts.stages)),
        head_channels=_options(head, "channels", check_int),
        head_act=head.choice("act", ACTIVATIONS, "relu"),
        head_hidden=_options(head, "hidden", check_int) if head.has("hidden") else None,
        dropout=reader.float("dropout", 0.2, 0.0, 1.0),
        drop_path=reader.float("drop_path", 0.0, 0.0, 1.0))


def available_spaces() -> list[str]:
    """Names of the shipped search spaces."""
    return sorted(path.stem for path in search_spaces_dir().glob("*.yaml"))


def load_space(name_or_path: str | Path | SearchSpace | None = None) -> SearchSpace:
    """A shipped space by name (None: ``default``, the space of ``search``) or a YAML file."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    text = str(name_or_path or DEFAULT_SPACE)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return space_from_dict(read_yaml(path), source=str(path))
    if text in available_spaces():
        file = search_spaces_dir() / f"{text}.yaml"
        return space_from_dict(read_yaml(file), source=file.name)
    raise ConfigError("space", f"unknown search space {text!r}",
                      f"use a YAML file path or one of {', '.join(available_spaces())}")

