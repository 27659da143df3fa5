"""``python -m mbnas export run=runs/<name>``: write the best architecture (and Pareto set)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from mbnas.errors import ConfigError
from mbnas.evaluate import make_evaluator
from mbnas.runner import PreparedSearch, export_best, load_run, search_budget, search_space
from mbnas.train import resolve_device


@dataclass
class Config:
    run: str = MISSING
    weights: bool = True  # inherited supernet weights as best.pt (supernet evaluator only)
    onnx: bool = False
    torchscript: bool = False


def run(cfg: Config) -> None:
    search_cfg, study = load_run(cfg.run)
    export = search_cfg.export
    export.weights, export.onnx, export.torchscript = cfg.weights, cfg.onnx, cfg.torchscript
    space, budget, run_dir = search_space(search_cfg), search_budget(search_cfg), Path(cfg.run)
    evaluator = None
    if cfg.weights and search_cfg.evaluator.name == "supernet":
        if not (run_dir / "supernet.pt").is_file():
            raise ConfigError(str(run_dir / "supernet.pt"), "missing: the weights are derived "
                              "from the run's warmed-up supernet", "pass weights=false")
        evaluator = make_evaluator(search_cfg.evaluator, search_cfg.data,
                                   resolve_device(search_cfg.device), search_cfg.seed, space,
                                   budget)
        evaluator.prepare(run_dir)  # resumes the finished warm-up: loads its weights
    export_best(study, PreparedSearch(search_cfg, space, budget, run_dir, None), evaluator)
