"""How the search estimates a candidate's latency: measured, from a lookup table, or not at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mbnas.arch import ArchSpec
from mbnas.cost.latency import LatencyConfig, measure
from mbnas.cost.latency_table import LatencyTable
from mbnas.space import SearchSpace

LATENCY_MODES = ("measured", "table", "none")


@dataclass
class LatencyEstimateConfig(LatencyConfig):
    """Schema of the ``latency`` config group: the estimate's mode and measurement settings."""

    mode: str = "measured"  # measured | table | none
    warmup: int = 3
    repeats: int = 10


def latency_estimator(cfg: LatencyEstimateConfig, space: SearchSpace
                      ) -> Callable[[ArchSpec], float] | None:
    """A function giving a candidate's batch-1 latency in ms; ``None`` for ``mode=none``."""
    if cfg.mode == "none":
        return None
    if cfg.mode == "table":
        return LatencyTable.for_space(space.name, space.resolution, cfg.threads).predict
    return lambda arch: measure(arch, threads=cfg.threads, warmup=cfg.warmup,
                                repeats=cfg.repeats).median_ms
