"""``python -m mbnas evaluate run=runs/<name> data=... data.split=test``: score a network."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mbnas.config import OutputFormat
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.train import resolve_device
from mbnas.trainer import evaluate_run


@dataclass
class Config:
    run: str | None = None  # runs/<name> of a finished train run (or a search run's best.pt)
    format: OutputFormat = OutputFormat.table
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)


def run(cfg: Config) -> None:
    if not cfg.run:
        raise ConfigError("run", "not given", "use run=runs/<name> of a finished `train` run")
    arch, result = evaluate_run(cfg.run, cfg.data, resolve_device(cfg.device))
    if cfg.format is OutputFormat.json:
        print(json.dumps({"run": cfg.run, "arch": arch.name, "data": cfg.data.name,
                          "split": cfg.data.split, "resolution": cfg.data.resolution,
                          **result.to_dict()}))
        return
    print(f"{arch.name} ({cfg.run}) on {cfg.data.name} {cfg.data.split} at "
          f"{cfg.data.resolution}px: top-1 {100 * result.accuracy:.2f}%, loss {result.loss:.4f}, "
          f"{result.samples} images")
