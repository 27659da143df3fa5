"""What runs after each trial: stopping at the total, a progress line, TensorBoard summaries."""

from __future__ import annotations

import time

import optuna

from mbnas.search.trials import (
    COMPLETE,
    PRUNED,
    TrialRecord,
    best_trials,
    count_trials,
    pareto_indices,
    trial_records,
)
from mbnas.tensorboard import StudyLog


class StopAtTotal:
    """Stop once the study (all workers together) holds ``evaluated`` trained candidates, or
    ``max_pruned`` over-budget ones: over-budget candidates are nearly free and never counted."""

    def __init__(self, evaluated: int, max_pruned: int):
        self.evaluated, self.max_pruned = evaluated, max_pruned
        self.reason = ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if count_trials(study, COMPLETE) >= self.evaluated:
            study.stop()
        elif count_trials(study, PRUNED) >= self.max_pruned:
            self.reason = (f"stopped after {self.max_pruned} over-budget candidates; the budget "
                           "leaves little of the space: raise it or choose a smaller space")
            study.stop()


class Progress:
    """One line per finished trial: count, result, best so far and elapsed time."""

    def __init__(self, total: int):
        self.total = total
        self.start = time.monotonic()
        self.pruned = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = TrialRecord.of(trial)
        if trial.state == PRUNED:
            self.pruned += 1
            if self.pruned % 25 == 0:  # over-budget candidates are many and quick: summarise
                print(f"  {self.pruned} over-budget candidates pruned so far (latest: "
                      f"{record.pruned_reason or 'stopped'})", flush=True)
            return
        result = f"accuracy {record.accuracy:.4f}, {record.macs / 1e6:.1f}M MACs"
        if record.latency_ms is not None:
            result += f", {record.latency_ms:.2f} ms"
        best = max((r.accuracy for r in trial_records(study, COMPLETE)), default=None)
        best_text = f"best {best:.4f}" if best is not None else "no feasible trial yet"
        elapsed = time.monotonic() - self.start
        print(f"[trial {count_trials(study, COMPLETE)}/{self.total}] #{trial.number}: {result} "
              f"| {best_text} | {elapsed / 60:.1f} min", flush=True)


class StudySummaries:
    """The study's TensorBoard summaries: accuracy and best-so-far after every trained trial,
    the accuracy-vs-cost scatter and the best architecture every ``every`` trials."""

    def __init__(self, study_log: StudyLog, cost_key: str, every: int = 10):
        self.study_log, self.cost_key, self.every = study_log, cost_key, every

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != COMPLETE:
            return
        best = max(r.accuracy for r in best_trials(study))
        self.study_log.trial(trial.number, TrialRecord.of(trial).accuracy, best)
        if trial.number % self.every == 0:
            self.refresh(study)

    def refresh(self, study: optuna.Study) -> None:
        """Redraw the scatter with its Pareto front and the best architecture."""
        records = trial_records(study, COMPLETE)
        if not records:
            return
        step = max(r.number for r in records)
        usable = [r.metrics for r in records if r.metrics[self.cost_key] is not None]
        self.study_log.scatter(usable, pareto_indices(usable, self.cost_key), self.cost_key,
                               step)
        self.study_log.best_arch(best_trials(study)[0].arch_spec().to_yaml(), step)
