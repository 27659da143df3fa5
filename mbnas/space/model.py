"""SearchSpace: the set of architectures a search may pick from (the YAML format is in
:mod:`mbnas.space.reader`).

Every member has the space's resolution, classes, stem kernel/stride/activation, head
activation, BN and SE style. A stage offers either *cartesian* choices (block type once per
stage; kernel, expansion, SE and activation per block or per stage as ``per`` says) or a list of
named candidate *ops* (per layer or per stage), as FBNet, ProxylessNAS, SPOS and NAS-Bench-Macro
do; both kinds may appear in one space.

Optuna parameter names are hierarchical and 1-based: ``stem.out``, ``stage3.block``,
``stage3.depth``, ``stage3.out``, ``stage3.block2.kernel`` (per block) or ``stage3.kernel``
(per stage), ``stage2.block1.op`` (an op-list stage, per layer) or ``stage2.op`` (per stage),
``head.channels``, ``head.hidden``. A value with a single choice is fixed and never suggested;
blocks beyond the sampled depth are never suggested.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mbnas.arch import (
    ArchSpec,
    BatchNormSpec,
    BlockConfig,
    HeadSpec,
    StageSpec,
    StemSpec,
)
from mbnas.cost import count
from mbnas.errors import ConfigError

PER = ("block", "stage")
BLOCK_CHOICES = ("kernel", "expand", "se", "act")

Pick = Callable[[str, tuple], Any]


@dataclass(frozen=True)
class OpChoice:
    """One named candidate op of a layer: a block with every setting fixed, or ``skip``."""

    name: str
    block: str
    kernel: int = 3
    expand: float = 1
    se: float = 0.0
    act: str = "relu"


SKIP = OpChoice(name="skip", block="skip", kernel=1)


@dataclass(frozen=True)
class StageChoices:
    """One stage row: the choices for its blocks, its depth and width; the stride is fixed.

    A cartesian stage fills ``block`` … ``act`` and leaves ``ops`` empty; an op-list stage
    fills ``ops`` and leaves the cartesian fields empty.
    """

    depth: tuple[int, ...]
    out: tuple[int, ...]
    stride: int = 1
    block: tuple[str, ...] = ()
    kernel: tuple[int, ...] = ()
    expand: tuple[float, ...] = ()
    se: tuple[float, ...] = ()
    act: tuple[str, ...] = ()
    ops: tuple[OpChoice, ...] = ()

    def op(self, name: str) -> OpChoice:
        """The candidate op called ``name``."""
        return next(op for op in self.ops if op.name == name)

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops)

    def block_options(self) -> int:
        """How many distinct blocks one position of this stage may hold."""
        if self.ops:
            return len(self.ops)
        return math.prod(len(getattr(self, key)) for key in BLOCK_CHOICES)


@dataclass(frozen=True)
class SearchSpace:
    """A family of ArchSpecs; see the module docstring for the YAML format."""

    name: str
    resolution: int
    num_classes: int
    stem_out: tuple[int, ...]
    stages: tuple[StageChoices, ...]
    head_channels: tuple[int, ...]
    head_hidden: tuple[int | None, ...] | None = None   # None: no hidden layer
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
    evaluator: str | None = None  # what a search uses unless evaluator= is given
    # That evaluator's settings which differ from its conf/evaluator/NAME.yaml (a mapping
    # value replaces the conf's mapping whole, e.g. zero_cost's feature weights).
    evaluator_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict,
                                                              hash=False)

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

    def fair_sample(self, rng: random.Random) -> list[ArchSpec]:
        """FairNAS's strictly fair members of one step: as many as the widest decision has
        options, taking every decision's options in one random order each, so that over the
        step every option of every decision is trained equally often (exactly once where a
        decision has that many options)."""
        order: dict[str, list] = {}

        def fair(member: int) -> Pick:
            def pick(name: str, options: tuple) -> Any:
                if name not in order:  # drawn once, by the first member to reach it
                    order[name] = rng.sample(options, len(options))
                return order[name][member % len(options)]
            return pick

        return [self._build(fair(member)) for member in range(self.widest_decision())]

    def widest_decision(self) -> int:
        """The most options any decision of the space has (a decision that only deeper stages
        reach included)."""
        widest = 1

        def deepest(name: str, options: tuple) -> Any:
            nonlocal widest
            widest = max(widest, len(options))
            return max(options) if name.endswith(".depth") else options[0]

        self._build(deepest)
        return widest

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
        fixed: dict[str, Any] = {}

        def decide(name: str, options: tuple) -> Any:
            if name in fixed:
                return fixed[name]
            return options[0] if isinstance(options[0], str) else pick(options, key=_numeric)

        # Block types, ops and the head's hidden layer (None: none) are not ordered by cost: try
        # each option of each such decision (in sampling order, the others held) and keep the
        # cheapest or dearest. Layer costs add up and one layer's choice does not change
        # another's shapes, so this is exact.
        decisions: list[tuple[str, tuple]] = []
        self._build(lambda name, options: decisions.append((name, options)) or
                    decide(name, options))
        for name, options in decisions:
            if not name.endswith((".block", ".op", "head.hidden")):
                continue
            costs = {}
            for option in options:
                fixed[name] = option
                costs[option] = count(self._build(decide)).macs
            fixed[name] = pick(costs, key=costs.get)
        return self._build(decide)

    def _build(self, pick: Pick) -> ArchSpec:
        """The one path from decisions to an ArchSpec; ``pick`` only sees real choices."""

        def decide(name: str, options: tuple) -> Any:
            return options[0] if len(options) == 1 else pick(name, options)

        stages = []
        for index, stage in enumerate(self.stages, start=1):
            build_stage = self._op_stage if stage.ops else self._cartesian_stage
            stages.append(build_stage(stage, f"stage{index}", decide))
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

    def _cartesian_stage(self, stage: StageChoices, prefix: str, decide: Pick) -> StageSpec:
        block = decide(f"{prefix}.block", stage.block)
        depth = decide(f"{prefix}.depth", stage.depth)
        out = decide(f"{prefix}.out", stage.out)
        if self.per == "stage":
            values = {key: decide(f"{prefix}.{key}", getattr(stage, key))
                      for key in BLOCK_CHOICES}
        else:
            per_block = [{key: decide(f"{prefix}.block{j}.{key}", getattr(stage, key))
                          for key in BLOCK_CHOICES} for j in range(1, depth + 1)]
            values = {key: _one_or_each([b[key] for b in per_block]) for key in BLOCK_CHOICES}
        return StageSpec(out=out, depth=depth, stride=stage.stride, block=block, **values)

    def _op_stage(self, stage: StageChoices, prefix: str, decide: Pick) -> StageSpec:
        depth = decide(f"{prefix}.depth", stage.depth)
        out = decide(f"{prefix}.out", stage.out)
        if self.per == "stage":
            names = [decide(f"{prefix}.op", stage.op_names)] * depth
        else:
            names = [decide(f"{prefix}.block{j}.op", stage.op_names) for j in range(1, depth + 1)]
        ops = [stage.op(name) for name in names]
        values = {key: _one_or_each([getattr(op, key) for op in ops])
                  for key in ("block", *BLOCK_CHOICES)}
        return StageSpec(out=out, depth=depth, stride=stage.stride, **values)

    # ------------------------------------------------------------ membership

    @property
    def size(self) -> int:
        """The number of distinct choice combinations (members), an exact and possibly huge int."""
        total = len(self.stem_out) * len(self.head_channels) * len(self.head_hidden or (None,))
        for stage in self.stages:
            options = stage.block_options()
            if self.per == "stage":
                blocks = len(stage.depth) * options
            else:
                blocks = sum(options ** depth for depth in stage.depth)
            total *= len(stage.block or (None,)) * len(stage.out) * blocks
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
                raise ConfigError(f"{arch.name}: {name}", f"{_shown(value)} is not a choice of "
                                  f"space {self.name!r}",
                                  f"allowed: {', '.join(map(_shown, options))}")
            chosen[name] = options[options.index(value)]
            return chosen[name]

        rebuilt = self._build(replay)
        mismatch = _first_difference(rebuilt, arch)
        if mismatch:
            raise ConfigError(f"{arch.name}: {mismatch}", f"differs from every member of space "
                              f"{self.name!r} (per: {self.per})")
        return chosen

    def neighbours(self, arch: ArchSpec, rng: random.Random) -> Iterator[ArchSpec]:
        """Every member one decision away from ``arch`` (a member), in random order: one step of
        a local search, or a mutation of an evolutionary one. Decisions only a neighbour has (the
        layers a deeper stage adds) are drawn from ``rng``."""
        chosen = self.choices(arch)
        options_of: dict[str, tuple] = {}

        def record(name: str, options: tuple) -> Any:
            options_of[name] = options
            return chosen[name]

        self._build(record)
        steps = [(name, value) for name, options in options_of.items()
                 for value in options if value != chosen[name]]
        rng.shuffle(steps)
        for changed, value in steps:

            def pick(name: str, options: tuple, changed: str = changed, value: Any = value) -> Any:
                if name == changed:
                    return value
                if name in chosen and chosen[name] in options:
                    return chosen[name]
                return rng.choice(options)

            yield self._build(pick)

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
                if options and options.ops:
                    read = {"op": _op_of(cfg, options, self.se_style)}
                else:
                    read = {"kernel": cfg.kernel, "act": cfg.act,
                            **_ratios_of(cfg, options, self.se_style)}
                for key, value in read.items():
                    values[f"{prefix}.block{j}.{key}"] = value
                    if j == 1:
                        values[f"{prefix}.{key}"] = value
        return values


def _shown(option: Any) -> str:
    """A choice as a space file writes it (None, no hidden layer, as 0)."""
    return "0" if option is None else repr(option) if isinstance(option, str) else str(option)


def _numeric(option: Any) -> Any:
    """Sort key of a numeric choice where None (no layer) counts as 0."""
    return 0 if option is None else option


def _one_or_each(values: list) -> Any:
    """One value for the whole stage when every block has it, else a value per block."""
    return values[0] if len(set(values)) == 1 else tuple(values)


def _op_of(cfg: BlockConfig, options: StageChoices, se_style: str) -> str:
    """The name of the stage's candidate op that resolves to the block ``cfg``."""
    for op in options.ops:
        if op.block != cfg.type:
            continue
        if op.block == "skip":
            return op.name
        probe = probe_block(op.block, cfg.in_ch, cfg.out_ch, op.expand, op.se, se_style)
        if (probe.mid_ch, probe.se_ch, op.kernel, op.act) == (cfg.mid_ch, cfg.se_ch, cfg.kernel,
                                                               cfg.act):
            return op.name
    return f"{cfg.type} k{cfg.kernel} (mid {cfg.mid_ch}, SE {cfg.se_ch}, {cfg.act})"


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
