"""``python -m mbnas evaluate run=runs/<name> data=... data.split=test``: score a network."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mbnas.architectures import load_arch
from mbnas.commands.train import find_network, load_weights
from mbnas.data import DataConfig, dataset_num_classes, make_loader
from mbnas.errors import ConfigError
from mbnas.nn import build
from mbnas.train import evaluate, resolve_device
from mbnas.validation import check_choice


@dataclass
class Config:
    run: str | None = None  # runs/<name> of a finished train run (or a search run's best.pt)
    format: str = "table"
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)


def run(cfg: Config) -> None:
    check_choice(cfg.format, "format", ("table", "json"))
    if not cfg.run:
        raise ConfigError("run", "not given", "use run=runs/<name> of a finished `train` run")
    arch_path, weights = find_network(cfg.run)
    arch = load_arch(arch_path)
    classes = dataset_num_classes(cfg.data)
    if classes != arch.num_classes:
        raise ConfigError("data", f"data={cfg.data.name} has {classes} classes but {cfg.run} "
                          f"was trained for {arch.num_classes}", "pass the data= settings the "
                          "network was trained with")
    model = build(arch)
    load_weights(model, weights)
    model.to(resolve_device(cfg.device))
    result = evaluate(model, make_loader(cfg.data, cfg.data.split, shuffle=False))
    if cfg.format == "json":
        print(json.dumps({"run": cfg.run, "arch": arch.name, "data": cfg.data.name,
                          "split": cfg.data.split, "resolution": cfg.data.resolution,
                          **result.to_dict()}))
        return
    print(f"{arch.name} ({cfg.run}) on {cfg.data.name} {cfg.data.split} at "
          f"{cfg.data.resolution}px: top-1 {100 * result.accuracy:.2f}%, loss {result.loss:.4f}, "
          f"{result.samples} images")
