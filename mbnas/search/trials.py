"""One trial of a search as stored in Optuna: what it tried, what it cost, how it scored.

Every attribute a trial carries is written and read here, so the objective, the run's progress
lines, the export, the report and the TensorBoard summaries all see the same record.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from mbnas.arch import ArchSpec

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
FAIL = optuna.trial.TrialState.FAIL
METRICS = ("accuracy", "macs", "params", "latency_ms", "activations")
# User attribute of a trial that re-sampled a scored architecture: the number of that trial.
DUPLICATE_OF = "duplicate_of"
# User attribute of a trial enqueued to explore after a repeat (it waits its turn like a sampled
# one, behind seeds and retries).
EXPLORATION = "exploration"
# User attribute of a trial whose candidate a pruner stopped: the training step (multi-fidelity).
STOPPED_AT = "stopped_at_step"
# User attribute of a trial that failed in its own worker: why (a dead worker's trial has none).
FAILED_REASON = "failed_reason"
# optuna-dashboard (0.21) reads a trial's constraint values as one list under this system
# attribute (Optuna's own older format); Optuna's set_constraint stores them by name.
DASHBOARD_CONSTRAINTS = "constraints"


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its number, state, choices, architecture, costs and score."""

    number: int
    state: str  # complete | pruned | fail | running | waiting
    choices: dict[str, Any]
    arch: dict[str, Any] | None
    digest: str | None
    macs: int | None
    params: int | None
    latency_ms: float | None
    accuracy: float | None
    pruned_reason: str | None
    failed_reason: str | None  # why a trial failed: diverged, interrupted
    duplicate_of: int | None
    evaluation_s: float | None
    stopped_at_step: int | None = None  # where a pruner stopped its training (multi-fidelity)
    activations: int | None = None  # per image; None in runs made before it was recorded

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial) -> TrialRecord:
        """The record of a stored (or just finished) trial."""
        attrs = trial.user_attrs
        return cls(number=trial.number, state=trial.state.name.lower(),
                   choices=dict(trial.params), arch=attrs.get("arch"),
                   digest=attrs.get("digest"), macs=attrs.get("macs"),
                   params=attrs.get("params"), latency_ms=attrs.get("latency_ms"),
                   accuracy=attrs.get("accuracy"), pruned_reason=attrs.get("pruned_reason"),
                   failed_reason=attrs.get(FAILED_REASON),
                   duplicate_of=attrs.get(DUPLICATE_OF),
                   evaluation_s=attrs.get("evaluation_s"),
                   stopped_at_step=attrs.get(STOPPED_AT),
                   activations=attrs.get("activations"))

    @property
    def metrics(self) -> dict[str, float | None]:
        """Score and costs by name: accuracy, macs, params, latency_ms, activations."""
        return {key: getattr(self, key) for key in METRICS}

    def arch_spec(self) -> ArchSpec:
        """The architecture the trial tried."""
        return ArchSpec.from_dict(self.arch, source=f"trial {self.number}")

    def summary(self) -> dict[str, Any]:
        """The trial number and metrics, as written above an exported architecture."""
        return {"trial": self.number, **self.metrics}

    def row(self) -> dict[str, Any]:
        """A report row: number, state, metrics, choices and why it was pruned, failed,
        repeated or stopped early."""
        return {"number": self.number, "state": self.state, **self.metrics,
                "choices": self.choices, "pruned_reason": self.pruned_reason,
                "failed_reason": self.failed_reason, "duplicate_of": self.duplicate_of,
                "stopped_at_step": self.stopped_at_step}


def trial_records(study: optuna.Study, *states: optuna.trial.TrialState) -> list[TrialRecord]:
    """The study's trials (those in ``states``, or all) as records."""
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=states or None)]


def count_trials(study: optuna.Study, state: optuna.trial.TrialState) -> int:
    """How many of the study's trials (every worker's) are in ``state``."""
    return len(study.get_trials(deepcopy=False, states=(state,)))


def pruned_in_a_row(study: optuna.Study) -> int:
    """The latest finished trials (every worker's, by number) that were pruned, up to the last
    one that was not: how long the sampler has proposed nothing within budget."""
    finished = study.get_trials(deepcopy=False, states=(COMPLETE, PRUNED, FAIL))
    numbers = sorted((t.number, t.state == PRUNED) for t in finished)
    run = 0
    for _, pruned in reversed(numbers):
        if not pruned:
            break
        run += 1
    return run


def is_repeat(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial re-sampled an architecture scored before and took that score."""
    return DUPLICATE_OF in trial.user_attrs


def is_evaluated(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial finished by evaluating its architecture (not by reusing a score): one
    of the search's ``n_trials``."""
    return trial.state == COMPLETE and not is_repeat(trial)


def count_scored(study: optuna.Study) -> tuple[int, int]:
    """Finished trials (every worker's): those evaluated, and the repeats that reused a score
    (nearly free, so they do not count towards ``n_trials``)."""
    complete = study.get_trials(deepcopy=False, states=(COMPLETE,))
    repeats = sum(is_repeat(t) for t in complete)
    return len(complete) - repeats, repeats


def count_stopped(study: optuna.Study) -> int:
    """Evaluated candidates whose training a pruner stopped early (every worker's)."""
    return sum(STOPPED_AT in t.user_attrs and not is_repeat(t)
               for t in study.get_trials(deepcopy=False, states=(COMPLETE,)))


# ---------------------------------------------------------------- writing a running trial


def worker_name() -> str:
    """This process among the workers sharing a study: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record_worker(trial: optuna.Trial) -> None:
    """Which worker runs the trial (first thing: a trial taken for dead is then recognised)."""
    trial.set_user_attr("worker", worker_name())


def record_candidate(trial: optuna.Trial, arch: ArchSpec, costs: Mapping[str, float | None]
                     ) -> None:
    """What the trial tries: the architecture, its digest and its costs."""
    trial.set_user_attr("arch", arch.to_dict())
    trial.set_user_attr("digest", arch.digest())
    for key, value in costs.items():
        trial.set_user_attr(key, value)


def record_constraints(trial: optuna.Trial, constraints: Mapping[str, float]) -> None:
    """Each budget's constraint value (≤ 0: within budget) for the sampler, by name, and as
    the list that optuna-dashboard reads to mark trials feasible or not."""
    for key, value in constraints.items():
        trial.set_constraint(key, value)
    if constraints:
        storage = trial.storage
        study_id = storage.get_study_id_from_name(trial.study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_system_attr(trial_id, DASHBOARD_CONSTRAINTS,
                                      [float(v) for v in constraints.values()])


def record_pruned(trial: optuna.Trial, reasons: Sequence[str]) -> None:
    """Why the trial was pruned untrained: each budget it exceeds."""
    trial.set_user_attr("pruned_reason", "; ".join(reasons))


def record_stopped(trial: optuna.Trial, step: int) -> None:
    """The training step at which the pruner stopped the trial's candidate (its score is the
    accuracy there)."""
    trial.set_user_attr(STOPPED_AT, step)


def record_failure(trial: optuna.Trial, reason: str) -> None:
    """Why the trial failed (it diverged, or was interrupted): Optuna stores it as FAIL."""
    trial.set_user_attr(FAILED_REASON, reason)


def record_duplicate(trial: optuna.Trial, earlier: TrialRecord) -> None:
    """An architecture tried before: its score is the earlier trial's (and so is the step a
    pruner stopped it at, if it did)."""
    trial.set_user_attr(DUPLICATE_OF, earlier.number)
    trial.set_user_attr("accuracy", earlier.accuracy)
    if earlier.stopped_at_step is not None:
        trial.set_user_attr(STOPPED_AT, earlier.stopped_at_step)


def record_score(trial: optuna.Trial, accuracy: float, seconds: float) -> None:
    """The evaluator's score and the seconds it took (the rest is the framework's overhead)."""
    trial.set_user_attr("accuracy", accuracy)
    trial.set_user_attr("evaluation_s", seconds)


# ---------------------------------------------------------------- sets of trials


def best_trained_to_the_end(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The single-objective study's best trial among candidates trained to the end, when there
    are any: a pruner stops candidates at fewer steps, and accuracy after fewer steps does not
    compare with accuracy after all of them (it may beat them only by noise)."""
    best = study.best_trial
    if STOPPED_AT not in best.user_attrs:
        return best
    trained = [t for t in study.get_trials(deepcopy=False, states=(COMPLETE,))
               if STOPPED_AT not in t.user_attrs]
    if not trained:
        return best
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(trained, key=lambda t: t.value)


def pareto_indices(points: Sequence[Mapping[str, Any]], cost_key: str) -> list[int]:
    """Indices of points no other point beats on both accuracy (higher) and cost (lower)."""
    front = []
    for i, p in enumerate(points):
        dominated = any(
            q["accuracy"] >= p["accuracy"] and q[cost_key] <= p[cost_key]
            and (q["accuracy"] > p["accuracy"] or q[cost_key] < p[cost_key])
            for q in points)
        if not dominated:
            front.append(i)
    return front


def best_trials(study: optuna.Study) -> list[TrialRecord]:
    """The best trial first, then (multi-objective) the rest of the Pareto set by accuracy."""
    if not count_trials(study, COMPLETE):
        return []
    if len(study.directions) == 1:
        return [TrialRecord.of(best_trained_to_the_end(study))]
    return sorted((TrialRecord.of(t) for t in study.best_trials), key=lambda r: -r.accuracy)
