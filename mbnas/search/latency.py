"""How the search estimates a candidate's latency: measured, from a lookup table, or not at all."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from mbnas.arch import ArchSpec
from mbnas.cost.device_script import OtherLoad, is_busy
from mbnas.cost.latency import LatencyConfig, busy_message, measure_config
from mbnas.space import SearchSpace
from mbnas.space_latency import load_table_for

LATENCY_MODES = ("measured", "table", "none")
SPREAD_WINDOW = 20  # the latest candidates whose median spread says the latencies are noisy
MIN_CANDIDATES = 5  # candidates measured before their spread is judged


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
    """Measures candidates; says once per run when the machine is busy: the latest candidates'
    repeats vary (their median spread, as a table judges its entries: one 32 px candidate's 30
    repeats, some 40 ms, varied by 54% in a search on the idle VM), or other processes keep part
    of the cores busy over the candidates' timings so far (one candidate's are often too short
    to tell)."""

    def __init__(self, cfg: LatencyConfig):
        self.cfg, self.warned, self.others = cfg, False, OtherLoad()
        self.spreads: list[float] = []

    def measure(self, arch: ArchSpec) -> float:
        """The candidate's latency in ms (a warning the first time the machine is busy)."""
        with self.others:
            latency = measure_config(arch, self.cfg)
        self.spreads = [*self.spreads[1 - SPREAD_WINDOW:], latency.spread]
        if not self.warned and self.busy:
            self.warned = True
            print(busy_message(statistics.median(self.spreads), self.others.cores), flush=True)
        return latency.value(self.cfg.statistic)

    @property
    def busy(self) -> bool:
        """Whether the latest candidates' repeats varied, or others kept the cores busy."""
        judged = self.spreads if len(self.spreads) >= MIN_CANDIDATES else []
        return is_busy(judged, self.others.cores)
