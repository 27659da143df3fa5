"""The search: an Optuna study over a SearchSpace under hard MAC / parameter / latency budgets.

Every sampled candidate is costed first; one over budget is pruned with the reason stored on the
trial and its constraint values given to the sampler (``trial.set_constraint``), so the sampler
learns the feasible region and nothing over budget is ever trained, reported or exported.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from mbnas.arch import ArchSpec
from mbnas.architectures import load_arch
from mbnas.budget import Budget
from mbnas.cost import count
from mbnas.errors import ConfigError
from mbnas.space import SearchSpace
from mbnas.tensorboard import StudyLog, TrialLog, pareto_indices
from mbnas.validation import check_choice

OBJECTIVES = {  # name: (second objective's metric or None)
    "accuracy": None,
    "accuracy-macs": "macs",
    "accuracy-latency": "latency_ms",
    "accuracy-params": "params",
}
SAMPLERS = ("tpe", "random", "nsga2")


@dataclass(frozen=True)
class Candidate:
    """A sampled architecture with its costs (latency ``None`` when not estimated)."""

    arch: ArchSpec
    macs: int
    params: int
    latency_ms: float | None

    @property
    def costs(self) -> dict[str, float | None]:
        return {"macs": self.macs, "params": self.params, "latency_ms": self.latency_ms}


def make_sampler(name: str, seed: int, startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """TPE (default; multivariate and grouped, for define-by-run spaces), random or NSGA-II."""
    check_choice(name, "sampler", SAMPLERS)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=startup_trials)


def open_study(name: str, storage: str, sampler: optuna.samplers.BaseSampler,
               directions: list[str], signature: dict[str, Any]) -> optuna.Study:
    """Create the study or resume it, refusing to mix a different search into the same run."""
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=directions, load_if_exists=True)
    stored = study.user_attrs.get("mbnas_signature")
    if stored is None:
        study.set_user_attr("mbnas_signature", signature)
    elif stored != signature:
        differing = sorted(k for k in signature if stored.get(k) != signature[k])
        raise ConfigError(
            "name", f"run {name!r} already holds a different search (it differs in "
            f"{', '.join(differing)}: {', '.join(f'{k}={stored.get(k)}' for k in differing)})",
            "choose another name=, or resume with the original settings")
    return study


def trials_in(study: optuna.Study, state: optuna.trial.TrialState
              ) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(state,))


class StopAtTotal:
    """Stop once the study (all workers together) holds ``evaluated`` trained candidates, or
    ``max_pruned`` over-budget ones: over-budget candidates are nearly free and never counted."""

    def __init__(self, evaluated: int, max_pruned: int):
        self.evaluated, self.max_pruned = evaluated, max_pruned
        self.reason = ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(trials_in(study, optuna.trial.TrialState.COMPLETE)) >= self.evaluated:
            study.stop()
        elif len(trials_in(study, optuna.trial.TrialState.PRUNED)) >= self.max_pruned:
            self.reason = (f"stopped after {self.max_pruned} over-budget candidates; the budget "
                           "leaves little of the space: raise it or choose a smaller space")
            study.stop()


def completed_points(study: optuna.Study) -> list[dict[str, Any]]:
    """Every completed trial's metrics, for reports, scatter plots and the Pareto front."""
    points = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        points.append({"number": trial.number, "accuracy": attrs["accuracy"],
                       "macs": attrs["macs"], "params": attrs["params"],
                       "latency_ms": attrs.get("latency_ms")})
    return points


def trial_arch(trial: optuna.trial.FrozenTrial) -> ArchSpec:
    return ArchSpec.from_dict(trial.user_attrs["arch"], source=f"trial {trial.number}")


@dataclass
class Objective:
    """Optuna objective: sample, cost, check budgets, evaluate, log."""

    space: SearchSpace
    budget: Budget
    objective: str
    evaluate: Callable[[ArchSpec, TrialLog], float]
    estimate_latency: Callable[[ArchSpec], float] | None
    log_dir: Path
    study_log: StudyLog
    on_trial_end: Callable[[optuna.trial.FrozenTrial], None] = field(default=lambda t: None)

    def candidate(self, trial: optuna.Trial) -> Candidate:
        arch = self.space.sample(trial)
        cost = count(arch)
        latency = None
        fits_otherwise = not self.budget.violations({"macs": cost.macs, "params": cost.params})
        # Latency costs a measurement: skip it for candidates already over another budget.
        if self.estimate_latency is not None and fits_otherwise:
            latency = self.estimate_latency(arch)
        return Candidate(arch, cost.macs, cost.params, latency)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        candidate = self.candidate(trial)
        costs = candidate.costs
        trial.set_user_attr("arch", candidate.arch.to_dict())
        trial.set_user_attr("digest", candidate.arch.digest())
        for key, value in costs.items():
            trial.set_user_attr(key, value)
        for key, value in self.budget.constraints(costs).items():
            trial.set_constraint(key, value)
        reasons = self.budget.violations(costs)
        if self.budget.needs_latency and candidate.latency_ms is None:
            reasons = reasons or ["over budget before latency was measured"]
            trial.set_constraint("latency_ms", 1.0)
        if reasons:
            trial.set_user_attr("pruned_reason", "; ".join(reasons))
            raise optuna.TrialPruned("over budget: " + "; ".join(reasons))
        accuracy = self._accuracy(trial, candidate)
        trial.set_user_attr("accuracy", accuracy)
        second = OBJECTIVES[self.objective]
        return accuracy if second is None else (accuracy, float(costs[second]))

    def _accuracy(self, trial: optuna.Trial, candidate: Candidate) -> float:
        digest = candidate.arch.digest()
        for earlier in trial.study.get_trials(deepcopy=False,
                                              states=(optuna.trial.TrialState.COMPLETE,)):
            if earlier.user_attrs.get("digest") == digest:
                trial.set_user_attr("duplicate_of", earlier.number)
                return earlier.user_attrs["accuracy"]
        log = TrialLog(self.log_dir, trial.number)
        start = time.perf_counter()
        accuracy = float(self.evaluate(candidate.arch, log))
        # What training and scoring took; the rest of the trial is the framework's overhead.
        trial.set_user_attr("evaluation_s", time.perf_counter() - start)
        log.finish(self.space.choices(candidate.arch),
                   {"accuracy": accuracy, **candidate.costs})
        return accuracy


def enqueue_seeds(study: optuna.Study, space: SearchSpace, seeds: list[str]) -> list[str]:
    """Enqueue reference architectures that belong to the space; return those that do not.

    Classes, resolution and BatchNorm settings are taken from the space: they are deployment and
    training settings, not architecture choices.
    """
    rejected = []
    for name in seeds:
        arch = load_arch(name).replace(num_classes=space.num_classes, bn=space.bn,
                                       resolution=space.resolution)
        if space.contains(arch):
            study.enqueue_trial(space.choices(arch), skip_if_exists=True)
        else:
            rejected.append(name)
    return rejected


def smallest_costs(space: SearchSpace, estimate_latency: Callable[[ArchSpec], float] | None,
                   budget: Budget) -> dict[str, float | None]:
    """Costs of the space's smallest member: the floor any budget must clear."""
    smallest = space.smallest()
    cost = count(smallest)
    latency = estimate_latency(smallest) if (estimate_latency and budget.needs_latency) else None
    return {"macs": cost.macs, "params": cost.params, "latency_ms": latency}


class Progress:
    """One line per finished trial: count, result, best so far and elapsed time."""

    def __init__(self, total: int):
        self.total = total
        self.start = time.monotonic()
        self.pruned = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(trials_in(study, optuna.trial.TrialState.COMPLETE))
        elapsed = time.monotonic() - self.start
        if trial.state == optuna.trial.TrialState.PRUNED:
            self.pruned += 1
            if self.pruned % 25:  # over-budget candidates are many and quick: summarise them
                return
            print(f"  {self.pruned} over-budget candidates pruned so far (latest: "
                  f"{trial.user_attrs.get('pruned_reason', 'stopped')})", flush=True)
            return
        else:
            result = (f"accuracy {trial.user_attrs['accuracy']:.4f}, "
                      f"{trial.user_attrs['macs'] / 1e6:.1f}M MACs")
            latency = trial.user_attrs.get("latency_ms")
            if latency is not None:
                result += f", {latency:.2f} ms"
        points = completed_points(study)
        best = max((p["accuracy"] for p in points), default=None)
        best_text = f"best {best:.4f}" if best is not None else "no feasible trial yet"
        print(f"[trial {done}/{self.total}] #{trial.number}: {result} | {best_text} | "
              f"{elapsed / 60:.1f} min", flush=True)


# ---------------------------------------------------------------- a whole run


def default_run_name(space: SearchSpace, budget: Budget, objective: str) -> str:
    suffix = "" if objective == "accuracy" else f"-{objective}"
    return f"{space.name}-{budget.slug()}{suffix}"


def study_directions(objective: str) -> list[str]:
    check_choice(objective, "objective", tuple(OBJECTIVES))
    return ["maximize"] if OBJECTIVES[objective] is None else ["maximize", "minimize"]


def storage_url(storage: str | None, run_dir: Path) -> str | optuna.storages.BaseStorage:
    """SQLite in the run folder by default; any Optuna storage URL otherwise."""
    url = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if url.startswith("sqlite"):
        # Several local workers share one SQLite file: wait for its lock instead of failing.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    return url


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial first, then (multi-objective) the rest of the Pareto set by accuracy."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: -t.user_attrs["accuracy"])


def log_study(study: optuna.Study, study_log: StudyLog, cost_key: str) -> None:
    """Refresh the study-level TensorBoard summaries from the stored trials."""
    points = completed_points(study)
    if not points:
        return
    step = max(p["number"] for p in points)
    usable = [p for p in points if p.get(cost_key) is not None]
    study_log.scatter(usable, pareto_indices(usable, cost_key), cost_key, step)
    best = best_trials(study)
    if best:
        study_log.best_arch(trial_arch(best[0]).to_yaml(), step)
