"""The search's objective: sample a candidate, cost it, enforce the budgets, evaluate, record.

Every sampled candidate is costed first; one over budget is pruned with the reason stored on the
trial and its constraint values given to the sampler (``trial.set_constraint``), so the sampler
learns the feasible region and nothing over budget is ever trained, reported or exported. A
candidate whose training or score is not finite (it diverged) fails with the reason stored on the
trial; the search catches :class:`~mbnas.errors.Diverged` and goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from mbnas.arch import ArchSpec
from mbnas.budget import Budget
from mbnas.cost import count
from mbnas.errors import Diverged
from mbnas.evaluators import Checkpoint, Evaluation
from mbnas.search.exploration import ExploreAfterRepeats
from mbnas.search.slots import TrialSlots
from mbnas.search.trials import (
    FAIL,
    TrialRecord,
    record_candidate,
    record_constraints,
    record_duplicate,
    record_failure,
    record_pruned,
    record_score,
    record_stopped,
    record_worker,
    trial_records,
)
from mbnas.space import SearchSpace
from mbnas.tensorboard import TrialLog
from mbnas.train import check_finite

OBJECTIVES = {  # name: (second objective's metric or None)
    "accuracy": None,
    "accuracy-macs": "macs",
    "accuracy-latency": "latency_ms",
    "accuracy-params": "params",
}


def cost_metric(objective: str) -> str:
    """The cost an objective trades accuracy against (MACs for accuracy alone)."""
    return OBJECTIVES[objective] or "macs"


@dataclass(frozen=True)
class Candidate:
    """A sampled architecture with its costs (latency ``None`` when not estimated)."""

    arch: ArchSpec
    macs: int
    params: int
    latency_ms: float | None
    activations: int  # elements of every conv and Linear output per image

    @property
    def costs(self) -> dict[str, float | None]:
        return {"macs": self.macs, "params": self.params, "latency_ms": self.latency_ms,
                "activations": self.activations}


def failure_reason(error: BaseException) -> str:
    """Why a trial failed, as the report shows it: ``diverged: ...``, ``interrupted`` or the
    error."""
    if isinstance(error, Diverged):
        return f"diverged: {error}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C); a resumed run samples again"
    return f"{type(error).__name__}: {error}"


@dataclass
class Objective:
    """Optuna objective: sample, cost, check budgets, take a slot, evaluate, log."""

    space: SearchSpace
    budget: Budget
    objective: str
    evaluate: Callable[[ArchSpec, TrialLog, Checkpoint | None], Evaluation]
    estimate_latency: Callable[[ArchSpec], float] | None
    log_dir: Path
    # The study's n_trials slots, shared by every worker; by default unlimited.
    slots: TrialSlots = field(default_factory=TrialSlots)
    # What a repeat (an architecture scored before) sets going next; None: nothing.
    explore: ExploreAfterRepeats | None = None
    # The checkpoint a trial's evaluation reports to (a multi-fidelity search's pruner decides
    # there, see mbnas.search.pruning); None: candidates train to the end.
    checkpoint_for: Callable[[optuna.Trial], Checkpoint] | None = None

    def candidate(self, trial: optuna.Trial) -> Candidate:
        arch = self.space.sample(trial)
        cost = count(arch)
        latency = None
        fits_otherwise = not self.budget.violations({"macs": cost.macs, "params": cost.params})
        # Latency costs a measurement: skip it for candidates already over another budget.
        if self.estimate_latency is not None and fits_otherwise:
            latency = self.estimate_latency(arch)
        return Candidate(arch, cost.macs, cost.params, latency, cost.activations)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        record_worker(trial)
        candidate = self.candidate(trial)
        costs = candidate.costs
        record_candidate(trial, candidate.arch, costs)
        constraints = self.budget.constraints(costs)
        reasons = self.budget.violations(costs)
        if self.budget.needs_latency and candidate.latency_ms is None:
            reasons = reasons or ["over budget before latency was measured"]
            constraints["latency_ms"] = 1.0
        record_constraints(trial, constraints)
        if reasons:
            record_pruned(trial, reasons)
            raise optuna.TrialPruned("over budget: " + "; ".join(reasons))
        accuracy = self._accuracy(trial, candidate)
        second = OBJECTIVES[self.objective]
        return accuracy if second is None else (accuracy, float(costs[second]))

    def _accuracy(self, trial: optuna.Trial, candidate: Candidate) -> float:
        digest = candidate.arch.digest()
        earlier = self.slots.claim(trial, digest)
        if earlier is not None:
            record_duplicate(trial, earlier)
            if self.explore is not None:
                self.explore.after_repeat(trial.study)
            return earlier.accuracy
        diverged = self._diverged_before(trial.study, digest)
        if diverged is not None:  # the evaluators are deterministic per architecture
            record_failure(trial, f"{diverged.failed_reason} (as trial #{diverged.number})")
            raise Diverged(f"as trial #{diverged.number}")
        log = TrialLog(self.log_dir, trial.number)
        checkpoint = self.checkpoint_for(trial) if self.checkpoint_for else None
        try:
            evaluation = self.evaluate(candidate.arch, log, checkpoint)
            score = check_finite(float(evaluation.score), "the score")
        except BaseException as error:  # Optuna marks the trial FAIL: say why on it
            record_failure(trial, failure_reason(error))
            log.close()
            raise
        if evaluation.stopped_at is not None:
            record_stopped(trial, evaluation.stopped_at)
        record_score(trial, score, evaluation.seconds)
        log.finish(self.space.choices(candidate.arch), {"accuracy": score, **candidate.costs})
        return score

    @staticmethod
    def _diverged_before(study: optuna.Study, digest: str) -> TrialRecord | None:
        """An earlier trial of the same architecture that failed by diverging."""
        return next((r for r in trial_records(study, FAIL) if r.digest == digest
                     and (r.failed_reason or "").startswith("diverged")), None)
