"""``python -m mbnas report run=runs/<name>``: top trials and the Pareto set of a search."""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import MISSING

from mbnas.config import OutputFormat
from mbnas.search import format_report, report_run


@dataclass
class Config:
    run: str = MISSING
    format: OutputFormat = OutputFormat.table
    top: int = 10


def run(cfg: Config) -> None:
    result = report_run(cfg.run, cfg.top)
    if cfg.format is OutputFormat.json:
        print(json.dumps(result))
        return
    print(format_report(result))
    print(f"next: python -m mbnas export run={cfg.run}   # best.yaml, best.pt (pt2=true, onnx=true)"
          f"\n      python -m mbnas train init={cfg.run} name=mine   # train the winner")
