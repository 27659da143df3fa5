"""Measured latency: batch 1 on the local CPU, warm-up, repeats, median, fixed thread count."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch.utils import benchmark

from mbnas.arch import ArchSpec
from mbnas.architectures import load_arch
from mbnas.nn import build


@dataclass
class LatencyConfig:
    """How latency is measured: batch 1 on ``threads`` threads, ``warmup`` untimed runs, then
    the median of ``repeats`` timed ones (the ``latency`` config node of `cost` and `search`)."""

    threads: int = 1
    warmup: int = 10
    repeats: int = 30


@dataclass(frozen=True)
class Latency:
    """Median latency in milliseconds, with the spread and settings it was measured under."""

    median_ms: float
    iqr_ms: float
    repeats: int
    threads: int
    device: str


def measure_module(model: torch.nn.Module, input_shape: tuple[int, ...], *, threads: int = 1,
                   warmup: int = 10, repeats: int = 30, device: str = "cpu") -> Latency:
    """Median wall time of one forward pass of ``model`` on a tensor of ``input_shape``."""
    model = model.to(device).eval()
    x = torch.randn(*input_shape, device=device)
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                                    num_threads=threads)
            times = [timer.timeit(number=1).median * 1e3 for _ in range(repeats)]
    finally:
        torch.set_num_threads(previous_threads)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Latency(statistics.median(times), quartiles[2] - quartiles[0], repeats, threads, device)


def measure(arch: ArchSpec | str, *, threads: int = 1, warmup: int = 10, repeats: int = 30,
            device: str = "cpu") -> Latency:
    """Latency of the network ``arch`` describes at its deployment resolution, batch 1."""
    arch = load_arch(arch)
    shape = (1, arch.in_channels, arch.resolution, arch.resolution)
    return measure_module(build(arch), shape, threads=threads, warmup=warmup, repeats=repeats,
                          device=device)
