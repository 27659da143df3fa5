"""What follows a repeat: when the sampler proposes an architecture it has scored before, the
next trial evaluates a random member within budget that no trial has tried yet.

A model-based sampler (TPE) re-proposes its favourites more and more often as it converges, and
under a tight budget (few members fit) it has little else to offer: on NAS-Bench-Macro at 30M
MACs (240 members of 6,561), 70 of TPE's 100 in-budget trials were repeats. A repeat costs
nothing (it takes the earlier score and no place in ``n_trials``), so it is a sign that
exploitation has run dry; an unseen random member is the cheapest useful thing to try next.
"""

from __future__ import annotations

import random

import optuna

from mbnas.budget import Budget, WithinBudget
from mbnas.search.trials import EXPLORATION, is_evaluated
from mbnas.space import SearchSpace

RUNNING, WAITING = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING


class ExploreAfterRepeats:
    """Enqueues one unseen member within budget after each repeat (none while one waits, and
    none once the evaluated and running candidates fill ``total``, which would leave it waiting
    after the search stops). An exploration gives way to seeds and to retries of a dead worker's
    trials, as a sampled trial does: it is only a guess, they are owed their place."""

    def __init__(self, space: SearchSpace, budget: Budget, seed: int,
                 total: int | None = None, tries: int = 50):
        self.space, self.total, self.tries = space, total, tries
        self.members = WithinBudget(space, budget, seed=seed)
        self.rng = random.Random(seed)

    def after_repeat(self, study: optuna.Study) -> bool:
        """Enqueue an architecture no trial has tried; False when one waits already, when no
        place is left for it, or when ``tries`` random members were all seen (the budget leaves
        few members). Called from the repeat's own trial, which is running."""
        trials = study.get_trials(deepcopy=False)
        if any(t.state == WAITING for t in trials):
            return False
        evaluated = sum(is_evaluated(t) for t in trials)
        running_others = sum(t.state == RUNNING for t in trials) - 1
        if self.total is not None and evaluated + running_others >= self.total:
            return False
        seen = {t.user_attrs.get("digest") for t in trials}
        for _ in range(self.tries):
            arch = self.members.sample_random(self.rng)
            if arch.digest() not in seen:
                study.enqueue_trial(self.space.choices(arch), user_attrs={EXPLORATION: True})
                return True
        return False
