"""``python -m mbnas cost arch=<name|yaml>``: per-stage MACs, parameters and activations, and CPU
latency."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mbnas.architectures import load_arch
from mbnas.config import OutputFormat
from mbnas.cost import count
from mbnas.cost.device_script import processor_name
from mbnas.cost.latency import LatencyConfig, busy_message, measure_config
from mbnas.scaling import scale_arch
from mbnas.units import format_count


@dataclass
class CostLatencyConfig(LatencyConfig):
    """The ``latency`` node of `cost`: whether to measure, and how."""

    measure: bool = True  # time batch-1 inference on this CPU


@dataclass
class Config:
    arch: str = "mobilenet_v3_large"
    width: float = 1.0
    depth: float = 1.0
    resolution: int | None = None
    format: OutputFormat = OutputFormat.table
    latency: CostLatencyConfig = field(default_factory=CostLatencyConfig)


def run(cfg: Config) -> None:
    arch = scale_arch(load_arch(cfg.arch), cfg.width, cfg.depth, cfg.resolution)
    cost = count(arch)
    latency = None
    if cfg.latency.measure:
        latency = measure_config(arch, cfg.latency)
    if cfg.format is OutputFormat.json:
        result = {"arch": arch.name, "resolution": arch.resolution, **cost.to_dict(),
                  "latency_ms": latency and round(latency.value(cfg.latency.statistic), 4),
                  "latency_statistic": cfg.latency.statistic,
                  "latency_threads": cfg.latency.threads,
                  "latency_runtime": cfg.latency.runtime,
                  "latency_dtype": cfg.latency.dtype, "latency_layout": cfg.latency.layout,
                  "latency_busy": latency and latency.busy}
        print(json.dumps(result))
        return
    print(f"{arch.name} at {arch.resolution}x{arch.resolution}, {arch.num_classes} classes")
    header = (f"{'stage':<8} {'out res':>7} {'channels':>8} {'MACs':>15} {'params':>12} "
              f"{'activations':>12}")
    print(header)
    print("-" * len(header))
    for row in cost.stages:
        print(f"{row.name:<8} {row.resolution:>7} {row.channels:>8} {row.macs:>15,} "
              f"{row.params:>12,} {row.activations:>12,}")
    print("-" * len(header))
    print(f"{'total':<25} {cost.macs:>15,} {cost.params:>12,} {cost.activations:>12,}")
    print(f"= {format_count(cost.macs)} MACs, {format_count(cost.params)} parameters, "
          f"{format_count(cost.activations)} activations (conv and linear outputs per image)")
    if latency:
        print(f"latency: {latency.value(cfg.latency.statistic):.2f} ms {cfg.latency.statistic} "
              f"(median {latency.median_ms:.2f} ms, IQR {latency.iqr_ms:.2f} ms) with "
              f"{latency.runtime} on {processor_name()}, batch {cfg.latency.batch}, "
              f"{latency.dtype} {latency.layout}, {latency.threads} thread(s), "
              f"{latency.repeats} runs")
        if latency.busy:
            print(busy_message(latency.spread, latency.other_cores))
