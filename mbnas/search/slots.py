"""Exactly ``n_trials`` evaluated candidates, and no architecture evaluated twice, for any number
of workers sharing one study.

A trial whose candidate is within budget takes one of the study's ``n_trials`` *slots* before it
trains: it marks itself (the ``slot`` attribute, holding its architecture's digest), then reads
the study, and goes on only if the finished trials and the marked running ones, itself included,
fit in ``n_trials``. Marks are written before they are read, so of any trials that together
would overshoot, the last to mark itself sees all the others and gives way: the total never
exceeds ``n_trials``. A trial that gives way unmarks itself and

- ends (pruned, untrained) once the study holds ``n_trials`` finished candidates;
- ends likewise when an enqueued trial (a seed, or the retry of a trial whose worker died) waits
  for the slot: those go first, and this worker takes the enqueued one next (an exploration,
  enqueued after a repeat, is not owed a place and gives way like a sampled trial);
- otherwise waits for the trials in flight on other workers, failing those whose worker stopped
  beating (:func:`~mbnas.search.storage.fail_stale_trials`), and tries again.

A dead worker's trial keeps its slot until its retry is enqueued: Optuna fails the trial, then
enqueues the retry, and a trial reading the study between the two would otherwise take the slot
and leave the retry none (it would find ``n_trials`` reached and be pruned).

The same read finds the architecture's earlier trials (unless duplicates are to be evaluated
again): a finished one lends its score, and the repeat takes no slot (it costs nothing, so
``n_trials`` counts distinct candidates: samplers such as TPE re-propose the best ones often,
and counting those would spend the budget on a few architectures); one running on another worker
is waited for.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import optuna

from mbnas.search.storage import fail_stale_trials
from mbnas.search.trials import (
    COMPLETE,
    EXPLORATION,
    FAILED_REASON,
    TrialRecord,
    is_evaluated,
    record_pruned,
    worker_name,
)

SLOT = "slot"  # user attribute: the digest of the architecture a running trial holds a slot for
RUNNING, WAITING, FAIL = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING,
                          optuna.trial.TrialState.FAIL)
# System attributes Optuna gives enqueued trials: every enqueued one, and the retry of a trial
# whose worker died.
ENQUEUED, RETRY = "fixed_params", "failed_trial"
# How long a trial failed for a silent worker keeps its slot awaiting its retry: the retry is
# enqueued at once by the worker that failed it, unless that one dies too or no retries are left.
RETRY_AWAITED_S = 10.0
# Its own generator: every worker seeds the global one alike, so their jitters would coincide.
JITTER = random.Random()


@dataclass(frozen=True)
class StudyView:
    """What one read of the study says about a trial's slot and its architecture."""

    complete: int  # finished, evaluated candidates (repeats that reused a score left out)
    held: int  # slots held by other running trials, and by dead ones awaiting their retry
    waiting: int  # enqueued trials not started yet
    first: bool  # this trial goes before sampled ones: a seed or a retry
    earlier: TrialRecord | None  # a finished trial of the same architecture
    twin_running: bool  # another running trial holds a slot for the same architecture

    @classmethod
    def read(cls, study: optuna.Study, number: int, digest: str) -> StudyView:
        trials = study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == number)
        others = [t for t in trials if t.state == RUNNING and t.number != number
                  and t.user_attrs.get(SLOT)]
        earlier = next((t for t in trials if t.state == COMPLETE
                        and t.user_attrs.get("digest") == digest), None)
        return cls(complete=sum(is_evaluated(t) for t in trials),
                   held=len(others) + len(awaiting_retry(trials)),
                   waiting=sum(t.state == WAITING for t in trials),
                   first=goes_first(me),
                   earlier=TrialRecord.of(earlier) if earlier else None,
                   twin_running=any(t.user_attrs[SLOT] == digest for t in others))

    def fits(self, total: int) -> bool:
        """Whether this trial's slot fits in ``total``, leaving room for enqueued trials unless
        it goes first itself."""
        queued = 0 if self.first else self.waiting
        return self.complete + self.held + queued + 1 <= total


@dataclass
class TrialSlots:
    """The study's ``total`` slots (``None``: no limit) shared by every worker."""

    total: int | None = None
    reuse_duplicates: bool = True  # false: an architecture sampled again is evaluated again
    poll_s: float = 1.0

    def claim(self, trial: optuna.Trial, digest: str) -> TrialRecord | None:
        """Hold a slot for ``trial``'s architecture: ``None`` to evaluate it, or the earlier
        trial whose score it reuses. Raises ``TrialPruned`` when the trial is not to train."""
        said = False
        while True:
            trial.set_user_attr(SLOT, digest)
            view = StudyView.read(trial.study, trial.number, digest)
            total = self.total if self.total is not None else sys.maxsize
            if view.complete >= total:
                self._give_up(trial, "not trained: n_trials reached (all workers together)")
            if self.reuse_duplicates and view.earlier is not None:
                trial.set_user_attr(SLOT, "")  # a reused score takes no slot
                return view.earlier
            if view.fits(total) and not (self.reuse_duplicates and view.twin_running):
                return None
            trial.set_user_attr(SLOT, "")
            if view.waiting and not view.first:
                self._give_up(trial, "not trained: gave its place to an enqueued trial "
                              "(a seed, or the retry of a trial whose worker died)")
            if not said:
                print(f"  waiting for the trials in flight on other workers ({view.complete} "
                      f"done, {view.held} running)", flush=True)
                said = True
            # Jitter: trials that keep giving way to each other at once soon stop colliding.
            time.sleep(self.poll_s * JITTER.uniform(0.5, 1.5))
            fail_stale_trials(trial.study)

    @staticmethod
    def _give_up(trial: optuna.Trial, reason: str) -> None:
        trial.set_user_attr(SLOT, "")
        record_pruned(trial, [reason])
        raise optuna.TrialPruned(reason)


def awaiting_retry(trials: Sequence[optuna.trial.FrozenTrial]) -> list[int]:
    """The trials that held a slot when their worker went silent, failed moments ago and not yet
    enqueued again (see the module's docstring)."""
    retried = retried_numbers(trials)
    now = datetime.now()  # Optuna stamps datetime_complete in local time too
    return [t.number for t in trials
            if t.state == FAIL and t.user_attrs.get(SLOT) and FAILED_REASON not in t.user_attrs
            and t.number not in retried and t.datetime_complete is not None
            and (now - t.datetime_complete).total_seconds() < RETRY_AWAITED_S]


def goes_first(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` is owed a place before sampled trials: a retry, or a trial enqueued
    other than to explore (a seed)."""
    if RETRY in trial.system_attrs:
        return True
    return ENQUEUED in trial.system_attrs and not trial.user_attrs.get(EXPLORATION)


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], object],
               callbacks: Sequence[Callable],
               catch: tuple[type[Exception], ...] = (), collect: bool = True) -> None:
    """``study.optimize`` until a callback stops it, going on when this worker's trial was
    failed by another worker meanwhile: this one fell silent longer than the heartbeat's grace
    period (suspended, or cut off from the database), so its trial was taken for dead and
    enqueued again. Optuna then fails to tell the trial (in one of several ways); any other
    error propagates, except those in ``catch``, which fail their trial only. ``collect``:
    collect garbage after each trial (for evaluators that build networks)."""
    # The collection after each trial frees what a candidate left in reference cycles (its
    # model, hooks); freezing what exists now (data, the evaluator's reference sample, the
    # warmed-up supernet) spares it from walking those objects every time: on the cifar space
    # that walk took about a fifth of the search.
    gc.freeze()
    try:
        while True:
            before = taken_over(study)
            try:
                study.optimize(objective, callbacks=list(callbacks), gc_after_trial=collect,
                               catch=catch)
                return
            except Exception:
                lost = taken_over(study) - before
                if not lost:
                    raise
                print(f"  trial #{min(lost)} of this worker was taken for dead by another "
                      "worker (silent for longer than heartbeat.grace_s) and is retried; going "
                      "on", flush=True)
    finally:
        gc.unfreeze()


def taken_over(study: optuna.Study) -> set[int]:
    """This worker's trials that another worker failed as stale and enqueued again."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    me = worker_name()
    return {t.number for t in trials if t.state == FAIL and t.number in retried
            and t.user_attrs.get("worker") == me}


def retried_numbers(trials: Sequence[optuna.trial.FrozenTrial]) -> set[int]:
    """The numbers of the trials enqueued again after their worker died."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", ())}
