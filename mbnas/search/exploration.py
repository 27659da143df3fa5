"""What follows a repeat: when the sampler proposes an architecture it has scored before, the
next trial evaluates an untried neighbour of the best candidate so far (one decision changed), or,
when the budget leaves it none, a random member within budget that no trial has tried.

A model-based sampler (TPE) re-proposes its favourites more and more often as it converges, and
under a tight budget (few members fit) it has little else to offer: on NAS-Bench-Macro at 30M
MACs (240 members of 6,561), 70 of TPE's 100 in-budget trials were repeats. A repeat costs
nothing (it takes the earlier score and no place in ``n_trials``), so it is a sign that the
sampler's exploitation has run dry. Its favourites are near the best candidate, and the best
members of a cell-free macro space sit next to each other (one op apart), so the next trial
climbs from the best one decision at a time — a local search interleaved with the sampler, the
method that rivals model-based NAS on tabular benchmarks (White et al., 2021). With the default
evaluator on NAS-Bench-Macro at 60M MACs, TPE alone stopped short of the evaluator's favourites in
3 of 5 searches (BENCHMARKS.md).
"""

from __future__ import annotations

import random

import optuna

from mbnas.arch import ArchSpec
from mbnas.budget import Budget, WithinBudget
from mbnas.search.trials import EXPLORATION, best_trials, is_evaluated
from mbnas.space import SearchSpace

RUNNING, WAITING = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING


class ExploreAfterRepeats:
    """Enqueues one untried member within budget after each repeat: a neighbour of the best
    candidate so far (of a random one of the Pareto set in a two-objective search), else a
    random member. None while one waits, and none once the evaluated and running candidates fill
    ``total``, which would leave it waiting after the search stops. An exploration gives way to
    seeds and to retries of a dead worker's trials, as a sampled trial does: it is only a guess,
    they are owed their place."""

    def __init__(self, space: SearchSpace, budget: Budget, seed: int,
                 total: int | None = None, tries: int = 50):
        self.space, self.total, self.tries = space, total, tries
        self.members = WithinBudget(space, budget, seed=seed)
        self.rng = random.Random(seed)

    def after_repeat(self, study: optuna.Study) -> bool:
        """Enqueue an architecture no trial has tried; False when one waits already, when no
        place is left for it, or when the best candidate has no untried neighbour within budget
        and ``tries`` random members were all seen (the budget leaves few members). Called from
        the repeat's own trial, which is running."""
        trials = study.get_trials(deepcopy=False)
        if any(t.state == WAITING for t in trials):
            return False
        evaluated = sum(is_evaluated(t) for t in trials)
        running_others = sum(t.state == RUNNING for t in trials) - 1
        if self.total is not None and evaluated + running_others >= self.total:
            return False
        seen = {t.user_attrs.get("digest") for t in trials}
        arch = self.untried_neighbour(self.incumbent(study), seen)
        if arch is None:
            arch = self.untried_random(seen)
        if arch is None:
            return False
        study.enqueue_trial(self.space.choices(arch), user_attrs={EXPLORATION: True})
        return True

    def incumbent(self, study: optuna.Study) -> ArchSpec | None:
        """The best candidate so far (a random one of the Pareto set when there are two
        objectives), or None before any."""
        best = best_trials(study)
        if not best:
            return None
        record = best[0] if len(study.directions) == 1 else self.rng.choice(best)
        return self.space.sample(optuna.trial.FixedTrial(record.choices))

    def untried_neighbour(self, arch: ArchSpec | None, seen: set[str | None]
                          ) -> ArchSpec | None:
        """A random member one decision away from ``arch``, within budget and not in ``seen``."""
        if arch is None:
            return None
        return next((neighbour for neighbour in self.space.neighbours(arch, self.rng)
                     if neighbour.digest() not in seen and self.members.fits(neighbour)), None)

    def untried_random(self, seen: set[str | None]) -> ArchSpec | None:
        """A random member within budget not in ``seen`` (None after ``tries`` seen ones)."""
        for _ in range(self.tries):
            arch = self.members.sample_random(self.rng)
            if arch.digest() not in seen:
                return arch
        return None
