"""A search run: checked before any training, started or resumed in its run folder, exported.

Everything of a run lives in its :class:`~mbnas.run_folder.RunFolder`; running the same command
again with the same name resumes it, and any number of workers may share it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from mbnas.arch import ArchSpec
from mbnas.budget import Budget, check_reachable
from mbnas.config import merge_schema
from mbnas.cost import count
from mbnas.cost.latency import measure_config
from mbnas.data import dataset_num_classes
from mbnas.distributed import process_group
from mbnas.distributed import setup as setup_distributed
from mbnas.errors import ConfigError, Diverged
from mbnas.evaluators import (
    EvaluationContext,
    Evaluator,
    EvaluatorConfig,
    evaluator_class,
    evaluator_config,
    make_evaluator,
)
from mbnas.export import Exported, export_arch, export_trial
from mbnas.locking import file_lock
from mbnas.machine_load import busy_note, machine_load
from mbnas.precision import resolve_precision
from mbnas.run_folder import RunFolder
from mbnas.search.callbacks import Progress, StopAtTotal, StudySummaries
from mbnas.search.config import ExportConfig, SearchConfig, check_search_config
from mbnas.search.data_parallel import Lead, check_data_parallel, follow
from mbnas.search.exploration import ExploreAfterRepeats
from mbnas.search.forecast import Forecast
from mbnas.search.latency import latency_estimator
from mbnas.search.objective import OBJECTIVES, Objective, cost_metric
from mbnas.search.plan import Estimate, estimate, no_budget_warning, plan_lines, threads_hint
from mbnas.search.pruning import check_pruner, make_pruner, reporting_to
from mbnas.search.slots import TrialSlots, run_trials
from mbnas.search.storage import display, fail_stale_trials, masked, open_storage
from mbnas.search.study import check_study_home, enqueue_seeds, make_sampler, open_study
from mbnas.search.summary import summary_lines
from mbnas.search.timing import measure
from mbnas.search.trials import COMPLETE, best_trials, count_scored, count_trials
from mbnas.space import SearchSpace, load_space
from mbnas.supernet.training import warmup_losses
from mbnas.tensorboard import StudyLog
from mbnas.tensorboard import log_warmup as log_warmup_losses
from mbnas.train import resolve_device, seed_everything


@dataclass(frozen=True)
class SearchRun:
    """A search checked and set up before its first trial."""

    cfg: SearchConfig
    space: SearchSpace
    budget: Budget
    evaluator: EvaluatorConfig
    folder: RunFolder
    estimate_latency: Callable[[ArchSpec], float] | None

    def settings(self) -> dict[str, Any]:
        """The settings as run, the evaluator's with its defaults, the run's (and study's) name,
        the storage URL's password masked: the run's config.yaml."""
        return {**dataclasses.asdict(self.cfg), "name": self.folder.name,
                "storage": masked(self.cfg.storage),
                "evaluator": dataclasses.asdict(self.evaluator)}

    def signature(self) -> dict[str, Any]:
        """What a resumed search must keep: everything that changes a trial's result: space (its
        name and content), budget, objective, resolution, preset, seed, what scores a trial
        (the evaluator's and the data's settings) and what its latency is."""
        data = {key: value for key, value in dataclasses.asdict(self.cfg.data).items()
                if key != "workers"}
        latency = {key: value for key, value in dataclasses.asdict(self.cfg.latency).items()
                   if key not in ("warmup", "repeats")}  # precision, not meaning
        return {"space": self.space.name, "space_digest": space_digest(self.space),
                "budget": self.budget.describe(), "objective": self.cfg.objective,
                "resolution": self.space.resolution, "preset": self.cfg.preset,
                "seed": self.cfg.seed, "evaluator": dataclasses.asdict(self.evaluator),
                "data": data, "latency": latency}


def space_digest(space: SearchSpace) -> str:
    """A short hash of the space's content: an edited space YAML keeps its name, not this.
    Its evaluator settings are left out: the signature holds the evaluator's settings in use,
    and digests stay those of searches started before spaces could carry any."""
    content = {key: value for key, value in dataclasses.asdict(space).items()
               if key != "evaluator_settings"}
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_run_name(space: SearchSpace, budget: Budget, objective: str,
                     preset: str = "default") -> str:
    """``<space>-<budget>[-<objective>][-<preset>]``, e.g. ``default-macs300M`` or
    ``default-macs300M-smoke``: a trial run never shares the real run's folder."""
    suffix = "" if objective == "accuracy" else f"-{objective}"
    if preset != "default":
        suffix += f"-{preset}"
    return f"{space.name}-{budget.slug()}{suffix}"


def search_space(cfg: SearchConfig) -> SearchSpace:
    """The run's space, its classifier sized for the data: budgets cover the deployed network."""
    return load_space(cfg.space).replace(num_classes=dataset_num_classes(cfg.data))


def smallest_costs(space: SearchSpace, estimate_latency: Callable[[ArchSpec], float] | None,
                   budget: Budget) -> dict[str, float | None]:
    """Costs of the space's smallest member: the floor any budget must clear."""
    smallest = space.smallest()
    cost = count(smallest)
    latency = estimate_latency(smallest) if (estimate_latency and budget.needs_latency) else None
    return {"macs": cost.macs, "params": cost.params, "latency_ms": latency}


def evaluation_context(cfg: SearchConfig, space: SearchSpace, budget: Budget,
                       on_warmup_step: Callable[[int], None] | None = None
                       ) -> EvaluationContext:
    """What the run's evaluator gets: its data, device (this rank's GPU under torchrun), seed,
    space, budget, precision, and what to call after each warm-up step."""
    _, device = setup_distributed(cfg.device)
    return EvaluationContext(cfg.data, device, cfg.seed, space, budget,
                             resolve_precision(cfg.amp, cfg.channels_last, device,
                                               space.resolution),
                             on_warmup_step)


def prepare(cfg: SearchConfig) -> SearchRun:
    """Check every input and budget before any training; bad input raises ConfigError."""
    budget = Budget.from_config(cfg.budget)
    check_search_config(cfg)
    space = search_space(cfg)
    # Recorded as resolved (config.yaml says bf16, not auto), free to differ between workers.
    precision = resolve_precision(cfg.amp, cfg.channels_last, resolve_device(cfg.device),
                                  space.resolution)
    cfg = dataclasses.replace(cfg, amp=precision.amp, channels_last=precision.channels_last)
    evaluator = evaluator_config(cfg.evaluator)
    estimate = latency_estimator(cfg.latency, space)
    if estimate is None and (budget.needs_latency or OBJECTIVES[cfg.objective] == "latency_ms"):
        raise ConfigError("latency.mode", "is none, but a latency budget or objective needs it",
                          "use latency=measured or latency=table")
    check_reachable(budget, smallest_costs(space, estimate, budget), space.name)
    name = cfg.name or default_run_name(space, budget, cfg.objective, cfg.preset)
    return SearchRun(cfg, space, budget, evaluator, RunFolder(Path(cfg.runs_dir) / name),
                     estimate)


def run_search(cfg: SearchConfig) -> optuna.Study | None:
    """Run (or resume) the search ``cfg`` describes, then export its best architecture.

    Under torchrun rank 0 runs the search and returns its study; the other ranks train each
    candidate with it, data-parallel (:mod:`mbnas.search.data_parallel`), and return None.
    """
    run = prepare(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with process_group(cfg.device) as (world, _):
        check_data_parallel(run.evaluator.name, run.cfg.data.batch_size, world)
        check_pruner(run.cfg.pruner, run.cfg.objective, run.evaluator, world.size)
        if not world.main:
            follow(lambda: make_evaluator(run.evaluator,
                                          evaluation_context(run.cfg, run.space, run.budget)))
            return None
        with Lead() as lead:
            return lead_search(run, lead, world.size)


def lead_search(run: SearchRun, lead: Lead, processes: int = 1) -> optuna.Study:
    """:func:`run_search` on rank 0 (the only process in a world of one), announcing each call
    of the evaluator to the other ``processes - 1`` ranks through ``lead``."""
    cfg = run.cfg
    started = time.monotonic()
    folder = run.folder.create()
    # mbnas prints its own progress; Optuna's warnings would repeat an interrupted trial's
    # traceback, and real errors still propagate.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seed_everything(cfg.seed)
    # Workers starting together would race to create the storage's tables: take turns.
    # A study opens in seconds: a holder that takes minutes hangs, and the waiter says so.
    with file_lock(folder.storage_lock, "the study's storage", timeout_s=300):
        recorded = (folder.saved_settings() or {}).get("name")
        if recorded is None and (cfg.storage or not folder.study_db.is_file()):
            # Nothing recorded, and no database of the folder's own to look in (a shared
            # storage holds other runs' studies by design).
            recorded = folder.name
        storage = open_storage(cfg.storage, folder.study_db, cfg.heartbeat)
        check_study_home(folder.name, storage, recorded, str(folder.path))
        seeds: list[int] = []  # the seed of this process's sampler (see seed_offset)

        def sampler_for(offset: int) -> optuna.samplers.BaseSampler:
            seeds.append(cfg.seed + offset)
            return make_sampler(cfg.sampler, seeds[-1], cfg.startup_trials)

        study = open_study(folder.name, storage, sampler_for, cfg.objective, run.signature(),
                           make_pruner(cfg.pruner, run.evaluator))
    # Trials of workers that died are failed (and enqueued again) before counting what is left.
    fail_stale_trials(study)
    # Written once the study accepted the settings: a refused resume leaves the old config.
    folder.save_settings(run.settings())
    remaining = max(cfg.n_trials - count_scored(study)[0], 0)
    expected = print_plan(run, study, remaining)
    evaluator = None
    if remaining > 0:
        if processes > 1:
            print(f"each candidate is trained data-parallel by {processes} processes (global "
                  f"batch {cfg.data.batch_size}); rank 0 runs the study", flush=True)
        for name in enqueue_seeds(study, run.space, list(cfg.seeds)):
            print(f"seed {name!r} is not a member of space {run.space.name!r}; skipped")
        # Written between the warm-up's progress bars (tqdm.write), not through them.
        forecast = Forecast(expected, remaining, write=lambda line: tqdm.write(line,
                                                                               file=sys.stdout))
        evaluator = lead.build(lambda: make_evaluator(run.evaluator, evaluation_context(
            cfg, run.space, run.budget, forecast.warmup_step)))
        evaluator.prepare(folder)
        log_warmup(folder)
        optimize(study, run, evaluator, seeds[-1])
    score_name = evaluator_class(run.evaluator.name).score_name
    export_best(study, folder, cfg.export, evaluator, score_name)
    synthetic = cfg.data.name == "synthetic" and run.evaluator.reads_data
    print("\n".join(summary_lines(study, folder, time.monotonic() - started, synthetic,
                                  display(cfg.storage, folder.study_db), score_name)),
          flush=True)
    return study


def expected_time(run: SearchRun) -> Estimate:
    """The run's expected warm-up and per-candidate seconds, from its own work timed on this
    machine now (the warm-up steps its checkpoint holds are not timed again)."""
    cfg, settings = run.cfg, dataclasses.asdict(run.evaluator)
    done = len(warmup_losses(run.folder.supernet))
    latency = (functools.partial(measure_config, cfg=cfg.latency)
               if cfg.latency.mode == "measured" else run.estimate_latency)
    device = resolve_device(cfg.device)
    times = measure(run.space, run.budget, cfg.data, settings, device, cfg.seed,
                    warm_up=done < int(settings.get("warmup_steps", 0)),
                    measure_latency=latency,
                    precision=resolve_precision(cfg.amp, cfg.channels_last, device,
                                                run.space.resolution))
    return estimate(settings, cfg.data, times, steps_done=done)


def print_plan(run: SearchRun, study: optuna.Study, remaining: int) -> Estimate | None:
    """The plan and expected duration (returned; None with nothing to do), a warning when
    there is no budget, a note and hint when the machine is busy, and what each progress line
    means."""
    cfg = run.cfg
    print(f"mbnas search: {run.folder.path} ({'resuming, ' if len(study.trials) else ''}"
          f"{remaining} of {cfg.n_trials} trials to go)", flush=True)
    if cfg.storage:
        print(f"study {study.study_name!r} in {display(cfg.storage, run.folder.study_db)}, "
              "shared by every worker started with the same storage and name", flush=True)
    if remaining == 0:
        return None
    expected = expected_time(run)
    print("\n".join(plan_lines(cfg, dataclasses.asdict(run.evaluator), run.budget, run.space,
                               remaining, expected)), flush=True)
    if not run.budget.limits:
        print(no_budget_warning(run.space, expected.total(remaining)), flush=True)
    # The estimate was timed under the load now: the note gives it, and the idle one.
    now_minutes, load = expected.total(remaining) / 60, machine_load(torch.get_num_threads())
    idle_minutes = now_minutes / load.slowdown if load is not None else now_minutes
    for note in (busy_note(torch.get_num_threads(), idle_minutes), threads_hint(cfg.threads)):
        if note:
            print(note, flush=True)
    print("Each line below is one evaluated candidate: [trial k/N] counts evaluated candidates "
          "(all workers), Optuna #n is the study's trial number (over-budget and re-sampled "
          "candidates take numbers too).", flush=True)
    return expected


def log_warmup(folder: RunFolder) -> None:
    """The supernet warm-up's loss curve, from its checkpoint, in TensorBoard (once)."""
    losses = warmup_losses(folder.supernet)
    if losses:
        log_warmup_losses(folder.tensorboard, losses)


def optimize(study: optuna.Study, run: SearchRun, evaluator: Evaluator, seed: int) -> None:
    """Run trials until the study holds ``n_trials`` evaluated candidates, logging as it goes.
    ``seed``: this process's sampler's, which its explorations follow too (workers exploring
    alike would pick the same neighbours)."""
    cfg = run.cfg
    study_log = StudyLog(run.folder.tensorboard)
    reuse = cfg.duplicates == "reuse"
    objective = Objective(run.space, run.budget, cfg.objective, evaluator.evaluate,
                          run.estimate_latency, run.folder.tensorboard,
                          TrialSlots(cfg.n_trials, reuse_duplicates=reuse),
                          ExploreAfterRepeats(run.space, run.budget, seed, cfg.n_trials)
                          if reuse else None,
                          reporting_to if cfg.pruner != "none" else None)
    summaries = StudySummaries(study_log, cost_metric(cfg.objective), run.budget.limits)
    # Counted over every worker sharing the study: n_trials is the total of evaluated candidates
    # (the slots keep it exact; this ends each worker's loop once it is reached).
    stop = StopAtTotal(cfg.n_trials, cfg.max_pruned_trials)
    # A diverged candidate fails its trial (the reason is on it) and the search goes on.
    progress = Progress(cfg.n_trials, evaluator.score_name)
    run_trials(study, objective, [progress, summaries, stop], catch=(Diverged,),
               collect=run.evaluator.builds_networks)
    summaries.refresh(study)
    study_log.close()
    if stop.too_many_failures and not count_trials(study, COMPLETE):
        raise Diverged(f"{run.folder.path}: {stop.reason}; no candidate was trained: check "
                       "the evaluator.* settings (a lower evaluator.optim.lr, say) under "
                       "another name=")
    if stop.reason:
        print(stop.reason, flush=True)


def best_arch(record: Any, folder: RunFolder) -> ArchSpec:
    """A trial's architecture, named after its run and trial number."""
    return record.arch_spec().replace(name=f"{folder.name}-trial{record.number}")


def supernet_note(folder: RunFolder, keep: bool) -> str:
    """The supernet checkpoint's size, deleted first when ``keep`` is false."""
    if not folder.supernet.is_file():
        return ""
    size = folder.supernet.stat().st_size / 1e6
    if keep:
        return (f"; supernet.pt {size:.0f} MB kept for resume "
                "(export.keep_supernet=false deletes it)")
    folder.supernet.unlink()
    return f"; supernet.pt ({size:.0f} MB) deleted (keep_supernet=false)"


def export_best(study: optuna.Study, folder: RunFolder, export: ExportConfig,
                evaluator: Evaluator | None, score_name: str = "accuracy") -> Exported | None:
    """Write best.yaml (and pareto/ for multi-objective runs), plus requested files, as one set
    from one trial; None when no trial finished within budget."""
    best = best_trials(study)
    if not best:
        print("no trial finished within budget: nothing to export", flush=True)
        return None
    arch = best_arch(best[0], folder)
    inherits = evaluator is not None and evaluator.exports_weights and export.weights
    model = evaluator.model_for(arch) if inherits else None
    exported = export_trial(arch, folder.best, best[0].summary(), model, export.request())
    if len(study.directions) > 1:
        for record in best:
            exported.files.append(export_arch(
                best_arch(record, folder), folder.pareto / f"trial-{record.number:04d}.yaml",
                record.summary()))
    print(f"best: trial #{best[0].number}, {score_name} {best[0].accuracy:.4f}, "
          f"{best[0].macs / 1e6:.1f}M MACs{supernet_note(folder, export.keep_supernet)}",
          flush=True)
    return exported


def load_run(path: str | Path) -> tuple[SearchConfig, optuna.Study]:
    """The settings and Optuna study of an existing search run folder."""
    folder = RunFolder(Path(path))
    if not folder.config.is_file():
        raise ConfigError("run", f"{folder.path} holds no search (no config.yaml)",
                          "give the folder of a search, e.g. run=runs/<name>")
    cfg = OmegaConf.to_object(merge_schema(SearchConfig, OmegaConf.load(folder.config),
                                           unnamed=str(folder.config),
                                           fix=f"check {folder.config}"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = cfg.name or folder.name  # the name it started with: a renamed folder still reads
    try:
        study = optuna.load_study(study_name=name,
                                  storage=open_storage(cfg.storage, folder.study_db))
    except KeyError:
        raise ConfigError("run", f"the storage of {folder.path} holds no study {name!r}",
                          "check storage= in its config.yaml") from None
    return cfg, study


def export_run(path: str | Path, export: ExportConfig) -> Exported | None:
    """Export a finished (or interrupted) search run's best architecture again, as ``export``
    asks; inherited weights come from the run's own warmed-up evaluator, never a new one."""
    cfg, study = load_run(path)
    folder, evaluator = RunFolder(Path(path)), None
    kind = evaluator_class(cfg.evaluator.get("name", ""))
    if export.weights and kind.exports_weights:
        space, budget = search_space(cfg), Budget.from_config(cfg.budget)
        evaluator = make_evaluator(evaluator_config(cfg.evaluator),
                                   evaluation_context(cfg, space, budget))
        evaluator.restore(folder)
    return export_best(study, folder, export, evaluator, kind.score_name)
