"""What runs after each trial: stopping at the total, a progress line, TensorBoard summaries."""

from __future__ import annotations

import math
import time

import optuna

from mbnas.search.trials import (
    COMPLETE,
    FAIL,
    PRUNED,
    TrialRecord,
    best_trials,
    count_scored,
    is_repeat,
    pareto_indices,
    pruned_in_a_row,
    trial_records,
)
from mbnas.tensorboard import StudyLog


class StopAtTotal:
    """Stop once the study (all workers together) holds ``evaluated`` evaluated candidates, or
    ``max_pruned`` over-budget ones in a row, or ``max_pruned`` repeats of scored architectures
    in all: over-budget candidates and repeats are nearly free and never counted, but a sampler
    that proposes nothing else has run out of space (a budget that leaves a quarter of the
    space costs random search three over-budget candidates an evaluated one, and that ratio
    must not end a long search); or once ``max_failed`` candidates in a row failed here
    (diverged): the settings, not the candidates, are at fault."""

    def __init__(self, evaluated: int, max_pruned: int, max_failed: int = 5):
        self.evaluated, self.max_pruned, self.max_failed = evaluated, max_pruned, max_failed
        self.failed_in_a_row = 0
        self.reason = ""

    @property
    def too_many_failures(self) -> bool:
        """Whether it stopped because candidates kept failing (the settings are at fault)."""
        return self.failed_in_a_row >= self.max_failed

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in (COMPLETE, FAIL):
            self.failed_in_a_row = self.failed_in_a_row + 1 if trial.state == FAIL else 0
        if self.too_many_failures:
            self.reason = (f"stopped after {self.max_failed} candidates in a row failed (latest: "
                           f"{TrialRecord.of(trial).failed_reason})")
            study.stop()
        elif (counts := count_scored(study))[0] >= self.evaluated:
            study.stop()
        elif counts[1] >= self.max_pruned:
            self.reason = (f"stopped after {self.max_pruned} re-sampled architectures (scored "
                           f"before) with {counts[0]} distinct ones evaluated: the budget leaves "
                           "few members; raise it or lower n_trials")
            study.stop()
        elif trial.state == PRUNED and pruned_in_a_row(study) >= self.max_pruned:
            self.reason = (f"stopped after {self.max_pruned} over-budget candidates in a row; "
                           "the budget leaves little of the space: raise it or choose a smaller "
                           "space")
            study.stop()


class Progress:
    """One line per evaluated candidate: how many of the total, its Optuna number, result, best
    so far, elapsed time and the expected time left (from this process's trials so far); a line
    per 25 over-budget candidates, and per 25 repeats of scored architectures."""

    def __init__(self, total: int, score_name: str = "accuracy"):
        self.total, self.score_name = total, score_name
        self.start = time.monotonic()
        self.pruned = 0
        self.repeats = 0
        self.trained = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = TrialRecord.of(trial)
        if trial.state == PRUNED:
            self.pruned += 1
            if self.pruned % 25 == 0:  # over-budget candidates are many and quick: summarise
                print(f"  {self.pruned} over-budget candidates pruned so far (latest: "
                      f"{record.pruned_reason or 'stopped'})", flush=True)
            return
        if trial.state == FAIL:
            print(f"[trial failed] Optuna #{trial.number}: {TrialRecord.of(trial).failed_reason} "
                  "| not counted; the search goes on", flush=True)
            return
        if trial.state != COMPLETE:
            return
        if record.duplicate_of is not None:
            self.repeats += 1
            if self.repeats % 25 == 0:  # the sampler re-proposing its favourites: summarise
                print(f"  {self.repeats} re-sampled architectures took their earlier score so "
                      "far (not counted)", flush=True)
            return
        self.trained += 1
        result = f"{self.score_name} {record.accuracy:.4f}, {record.macs / 1e6:.1f}M MACs"
        if record.latency_ms is not None:
            result += f", {record.latency_ms:.2f} ms"
        if record.stopped_at_step is not None:
            result += f" (stopped by the pruner at step {record.stopped_at_step})"
        best = max((r.accuracy for r in trial_records(study, COMPLETE)), default=None)
        best_text = f"best {best:.4f}" if best is not None else "no feasible trial yet"
        elapsed = time.monotonic() - self.start
        done = count_scored(study)[0]
        left = max(self.total - done, 0) * elapsed / self.trained
        print(f"[trial {done}/{self.total}] Optuna #{trial.number}: {result} | {best_text} "
              f"| {elapsed / 60:.1f} min, ~{left / 60:.1f} min left", flush=True)


class StudySummaries:
    """The study's TensorBoard views: accuracy and best-so-far after every evaluated trial; the
    figures (best so far, accuracy against each known cost with the budget line) and the best
    architecture after ``every`` evaluated trials, then every ``every`` more once
    ``min_interval_s`` has passed, and at the end (repeats add nothing). The interval matters
    where candidates cost under a second (``evaluator=counted``): redrawn every five, the
    figures, which grow with the study, took 12% of a 300-candidate search (BENCHMARKS.md)."""

    def __init__(self, study_log: StudyLog, cost_key: str, budget: dict[str, float],
                 every: int = 5, min_interval_s: float = 30.0):
        self.study_log, self.cost_key, self.budget = study_log, cost_key, budget
        self.every, self.min_interval_s = every, min_interval_s
        self.since_refresh, self.refreshed_at = 0, -math.inf

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != COMPLETE or is_repeat(trial):  # a repeat adds no point to the views
            return
        best = max(r.accuracy for r in best_trials(study))
        self.study_log.trial(trial.number, TrialRecord.of(trial).accuracy, best)
        self.since_refresh += 1
        if (self.since_refresh >= self.every
                and time.monotonic() - self.refreshed_at >= self.min_interval_s):
            self.refresh(study)

    def refresh(self, study: optuna.Study) -> None:
        """Redraw the figures and the best architecture now."""
        self.since_refresh, self.refreshed_at = 0, time.monotonic()
        self.draw(study)

    def draw(self, study: optuna.Study) -> None:
        """The figures and the best architecture of the study as it stands."""
        records = sorted(trial_records(study, COMPLETE), key=lambda r: r.number)
        if not records:
            return
        step = records[-1].number
        self.study_log.best_so_far([r.number for r in records], [r.accuracy for r in records],
                                   step)
        for key in dict.fromkeys((self.cost_key, "macs", "latency_ms")):
            usable = [r.metrics for r in records if r.metrics[key] is not None]
            if usable:
                self.study_log.cost_scatter(usable, pareto_indices(usable, key), key,
                                            self.budget.get(key), step)
        self.study_log.best_arch(best_trials(study)[0].arch_spec().to_yaml(), step)
