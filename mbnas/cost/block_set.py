"""The units a latency table times: the stem, each block and the head, with the input shape each
sees, for one network (:func:`arch_entries`) or for every member of a space (:func:`space_entries`).

An entry's key names everything its latency depends on (type, widths, kernel, stride, SE,
activation, input size), so two members that share a block share its entry, and a space's block
set (the keys of every entry any member can hold) identifies the space for a table.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from mbnas.arch import ArchSpec, BlockConfig, HeadSpec, StageSpec, StemSpec
from mbnas.cost.macs import conv_output_size
from mbnas.nn.blocks import BLOCKS, ConvBNAct
from mbnas.nn.builder import Head
from mbnas.space import SearchSpace
from mbnas.space.model import StageChoices


@dataclass(frozen=True)
class Entry:
    """One timed unit: its key, a factory of its module (eval mode), and its input shape."""

    key: str
    make: Callable[[], torch.nn.Module]
    shape: tuple[int, ...]

    def module(self) -> torch.nn.Module:
        """A fresh module of the entry, in eval mode."""
        with torch.no_grad():
            return self.make().eval()


def stem_entry(in_channels: int, stem: StemSpec, size: int) -> Entry:
    """The stem conv on the ``size``² input image."""
    key = f"stem|{in_channels}|{stem.out}|k{stem.kernel}|s{stem.stride}|{stem.act}|r{size}"
    return Entry(key, lambda: ConvBNAct(in_channels, stem.out, stem.kernel, stem.stride,
                                        act=stem.act), (1, in_channels, size, size))


def block_entry(block: BlockConfig, size: int) -> Entry:
    """One block on a ``size``² input."""
    key = (f"{block.type}|{block.in_ch}|{block.mid_ch}|{block.out_ch}|k{block.kernel}"
           f"|s{block.stride}|se{block.se_ch}{block.se_style[0]}|{block.act}|r{size}")
    return Entry(key, lambda: BLOCKS[block.type](block), (1, block.in_ch, size, size))


def head_entry(in_ch: int, head: HeadSpec, num_classes: int, size: int) -> Entry:
    """The head (1x1 conv if any, pooling, hidden Linear if any, classifier)."""
    key = f"head|{in_ch}|{head.channels}|{head.hidden}|{head.act}|c{num_classes}|r{size}"
    return Entry(key, lambda: Head(in_ch, head, num_classes, 0.0), (1, in_ch, size, size))


def arch_entries(arch: ArchSpec) -> list[Entry]:
    """The stem, every block and the head of ``arch``, each with the input shape it sees."""
    size = arch.resolution
    entries = [stem_entry(arch.in_channels, arch.stem, size)]
    size = conv_output_size(size, arch.stem.kernel, arch.stem.stride)
    for block in arch.blocks():
        entries.append(block_entry(block, size))
        size = conv_output_size(size, block.kernel, block.stride)
    entries.append(head_entry(arch.last_stage_channels, arch.head, arch.num_classes, size))
    return entries


def space_entries(space: SearchSpace) -> list[Entry]:
    """Every distinct entry that any member of ``space`` holds (its block set), keys sorted."""
    size = space.resolution
    found: dict[str, Entry] = {}
    for out in space.stem_out:
        stem = StemSpec(out=out, kernel=space.stem_kernel, stride=space.stem_stride,
                        act=space.stem_act)
        _add(found, [stem_entry(space.in_channels, stem, size)])
    size = conv_output_size(size, space.stem_kernel, space.stem_stride)
    widths: tuple[int, ...] = space.stem_out
    for stage in space.stages:
        after = conv_output_size(size, 3, stage.stride)
        for in_ch, out, option in itertools.product(widths, stage.out, stage_options(stage)):
            first, rest = _first_and_rest(space, stage, in_ch, out, option)
            _add(found, [block_entry(first, size)])
            if max(stage.depth) > 1:
                _add(found, [block_entry(rest, after)])
        size, widths = after, stage.out
    for in_ch, channels, hidden in itertools.product(widths, space.head_channels,
                                                     space.head_hidden or (None,)):
        head = HeadSpec(channels=channels, act=space.head_act, hidden=hidden)
        _add(found, [head_entry(in_ch, head, space.num_classes, size)])
    return [found[key] for key in sorted(found)]


def stage_options(stage: StageChoices) -> list[dict]:
    """Each distinct block a position of ``stage`` may hold: block, kernel, expand, se, act."""
    if stage.ops:
        return [{"block": op.block, "kernel": op.kernel, "expand": op.expand, "se": op.se,
                 "act": op.act} for op in stage.ops]
    return [dict(zip(("block", "kernel", "expand", "se", "act"), values))
            for values in itertools.product(stage.block, stage.kernel, stage.expand, stage.se,
                                            stage.act)]


def block_set_digest(keys: Iterable[str]) -> str:
    """A short identity of a set of entry keys: equal block sets, equal digests."""
    return hashlib.sha1("\n".join(sorted(set(keys))).encode()).hexdigest()[:16]


def _first_and_rest(space: SearchSpace, stage: StageChoices, in_ch: int, out: int,
                    option: dict) -> tuple[BlockConfig, BlockConfig]:
    """The resolved first block (from ``in_ch``, strided) and a later block of a stage."""
    spec = StageSpec(out=out, depth=2, stride=stage.stride, **option)
    arch = ArchSpec(resolution=space.resolution, stem=StemSpec(out=in_ch), stages=(spec,),
                    head=HeadSpec(channels=8), se_style=space.se_style, bn=space.bn)
    first, rest = arch.stage_blocks()[0]
    return first, rest


def _add(found: dict[str, Entry], entries: Iterable[Entry]) -> None:
    for entry in entries:
        found.setdefault(entry.key, entry)
