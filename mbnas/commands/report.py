"""``python -m mbnas report run=runs/<name>``: top trials and the Pareto set of a search."""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import MISSING

from mbnas.report import format_report, report
from mbnas.runner import load_run
from mbnas.validation import check_choice


@dataclass
class Config:
    run: str = MISSING
    format: str = "table"  # table | json
    top: int = 10


def run(cfg: Config) -> None:
    check_choice(cfg.format, "format", ("table", "json"))
    search_cfg, study = load_run(cfg.run)
    result = report(study, search_cfg.objective, cfg.top)
    print(json.dumps(result) if cfg.format == "json" else format_report(result))
