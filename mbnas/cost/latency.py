"""Measured latency: the minimum and median of repeated inferences through a runtime, with their
spread, so a busy machine shows as a busy measurement instead of a silently noisy number."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mbnas.arch import ArchSpec
from mbnas.architectures import load_arch
from mbnas.cost.device_script import (
    CLOCKS,
    STATISTICS,
    OtherLoad,
    busy_reason,
    is_busy,
    measure_calls,
)
from mbnas.cost.runtimes import (
    RuntimeSettings,
    check_format,
    check_runtime,
    make_call,
    torch_threads,
)
from mbnas.errors import ConfigError
from mbnas.nn import build
from mbnas.validation import check_choice


@dataclass
class LatencyConfig:
    """How latency is measured: through ``runtime`` on ``threads`` threads at batch ``batch``,
    ``warmup`` untimed runs, then the minimum (or median) of ``repeats`` timed ones (the
    ``latency`` node of `cost`, `search` and `latency`).

    The minimum by default: on a shared or virtual machine it moves less between processes and
    minutes than the median (tables checked in another process met the accuracy target about
    half again as often, BENCHMARKS.md, Latency table error); on a quiet device the two differ
    by a few percent.
    """

    runtime: str = "torch"  # torch | onnxruntime
    statistic: str = "min"  # min | median (of the repeats)
    clock: str = "wall"  # wall | cpu (CPU time of the calling thread; threads=1 only)
    threads: int = 1
    batch: int = 1
    warmup: int = 10
    repeats: int = 30
    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights and input; torch runtime)
    layout: str = "NCHW"  # NCHW | NHWC (channels_last; torch runtime)

    def settings(self) -> RuntimeSettings:
        """The runtime settings part (checked: the runtime must be installed)."""
        check_runtime(self.runtime)
        check_format(self.runtime, self.dtype, self.layout)
        check_choice(self.statistic, "latency.statistic", STATISTICS)
        check_choice(self.clock, "latency.clock", tuple(CLOCKS))
        if self.clock == "cpu" and self.threads != 1:
            raise ConfigError("latency.clock", "cpu measures one thread's time",
                              "use latency.threads=1 with it, or latency.clock=wall")
        return RuntimeSettings(runtime=self.runtime, threads=self.threads, batch=self.batch,
                               dtype=self.dtype, layout=self.layout)


@dataclass(frozen=True)
class Latency:
    """Latency in milliseconds (median and minimum of the repeats), with the spread and settings
    it was measured under."""

    median_ms: float
    min_ms: float
    iqr_ms: float
    repeats: int
    threads: int
    runtime: str = "torch"
    dtype: str = "float32"  # of the weights and the input
    layout: str = "NCHW"  # NCHW (contiguous) | NHWC (channels_last)
    # Cores other processes kept busy while it was timed (None: under a second of timing, or
    # a system that does not say).
    other_cores: float | None = None

    def value(self, statistic: str = "min") -> float:
        """The minimum or the median of the repeats (ms)."""
        return self.min_ms if statistic == "min" else self.median_ms

    @property
    def spread(self) -> float:
        """Interquartile range over median: a few percent on a quiet machine."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def busy(self) -> bool:
        """Whether the repeats varied more than they do on a quiet machine, or other processes
        kept part of the cores busy meanwhile."""
        return is_busy([self.spread], self.other_cores)


def measure_module(model: torch.nn.Module, input_shape: tuple[int, ...], *, threads: int = 1,
                   warmup: int = 10, repeats: int = 30, runtime: str = "torch",
                   clock: str = "wall", dtype: str = "float32", layout: str = "NCHW") -> Latency:
    """Minimum and median time of one inference of ``model`` on an input of ``input_shape``, in
    ``dtype`` and ``layout`` (``model`` is converted in place when they are not float32 NCHW)."""
    settings = LatencyConfig(runtime=runtime, threads=threads, batch=input_shape[0],
                             clock=clock, dtype=dtype, layout=layout).settings()
    with torch_threads(threads):
        call = make_call(model, input_shape, settings)
        with OtherLoad() as others:
            stats = measure_calls({"model": call}, warmup, repeats, clock=clock)["model"]
    return Latency(stats["median_ms"], stats["min_ms"], stats["iqr_ms"], repeats, threads,
                   runtime, dtype, layout, others.cores)


def measure(arch: ArchSpec | str, *, threads: int = 1, warmup: int = 10, repeats: int = 30,
            runtime: str = "torch", batch: int = 1, clock: str = "wall", dtype: str = "float32",
            layout: str = "NCHW") -> Latency:
    """Latency of the network ``arch`` describes at its deployment resolution."""
    arch = load_arch(arch)
    shape = (batch, arch.in_channels, arch.resolution, arch.resolution)
    return measure_module(build(arch), shape, threads=threads, warmup=warmup, repeats=repeats,
                          runtime=runtime, clock=clock, dtype=dtype, layout=layout)


def measure_config(arch: ArchSpec | str, cfg: LatencyConfig) -> Latency:
    """:func:`measure` with the settings of a ``latency`` config node."""
    return measure(arch, threads=cfg.threads, warmup=cfg.warmup, repeats=cfg.repeats,
                   runtime=cfg.runtime, batch=cfg.batch, clock=cfg.clock, dtype=cfg.dtype,
                   layout=cfg.layout)


def busy_message(spread: float, other_cores: float | None) -> str:
    """The warning for latencies measured on a busy machine: their ``spread`` across repeats
    and the cores other processes kept busy meanwhile."""
    return (f"warning: the machine is busy: {busy_reason(spread, other_cores)}; measured "
            "latencies and the budget decisions based on them may be off; prefer an idle "
            "machine or latency=table")
