"""``python -m mbnas export run=runs/<name>`` (a search's best, weights included) or
``python -m mbnas export arch=<name or YAML> out=<folder>`` (an architecture of its own)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mbnas.architectures import load_arch
from mbnas.config import OutputFormat
from mbnas.errors import ConfigError
from mbnas.export import Exported, export_standalone
from mbnas.search import ExportConfig, export_run


@dataclass
class Config(ExportConfig):
    """A run folder, or an architecture and an output folder; what to export besides the YAML."""

    run: str | None = None
    arch: str | None = None
    out: str | None = None
    format: OutputFormat = OutputFormat.table


def export(cfg: Config) -> Exported | None:
    """Export what ``cfg`` names: a run's best, or a standalone architecture."""
    if (cfg.run is None) == (cfg.arch is None):
        raise ConfigError("run", "give exactly one of run= and arch=",
                          "use run=runs/<name> or arch=<name or YAML> out=<folder>")
    if cfg.run is not None:
        return export_run(cfg.run, cfg)
    if cfg.out is None:
        raise ConfigError("out", "not given", "use out=<folder> for the exported files")
    return export_standalone(load_arch(cfg.arch), cfg.out, cfg.request())


def run(cfg: Config) -> int:
    exported = export(cfg)
    if exported is None:
        return 1
    if cfg.format is OutputFormat.json:
        print(json.dumps(exported.as_dict()))
    else:
        print(exported.usage(cfg.run))
    return 0
