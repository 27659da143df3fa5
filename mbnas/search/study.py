"""The Optuna study of a search: sampler, directions, resuming and seeds (its storage: see
:mod:`mbnas.search.storage`)."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from mbnas.architectures import load_arch
from mbnas.errors import ConfigError
from mbnas.resume import check_resumable
from mbnas.search.objective import OBJECTIVES
from mbnas.space import SearchSpace

SAMPLERS = ("tpe", "random", "nsga2")
# The largest seed= a search takes: its samplers are seeded below 2**32, workers other than the
# study's creator up to 2**30 past seed= (see seed_offset).
MAX_SEED = 2**31 - 1
# Drawn from the operating system: every worker's global generator is seeded alike.
OFFSETS = random.SystemRandom()
SIGNATURE = "mbnas_signature"  # the study attribute holding the settings it was started with
# The parts of the signature that are command-line settings, given back in a refusal.
SIGNATURE_OVERRIDES = ("objective", "preset", "seed", "evaluator", "data", "latency")


def make_sampler(name: str, seed: int, startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """TPE (default; multivariate and grouped, for define-by-run spaces), random or NSGA-II."""
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=startup_trials)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
    raise ValueError(f"unknown sampler {name!r}: one of {', '.join(SAMPLERS)}")


def study_directions(objective: str) -> list[str]:
    """Maximise accuracy, and minimise the cost of a two-objective search."""
    return ["maximize"] if OBJECTIVES[objective] is None else ["maximize", "minimize"]


def metric_names(objective: str) -> list[str]:
    """The objectives' names as Optuna's dashboard shows them: accuracy, then the cost."""
    second = OBJECTIVES[objective]
    return ["accuracy"] if second is None else ["accuracy", second]


def check_study_home(name: str, storage: optuna.storages.BaseStorage,
                     recorded: str | None, where: str) -> None:
    """Refuse to start study ``name`` in a run folder that holds another run's (``recorded`` in
    its config, or the only study in its own database): the folder was renamed or moved."""
    found = optuna.get_all_study_names(storage) if recorded is None else [recorded]
    if not found or name in found:
        return
    raise ConfigError(where, f"holds the search {found[0]!r}, not {name!r}: the folder was "
                      "renamed or moved, and its study keeps the name it started with",
                      f"rename the folder back to {found[0]!r} to resume it, or choose another "
                      "name= for a new run")


def open_study(name: str, storage: optuna.storages.BaseStorage,
               sampler_for: Callable[[int], optuna.samplers.BaseSampler], objective: str,
               signature: dict[str, Any],
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study or resume it, refusing to mix a different search into the same run.
    ``sampler_for(offset)``: the sampler seeded ``offset`` past the run's seed (see
    :func:`seed_offset`)."""
    directions = study_directions(objective)
    pruner = pruner or optuna.pruners.NopPruner()
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler_for(0),
                                    pruner=pruner, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:  # resumed, or created by another worker
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=sampler_for(seed_offset()), pruner=pruner)
    check_resumable(study.user_attrs.get(SIGNATURE), signature, where="name",
                    problem=f"run {name!r} already holds a different search",
                    fix="choose another name= for a new run", overrides=SIGNATURE_OVERRIDES)
    if SIGNATURE not in study.user_attrs:
        study.set_user_attr(SIGNATURE, signature)
    if study.metric_names is None:  # shown by optuna-dashboard instead of "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(objective))
    return study


def seed_offset() -> int:
    """How far past the run's seed the sampler of a process that did not create the study is
    seeded: a fresh run's creator stays at 0 (the run is reproducible), every other worker draws
    its own offset. Seeded alike, workers that start together sample the same candidates (a
    second random-search worker replayed the first one's, each a repeat or an over-budget one
    again), and a resumed run would replay its first trials (one resumed after 2,604 trials did:
    396 repeats, 1,284 over-budget candidates costed again)."""
    return 1 + OFFSETS.randrange(2**30)  # the samplers take seeds below 2**32


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
