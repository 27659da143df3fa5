"""Multi-fidelity search: an Optuna pruner stops candidates that train worse than the others.

An evaluator that ``stops_early`` (``scratch`` with ``evaluator.checkpoint_every``) validates
as it trains; at each checkpoint the trial reports the accuracy to the study
(``trial.report``) and asks the pruner whether to go on (``trial.should_prune``). A candidate
stopped there is scored by its accuracy at that step and completes like any other (it counts
towards ``n_trials``, and a re-sampled copy reuses its score), with the step on the trial
(``stopped_at_step``), so the sampler learns from it and the search spends the saved time on
more candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from mbnas.errors import ConfigError
from mbnas.evaluators import Checkpoint, EvaluatorConfig, evaluator_class
from mbnas.search.objective import OBJECTIVES
from mbnas.validation import check_choice

PRUNERS = ("none", "median", "successive_halving", "hyperband")
REDUCTION = 3  # successive halving and Hyperband keep a third of the candidates at each rung


def make_pruner(name: str, evaluator: EvaluatorConfig) -> optuna.pruners.BasePruner:
    """The pruner ``name`` with its rungs at the evaluator's checkpoints: the first at
    ``checkpoint_every`` steps, the last (Hyperband) at ``train_steps``."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    first = evaluator.checkpoint_every
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first,
                                                      reduction_factor=REDUCTION)
    return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=evaluator.train_steps,
                                          reduction_factor=REDUCTION)


def check_pruner(name: str, objective: str, evaluator: EvaluatorConfig, processes: int) -> None:
    """Refuse a pruner that cannot work: one the evaluator gives nothing to (it does not train,
    or has no checkpoints), a two-objective search (Optuna prunes one objective only), or
    candidates trained by several processes (each would decide on its own)."""
    check_choice(name, "pruner", PRUNERS)
    if name == "none":
        return
    if not evaluator_class(evaluator.name).stops_early:
        raise ConfigError("pruner", f"evaluator {evaluator.name!r} scores a candidate in one go, "
                          "so there is nothing to stop early", "use evaluator=scratch "
                          "evaluator.checkpoint_every=50 (say), or pruner=none")
    every, steps = getattr(evaluator, "checkpoint_every", 0), getattr(evaluator, "train_steps", 0)
    if not every or every >= steps:
        raise ConfigError("evaluator.checkpoint_every", f"is {every}: the pruner would see no "
                          f"accuracy before a candidate's end (evaluator.train_steps={steps})",
                          "set it to the steps between checks, well below train_steps, e.g. "
                          f"evaluator.checkpoint_every={max(1, steps // 4)}")
    if OBJECTIVES[objective] is not None:
        raise ConfigError("pruner", f"does not work with objective={objective} (Optuna prunes "
                          "single-objective studies only)", "use objective=accuracy, or "
                          "pruner=none")
    if processes > 1:
        raise ConfigError("pruner", f"cannot stop candidates that {processes} processes train "
                          "together", "run without torchrun (several workers: one process "
                          "each), or pruner=none")


def reporting_to(trial: optuna.Trial) -> Checkpoint:
    """The checkpoint of ``trial``: report the accuracy at the step, stop if the pruner says so."""
    def checkpoint(step: int, accuracy: float) -> bool:
        trial.report(accuracy, step)
        return trial.should_prune()
    return checkpoint


def describe(name: str, evaluator: Mapping[str, Any]) -> str:
    """The pruner as the plan prints it (``evaluator``: its settings by name)."""
    if name == "none":
        return "none"
    return (f"{name} (checks every {evaluator.get('checkpoint_every')} of "
            f"{evaluator.get('train_steps')} steps)")
