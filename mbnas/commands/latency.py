"""``python -m mbnas latency space=<name>``: build a space's latency table and report its error."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mbnas.config import OutputFormat
from mbnas.cost.latency import LatencyConfig
from mbnas.space import load_space
from mbnas.space_latency import TableSample, build_table
from mbnas.validation import check_int


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
    format: OutputFormat = OutputFormat.table


def run(cfg: Config) -> None:
    for key in ("members", "calibrate", "check"):
        check_int(getattr(cfg, key), key, minimum=0)
    result = build_table(load_space(cfg.space),
                         TableSample(cfg.members, cfg.calibrate, cfg.check, cfg.seed),
                         LatencyConfig(cfg.threads, cfg.warmup, cfg.repeats))
    if cfg.format is OutputFormat.json:
        print(json.dumps(result))
        return
    print(f"latency table of space {result['space']!r} at {result['resolution']}px: "
          f"{result['table']}")
    print(f"{result['entries']} entries; whole network = {result['offset']:.3f} ms + "
          f"{result['scale']:.3f} × Σ blocks")
    for c in result["checks"]:
        print(f"  measured {c['measured_ms']:8.2f} ms  predicted {c['predicted_ms']:8.2f} ms  "
              f"error {c['error']:+.1%}")
    if result["checks"]:
        print(f"median |error| {result['median_error']:.1%}, max {result['max_error']:.1%} "
              f"over {len(result['checks'])} random members")
