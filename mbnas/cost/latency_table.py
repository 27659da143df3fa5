"""Predicted latency: a per-block lookup table, as ProxylessNAS/FBNet/OFA use.

A network's latency is the sum of its stem's, blocks' and head's entries, each measured alone at
batch 1 on its own input shape. Tables are cached on disk per space, resolution and device key
(processor, thread count, torch and mbnas versions); missing entries are measured on first use
and saved, so a table only ever grows.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from mbnas.arch import ArchSpec, BlockConfig
from mbnas.cost.latency import measure_module
from mbnas.cost.macs import conv_output_size
from mbnas.nn.blocks import BLOCKS, ConvBNAct
from mbnas.nn.builder import Head
from mbnas.version import __version__


def processor_name() -> str:
    """The CPU model from /proc/cpuinfo where available (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_key(threads: int, device: str = "cpu") -> dict[str, str]:
    """Everything a measured latency depends on besides the block itself."""
    name = torch.cuda.get_device_name() if device.startswith("cuda") else processor_name()
    return {"device": name, "threads": str(threads), "torch": torch.__version__,
            "mbnas": __version__}


def cache_dir() -> Path:
    return Path(os.environ.get("MBNAS_CACHE", Path.home() / ".cache" / "mbnas")) / "latency"


# An entry: (cache key, module factory, input shape)
Entry = tuple[str, Callable[[], torch.nn.Module], tuple[int, ...]]


def arch_entries(arch: ArchSpec) -> list[Entry]:
    """The stem, every block and the head of ``arch``, each with the input shape it sees."""
    size = arch.resolution
    stem = arch.stem
    entries: list[Entry] = [(
        f"stem|{arch.in_channels}|{stem.out}|k{stem.kernel}|s{stem.stride}|{stem.act}|r{size}",
        lambda: ConvBNAct(arch.in_channels, stem.out, stem.kernel, stem.stride, act=stem.act),
        (1, arch.in_channels, size, size))]
    size = conv_output_size(size, stem.kernel, stem.stride)
    for block in arch.blocks():
        entries.append((_block_key(block, size), lambda b=block: BLOCKS[b.type](b),
                        (1, block.in_ch, size, size)))
        size = conv_output_size(size, block.kernel, block.stride)
    head, channels = arch.head, arch.last_stage_channels
    entries.append((
        f"head|{channels}|{head.channels}|{head.hidden}|{head.act}|c{arch.num_classes}|r{size}",
        lambda: Head(channels, head, arch.num_classes, 0.0), (1, channels, size, size)))
    return entries


def _block_key(block: BlockConfig, size: int) -> str:
    return (f"{block.type}|{block.in_ch}|{block.mid_ch}|{block.out_ch}|k{block.kernel}"
            f"|s{block.stride}|se{block.se_ch}{block.se_style[0]}|{block.act}|r{size}")


class LatencyTable:
    """Per-block latencies (ms) for one device key, persisted as JSON at ``path``."""

    def __init__(self, path: Path, threads: int = 1, warmup: int = 5, repeats: int = 20):
        self.path = Path(path)
        self.threads, self.warmup, self.repeats = threads, warmup, repeats
        self.entries: dict[str, float] = {}
        # A whole network does not run exactly as fast as its blocks alone (residual adds,
        # dispatch between modules, caches): a line fitted on measured members maps one onto
        # the other, latency = offset + scale · Σ entries.
        self.scale, self.offset = 1.0, 0.0
        if self.path.exists():
            stored = json.loads(self.path.read_text())
            self.entries = stored["entries"]
            self.scale, self.offset = stored.get("scale", 1.0), stored.get("offset", 0.0)
        self._dirty = False

    @classmethod
    def for_space(cls, space_name: str, resolution: int, threads: int = 1, **kwargs
                  ) -> LatencyTable:
        key = device_key(threads)
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        return cls(cache_dir() / f"{space_name}-r{resolution}-{digest}.json", threads, **kwargs)

    def missing(self, archs: Iterable[ArchSpec]) -> list[Entry]:
        seen: dict[str, Entry] = {}
        for arch in archs:
            for entry in arch_entries(arch):
                if entry[0] not in self.entries:
                    seen.setdefault(entry[0], entry)
        return list(seen.values())

    def measure(self, entries: Iterable[Entry]) -> None:
        for key, factory, shape in entries:
            with torch.no_grad():
                module = factory()
            self.entries[key] = measure_module(module, shape, threads=self.threads,
                                               warmup=self.warmup, repeats=self.repeats).median_ms
            self._dirty = True

    def block_sum(self, arch: ArchSpec) -> float:
        """Sum of the entries of ``arch`` (ms); blocks never seen before are measured now."""
        self.measure(self.missing([arch]))
        self.save()
        return sum(self.entries[key] for key, _, _ in arch_entries(arch))

    def predict(self, arch: ArchSpec) -> float:
        """Predicted batch-1 latency in ms: the calibrated sum of the arch's entries."""
        return self.offset + self.scale * self.block_sum(arch)

    def calibrate(self, measured: Iterable[tuple[ArchSpec, float]]) -> tuple[float, float]:
        """Fit (offset, scale) on whole-network measurements: a line with three or more members,
        the median ratio with fewer."""
        pairs = [(self.block_sum(arch), latency) for arch, latency in measured]
        if len(pairs) >= 3 and len({round(s, 6) for s, _ in pairs}) > 1:
            slope, intercept = statistics.linear_regression(*zip(*pairs, strict=True))
            if slope > 0:
                self.scale, self.offset = slope, intercept
        elif pairs:
            self.scale, self.offset = statistics.median(m / s for s, m in pairs), 0.0
        self._dirty = True
        self.save()
        return self.offset, self.scale

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**device_key(self.threads), "warmup": self.warmup, "repeats": self.repeats}
        tmp = self.path.with_suffix(".tmp")
        stored = {"meta": meta, "scale": self.scale, "offset": self.offset,
                  "entries": self.entries}
        tmp.write_text(json.dumps(stored, indent=0))
        tmp.replace(self.path)
        self._dirty = False
