"""A search run: its folder, resuming it, budget checks before training, the final export.

Everything of a run lives in ``runs/<name>/``: ``config.yaml``, ``study.db`` (the Optuna
storage), ``supernet.pt``, ``tb/`` (TensorBoard), ``best.yaml`` (+ ``best.pt`` weights) and, for
multi-objective runs, ``pareto/``. Running the same command again with the same name resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import OmegaConf

from mbnas.arch import ArchSpec
from mbnas.budget import Budget, check_reachable
from mbnas.cost.latency import measure
from mbnas.cost.latency_table import LatencyTable
from mbnas.data import DataConfig, dataset_num_classes
from mbnas.errors import ConfigError
from mbnas.evaluate import Evaluator, EvaluatorConfig, make_evaluator
from mbnas.export import export_arch, export_trial
from mbnas.locking import file_lock
from mbnas.search import (
    OBJECTIVES,
    SAMPLERS,
    Objective,
    Progress,
    StopAtTotal,
    best_trials,
    default_run_name,
    enqueue_seeds,
    log_study,
    make_sampler,
    open_study,
    smallest_costs,
    storage_url,
    study_directions,
    trial_arch,
    trials_in,
)
from mbnas.space import SearchSpace, load_space
from mbnas.tensorboard import StudyLog
from mbnas.train import resolve_device, seed_everything
from mbnas.validation import check_choice, check_int

LATENCY_MODES = ("measured", "table", "none")


@dataclass
class LatencyConfig:
    """Schema of the ``latency`` config group."""

    mode: str = "measured"  # measured | table | none
    threads: int = 1
    warmup: int = 3
    repeats: int = 10


@dataclass
class ExportConfig:
    weights: bool = True  # inherited (supernet) weights of the best architecture as best.pt
    onnx: bool = False
    torchscript: bool = False


@dataclass
class SearchConfig:
    """Schema of ``conf/search.yaml``."""

    name: str | None = None
    runs_dir: str = "runs"
    space: str | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    objective: str = "accuracy"
    sampler: str = "tpe"
    startup_trials: int = 10
    n_trials: int = 30
    max_pruned_trials: int = 2000
    seed: int = 0
    seeds: list[str] = field(default_factory=list)
    storage: str | None = None
    device: str = "auto"
    threads: int | None = None
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def latency_estimator(cfg: LatencyConfig, space: SearchSpace
                      ) -> Callable[[ArchSpec], float] | None:
    check_choice(cfg.mode, "latency.mode", LATENCY_MODES)
    if cfg.mode == "none":
        return None
    if cfg.mode == "table":
        table = LatencyTable.for_space(space.name, space.resolution, cfg.threads)
        return table.predict
    return lambda arch: measure(arch, threads=cfg.threads, warmup=cfg.warmup,
                                repeats=cfg.repeats).median_ms


def search_budget(cfg: Any) -> Budget:
    """The run's budgets, parsed from ``budget.*`` (empty: unconstrained)."""
    return Budget.from_config(cfg.budget)


def search_space(cfg: Any) -> SearchSpace:
    """The run's space, its classifier sized for the data: budgets cover the deployed network."""
    return load_space(cfg.space).replace(num_classes=dataset_num_classes(cfg.data))


@dataclass
class PreparedSearch:
    """Everything checked and set up before the first trial trains."""

    cfg: Any
    space: SearchSpace
    budget: Budget
    run_dir: Path
    estimate_latency: Callable[[ArchSpec], float] | None


def prepare(cfg: Any) -> PreparedSearch:
    """Check every input and budget before any training; bad input raises ConfigError."""
    budget = search_budget(cfg)
    study_directions(cfg.objective)
    check_choice(cfg.sampler, "sampler", SAMPLERS)
    check_int(cfg.n_trials, "n_trials", minimum=1)
    space = search_space(cfg)
    estimate = latency_estimator(cfg.latency, space)
    if estimate is None and (budget.needs_latency or OBJECTIVES[cfg.objective] == "latency_ms"):
        raise ConfigError("latency.mode", "is none, but a latency budget or objective needs it",
                          "use latency=measured or latency=table")
    check_reachable(budget, smallest_costs(space, estimate, budget), space.name)
    name = cfg.name or default_run_name(space, budget, cfg.objective)
    run_dir = Path(cfg.runs_dir) / name
    return PreparedSearch(cfg, space, budget, run_dir, estimate)


def run_search(cfg: Any) -> optuna.Study:
    """Run (or resume) the search ``cfg`` describes, then export its best architecture."""
    prepared = prepare(cfg)
    run_dir = prepared.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    # mbnas prints its own progress; Optuna's warnings would repeat an interrupted trial's
    # traceback, and real errors still propagate.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    signature = {"space": prepared.space.name, "budget": prepared.budget.describe(),
                 "objective": cfg.objective, "resolution": prepared.space.resolution}
    # Workers starting together would race to create the storage's tables: take turns.
    with file_lock(run_dir / "storage.lock"):
        study = open_study(run_dir.name, storage_url(cfg.storage, run_dir),
                           make_sampler(cfg.sampler, cfg.seed, cfg.startup_trials),
                           study_directions(cfg.objective), signature)
    # Written once the study accepted the settings: a refused resume leaves the old config.
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    remaining = cfg.n_trials - len(trials_in(study, optuna.trial.TrialState.COMPLETE))
    print(f"mbnas search: {run_dir} | space {prepared.space.name} | {prepared.budget.describe()}"
          f" | objective {cfg.objective} | {max(remaining, 0)} of {cfg.n_trials} trials to go",
          flush=True)
    if remaining > 0:
        for name in enqueue_seeds(study, prepared.space, list(cfg.seeds)):
            print(f"seed {name!r} is not a member of space {prepared.space.name!r}; skipped")
        evaluator = make_evaluator(cfg.evaluator, cfg.data, resolve_device(cfg.device),
                                   cfg.seed, prepared.space, prepared.budget)
        evaluator.prepare(run_dir)
        optimize(study, prepared, evaluator, remaining)
    inherits = remaining > 0 and cfg.evaluator.name == "supernet"
    export_best(study, prepared, evaluator if inherits else None)
    return study


def optimize(study: optuna.Study, prepared: PreparedSearch, evaluator: Evaluator,
             remaining: int) -> None:
    cfg = prepared.cfg
    log_dir = prepared.run_dir / "tb"
    study_log = StudyLog(log_dir)
    cost_key = OBJECTIVES[cfg.objective] or "macs"
    objective = Objective(prepared.space, prepared.budget, cfg.objective, evaluator,
                          prepared.estimate_latency, log_dir, study_log)
    progress = Progress(cfg.n_trials)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        progress(study, trial)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            points = [t.user_attrs["accuracy"] for t in best_trials(study)]
            study_log.trial(trial.number, trial.user_attrs["accuracy"], max(points))
            if trial.number % 10 == 0:
                log_study(study, study_log, cost_key)

    # Counted over every worker sharing the study: n_trials is the total of trained candidates.
    stop = StopAtTotal(cfg.n_trials, cfg.max_pruned_trials)
    study.optimize(objective, callbacks=[after_trial, stop], gc_after_trial=True)
    if stop.reason:
        print(stop.reason, flush=True)
    log_study(study, study_log, cost_key)
    study_log.close()


def export_best(study: optuna.Study, prepared: PreparedSearch,
                evaluator: Evaluator | None) -> list[Path]:
    """Write best.yaml (and pareto/ for multi-objective runs), plus requested files."""
    best = best_trials(study)
    if not best:
        print("no trial finished within budget: nothing to export", flush=True)
        return []
    cfg, run_name = prepared.cfg.export, prepared.run_dir.name
    arch = trial_arch(best[0]).replace(name=f"{run_name}-trial{best[0].number}")
    model = evaluator.model_for(arch) if (evaluator and cfg.weights) else None
    paths = export_trial(arch, prepared.run_dir / "best", trial_summary(best[0]), model,
                         onnx=cfg.onnx, torchscript=cfg.torchscript)
    if len(study.directions) > 1:
        for trial in best:
            member = trial_arch(trial).replace(name=f"{run_name}-trial{trial.number}")
            paths.append(export_arch(member, prepared.run_dir / "pareto" /
                                     f"trial-{trial.number:04d}.yaml", trial_summary(trial)))
    print(f"best: trial #{best[0].number}, accuracy {best[0].user_attrs['accuracy']:.4f}, "
          f"{best[0].user_attrs['macs'] / 1e6:.1f}M MACs -> {paths[0]}", flush=True)
    return paths


def trial_summary(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {"trial": trial.number, "accuracy": attrs.get("accuracy"), "macs": attrs.get("macs"),
            "params": attrs.get("params"), "latency_ms": attrs.get("latency_ms")}


def load_run(run: str | Path) -> tuple[Any, optuna.Study]:
    """The resolved config and Optuna study of an existing run folder."""
    run_dir = Path(run)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError("run", f"{run_dir} holds no search (no config.yaml)",
                          "give the folder of a search, e.g. run=runs/<name>")
    cfg = OmegaConf.merge(OmegaConf.structured(SearchConfig), OmegaConf.load(config_path))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=run_dir.name,
                                  storage=storage_url(cfg.storage, run_dir))
    except KeyError:
        raise ConfigError("run", f"the storage of {run_dir} holds no study {run_dir.name!r}",
                          "check storage= in its config.yaml") from None
    return cfg, study
