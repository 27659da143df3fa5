"""A search space's latency table: measure its members' blocks, fit the whole-network line,
and report the table's error on members it was not fitted on."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from mbnas.arch import ArchSpec
from mbnas.cost.latency import LatencyConfig, measure
from mbnas.cost.latency_table import LatencyTable
from mbnas.space import SearchSpace


@dataclass(frozen=True)
class TableSample:
    """How many random members feed each step: block entries, the calibration, the check."""

    members: int = 20
    calibrate: int = 5
    check: int = 10
    seed: int = 0


def build_table(space: SearchSpace, sample: TableSample, latency: LatencyConfig
                ) -> dict[str, Any]:
    """Measure, calibrate and check ``space``'s cached table; its path, fit and errors."""
    rng = random.Random(sample.seed)
    table = LatencyTable.for_space(space.name, space.resolution, latency.threads,
                                   warmup=latency.warmup, repeats=latency.repeats)
    members = [space.smallest(), space.largest()]
    members += [space.sample_random(rng) for _ in range(sample.members)]
    missing = table.missing(members)
    for entry in tqdm(missing, desc=f"measuring blocks of {space.name}", unit="block",
                      disable=not missing):
        table.measure([entry])
    table.save()

    def whole(arch: ArchSpec) -> float:
        return measure(arch, threads=latency.threads, warmup=latency.warmup,
                       repeats=latency.repeats).median_ms

    calibration = [space.sample_random(rng) for _ in range(sample.calibrate)]
    table.calibrate((arch, whole(arch)) for arch in tqdm(calibration, desc="calibrating"))
    checks = []
    for arch in tqdm([space.sample_random(rng) for _ in range(sample.check)], desc="checking"):
        measured, predicted = whole(arch), table.predict(arch)
        checks.append({"measured_ms": measured, "predicted_ms": predicted,
                       "error": (predicted - measured) / measured})
    errors = [abs(c["error"]) for c in checks]
    return {"space": space.name, "resolution": space.resolution, "table": str(table.path),
            "entries": len(table.entries), "scale": table.scale, "offset": table.offset,
            "checks": checks,
            "median_error": statistics.median(errors) if errors else None,
            "max_error": max(errors) if errors else None}
