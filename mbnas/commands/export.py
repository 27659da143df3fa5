"""``python -m mbnas export run=runs/<name>``: write the best architecture (and Pareto set)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from mbnas.search import ExportConfig, export_run


@dataclass
class Config(ExportConfig):
    """The run folder, and what to export besides best.yaml (best.pt needs the supernet)."""

    run: str = MISSING


def run(cfg: Config) -> None:
    export_run(cfg.run, cfg)
