"""``python -m mbnas latency space=<name>``: build a space's latency table and report its error."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass

from tqdm import tqdm

from mbnas.cost.latency import measure
from mbnas.cost.latency_table import LatencyTable
from mbnas.space import load_space
from mbnas.validation import check_choice, check_int


@dataclass
class Config:
    space: str | None = None
    members: int = 20
    calibrate: int = 5
    check: int = 10
    threads: int = 1
    warmup: int = 5
    repeats: int = 20
    seed: int = 0
    format: str = "table"


def run(cfg: Config) -> None:
    check_choice(cfg.format, "format", ("table", "json"))
    for key in ("members", "calibrate", "check"):
        check_int(getattr(cfg, key), key, minimum=0)
    space = load_space(cfg.space)
    rng = random.Random(cfg.seed)
    table = LatencyTable.for_space(space.name, space.resolution, cfg.threads, warmup=cfg.warmup,
                                   repeats=cfg.repeats)
    members = [space.smallest(), space.largest()]
    members += [space.sample_random(rng) for _ in range(cfg.members)]
    missing = table.missing(members)
    for entry in tqdm(missing, desc=f"measuring blocks of {space.name}", unit="block",
                      disable=not missing):
        table.measure([entry])
    table.save()

    def whole(arch) -> float:
        return measure(arch, threads=cfg.threads, warmup=cfg.warmup,
                       repeats=cfg.repeats).median_ms

    calibration = [space.sample_random(rng) for _ in range(cfg.calibrate)]
    table.calibrate((arch, whole(arch)) for arch in tqdm(calibration, desc="calibrating"))
    checks = []
    for arch in tqdm([space.sample_random(rng) for _ in range(cfg.check)], desc="checking"):
        measured, predicted = whole(arch), table.predict(arch)
        checks.append({"measured_ms": measured, "predicted_ms": predicted,
                       "error": (predicted - measured) / measured})
    errors = [abs(c["error"]) for c in checks]
    result = {"space": space.name, "resolution": space.resolution, "table": str(table.path),
              "entries": len(table.entries), "scale": table.scale, "offset": table.offset,
              "checks": checks,
              "median_error": statistics.median(errors) if errors else None,
              "max_error": max(errors) if errors else None}
    if cfg.format == "json":
        print(json.dumps(result))
        return
    print(f"latency table of space {space.name!r} at {space.resolution}px: {table.path}")
    print(f"{len(table.entries)} entries; whole network = {table.offset:.3f} ms + "
          f"{table.scale:.3f} × Σ blocks")
    for c in checks:
        print(f"  measured {c['measured_ms']:8.2f} ms  predicted {c['predicted_ms']:8.2f} ms  "
              f"error {c['error']:+.1%}")
    if errors:
        print(f"median |error| {result['median_error']:.1%}, max {result['max_error']:.1%} "
              f"over {len(errors)} random members")
