"""How the search estimates a candidate's latency: measured, from a lookup table, or not at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mbnas.arch import ArchSpec
from mbnas.cost.latency import LatencyConfig, busy_message, measure_config
from mbnas.space import SearchSpace
from mbnas.space_latency import load_table_for

LATENCY_MODES = ("measured", "table", "none")


@dataclass
class LatencyEstimateConfig(LatencyConfig):
    """Schema of the ``latency`` config group: the estimate's mode and measurement settings."""

    mode: str = "measured"  # measured | table | none
    warmup: int = 3
    repeats: int = 30  # fewer: a small network's minimum lands a few % high (BENCHMARKS.md)
    table: str | None = None  # mode=table: a table built by `python -m mbnas latency build`


def latency_estimator(cfg: LatencyEstimateConfig, space: SearchSpace
                      ) -> Callable[[ArchSpec], float] | None:
    """A function giving a candidate's latency in ms; ``None`` for ``mode=none``."""
    if cfg.mode == "none":
        return None
    if cfg.mode == "table":
        table = load_table_for(space, cfg.table)
        print(f"latency: table {table.source} ({table.describe()})", flush=True)
        return table.predict
    cfg.settings()  # the runtime is installed: fail now, not at the first candidate
    return MeasuredLatency(cfg).measure


class MeasuredLatency:
    """Measures candidates; says once per run when the repeats show a busy machine."""

    def __init__(self, cfg: LatencyConfig):
        self.cfg, self.warned = cfg, False

    def measure(self, arch: ArchSpec) -> float:
        """The candidate's latency in ms (a warning the first time it is noisy)."""
        latency = measure_config(arch, self.cfg)
        if latency.busy and not self.warned:
            self.warned = True
            print(busy_message(latency), flush=True)
        return latency.value(self.cfg.statistic)

