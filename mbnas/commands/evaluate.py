"""``python -m mbnas evaluate run=runs/<name> [data.split=test]``: score a run's network on the
data it was trained on (or on ``data=...``), saying which data that was."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mbnas.config import OutputFormat
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.train import resolve_device
from mbnas.trainer import evaluate_run, network_files, run_data


@dataclass
class Config:
    run: str | None = None  # runs/<name> of a finished train run (or a search run's best.pt)
    format: OutputFormat = OutputFormat.table
    device: str = "auto"
    # Changes to the run's own data settings (None: keep the run's); data=<choice> sets all.
    data: dict[str, Any] = field(default_factory=dict)


def describe_data(data: DataConfig) -> str:
    """``synthetic test split (...)``: which images were scored, synthetic ones called so."""
    where = (f"generated from data.seed={data.seed}, not a real dataset"
             if data.name == "synthetic" else f"from {data.root}")
    return f"{data.name} {data.split} split at {data.resolution}px ({where})"


def run(cfg: Config) -> None:
    if not cfg.run:
        raise ConfigError("run", "not given", "use run=runs/<name> of a finished `train` run")
    data, own = run_data(cfg.run, cfg.data)
    arch, result = evaluate_run(cfg.run, data, resolve_device(cfg.device))
    arch_path = network_files(cfg.run)[0]
    if cfg.format is OutputFormat.json:
        print(json.dumps({"run": cfg.run, "arch": arch.name, "data": data.name,
                          "split": data.split, "resolution": data.resolution,
                          "data_from_run": own, **result.to_dict()}))
        return
    source = "the run's own data" if own else "no config.yaml in the run: data.* as given"
    print(f"data: {describe_data(data)}; {source}")
    print(f"{arch.name} ({cfg.run}): top-1 {100 * result.accuracy:.2f}%, loss "
          f"{result.loss:.4f}, {result.samples} images")
    print(f"next: python -m mbnas cost arch={arch_path}   # its MACs, parameters, "
          "latency")

