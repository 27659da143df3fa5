"""``python -m mbnas report run=runs/<name>``: top trials and the Pareto set of a search."""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import MISSING

from mbnas.config import OutputFormat
from mbnas.report import format_report, report
from mbnas.runner import load_run


@dataclass
class Config:
    run: str = MISSING
    format: OutputFormat = OutputFormat.table
    top: int = 10


def run(cfg: Config) -> None:
    search_cfg, study = load_run(cfg.run)
    result = report(study, search_cfg.objective, cfg.top)
    print(json.dumps(result) if cfg.format is OutputFormat.json else format_report(result))
