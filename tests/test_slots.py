"""Exactly n_trials for any number of workers, duplicates, retries of a dead worker's trial."""

import gc
import threading
import time
from pathlib import Path

import optuna
import pytest

from mbnas.budget import Budget
from mbnas.evaluators import Evaluation
from mbnas.search import slots
from mbnas.search.callbacks import StopAtTotal
from mbnas.search.objective import Objective
from mbnas.search.slots import SLOT, TrialSlots, run_trials
from mbnas.search.storage import HeartbeatConfig, fail_stale_trials, open_storage
from mbnas.search.trials import EXPLORATION, record_duplicate, record_worker
from mbnas.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def trial_id(trial):
    """A running trial's storage id, through the storage's public API."""
    study_id = trial.storage.get_study_id_from_name(trial.study.study_name)
    return trial.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)


def finished(study, value=1.0, digest="d0"):
    trial = study.ask()
    trial.set_user_attr("digest", digest)
    study.tell(trial, value)


def test_a_slot_is_taken_while_the_total_is_not_reached():
    study = optuna.create_study(direction="maximize")
    finished(study)
    trial = study.ask()
    assert TrialSlots(total=2).claim(trial, "d1") is None
    assert trial.user_attrs[SLOT] == "d1"


def test_no_slot_once_the_total_is_reached():
    study = optuna.create_study(direction="maximize")
    finished(study)
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="n_trials reached"):
        TrialSlots(total=1).claim(trial, "d1")
    assert "n_trials reached" in trial.user_attrs["pruned_reason"]


def test_a_finished_architecture_lends_its_score_unless_asked_to_evaluate_again():
    study = optuna.create_study(direction="maximize")
    finished(study, 0.7, "same")
    earlier = TrialSlots(total=5).claim(study.ask(), "same")
    assert earlier is not None and earlier.number == 0
    assert TrialSlots(total=5, reuse_duplicates=False).claim(study.ask(), "same") is None


def test_a_repeat_takes_its_score_and_no_slot():
    # TPE re-proposes its favourites often: were repeats counted, they would use up n_trials.
    study = optuna.create_study(direction="maximize")
    finished(study, 0.7, "same")
    repeat = study.ask()
    earlier = TrialSlots(total=2).claim(repeat, "same")
    assert earlier is not None and repeat.user_attrs[SLOT] == ""
    record_duplicate(repeat, earlier)
    study.tell(repeat, 0.7)
    assert TrialSlots(total=2).claim(study.ask(), "d1") is None  # 1 evaluated of 2


def test_a_full_study_waits_for_the_trials_in_flight(tmp_path):
    storage = open_storage(None, tmp_path / "study.db")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    other = study.ask()
    other.set_user_attr(SLOT, "d0")  # another worker's trial, training
    mine = study.ask()
    threading.Timer(0.5, lambda: study.tell(other, 1.0)).start()
    started = time.monotonic()
    with pytest.raises(optuna.TrialPruned):  # the other one filled the last slot
        TrialSlots(total=1, poll_s=0.1).claim(mine, "d1")
    assert time.monotonic() - started >= 0.4


def test_a_running_twin_is_waited_for_and_its_score_reused():
    study = optuna.create_study(direction="maximize")
    twin = study.ask()
    twin.set_user_attr(SLOT, "same")
    twin.set_user_attr("digest", "same")
    threading.Timer(0.3, lambda: study.tell(twin, 0.9)).start()
    earlier = TrialSlots(total=5, poll_s=0.1).claim(study.ask(), "same")
    assert earlier is not None and earlier.number == twin.number


def test_sampled_trials_give_way_to_enqueued_ones():
    study = optuna.create_study(direction="maximize")
    finished(study)
    sampled = study.ask()
    study.enqueue_trial({"x": 1.0})  # e.g. the retry of a trial whose worker died
    study.enqueue_trial({"x": 2.0})
    with pytest.raises(optuna.TrialPruned, match="gave its place"):
        TrialSlots(total=2).claim(sampled, "d1")
    enqueued = study.ask()  # enqueued trials take the places in turn, whoever else waits
    assert TrialSlots(total=2).claim(enqueued, "d2") is None


def test_an_exploration_gives_way_to_a_waiting_retry():
    # Enqueued after a repeat, an exploration is a guess: the retry of a dead worker's trial and
    # a seed keep their place (the retry would otherwise find n_trials reached and be pruned).
    def exploration_then_retry_waiting() -> optuna.Study:
        study = optuna.create_study(direction="maximize")
        finished(study)
        study.enqueue_trial({"x": 1.0}, user_attrs={EXPLORATION: True})
        study.enqueue_trial({"x": 2.0})
        return study

    study = exploration_then_retry_waiting()
    exploration = study.ask()
    assert exploration.user_attrs[EXPLORATION]
    with pytest.raises(optuna.TrialPruned, match="gave its place"):
        TrialSlots(total=2).claim(exploration, "d1")
    assert TrialSlots(total=2).claim(study.ask(), "d2") is None  # the retry takes the place
    study = exploration_then_retry_waiting()
    assert TrialSlots(total=3).claim(study.ask(), "d1") is None  # room for both: it goes on


def test_any_number_of_workers_reach_exactly_n_trials(tmp_path):
    """Four workers (each with its own connection, as separate processes have) and trials that
    finish at random moments: the total of trained trials is n_trials, never more."""
    total = 7

    def objective(trial):
        TrialSlots(total=total, poll_s=0.02).claim(trial, f"d{trial.number}")
        time.sleep(0.01 * (trial.number % 3))
        return 1.0

    def worker():
        study = optuna.load_study(study_name="s", storage=open_storage(None, tmp_path / "s.db"))
        for _ in range(total):  # each worker would do it all alone
            if len(study.get_trials(states=(COMPLETE,))) >= total:
                break
            study.optimize(objective, n_trials=1)

    optuna.create_study(study_name="s", storage=open_storage(None, tmp_path / "s.db"))
    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    study = optuna.load_study(study_name="s", storage=open_storage(None, tmp_path / "s.db"))
    assert len(study.get_trials(states=(COMPLETE,))) == total


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask() outside optimize
def test_a_dead_workers_trial_is_failed_and_retried_with_the_same_architecture(tmp_path):
    heartbeat = HeartbeatConfig(interval_s=1, grace_s=2, retries=1)
    storage = open_storage(None, tmp_path / "study.db", heartbeat)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    space, evaluated = load_space(TINY_SPACE), []

    def evaluate(arch, log, checkpoint=None):
        evaluated.append(arch)
        return Evaluation(0.5, 0.0)

    objective = Objective(space, Budget(), "accuracy", evaluate, None, tmp_path,
                          TrialSlots(total=2))
    dead = study.ask()  # sampled, then its worker died without a word
    space.sample(dead)
    storage.record_heartbeat(trial_id(dead))
    time.sleep(3)
    fail_stale_trials(study)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"]
    study.optimize(objective, n_trials=1)
    retry = study.trials[1]
    assert retry.state == COMPLETE and retry.params == study.trials[0].params
    assert retry.system_attrs["failed_trial"] == dead.number
    assert space.choices(evaluated[0]) == study.trials[0].params


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_workers_trial_keeps_its_slot_until_its_retry_is_enqueued(monkeypatch):
    """Optuna fails a stale trial, then enqueues its retry: a trial reading the study between
    the two waits instead of taking the slot the retry needs (the retry would find n_trials
    reached and be pruned)."""
    def dead_trial_failed_not_yet_retried() -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
        study = optuna.create_study(direction="maximize")
        finished(study)
        dead = study.ask()
        dead.set_user_attr(SLOT, "d1")  # training when its worker died
        dead.storage.set_trial_state_values(trial_id(dead), optuna.trial.TrialState.FAIL)
        return study, study.trials[dead.number]

    study, dead = dead_trial_failed_not_yet_retried()
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    threading.Timer(0.3, lambda: retry(study, dead)).start()
    # Giving way to the retry shows it waited: taking the slot at once returns None instead.
    with pytest.raises(optuna.TrialPruned, match="gave its place"):
        TrialSlots(total=2, poll_s=0.05).claim(study.ask(), "d2")
    assert TrialSlots(total=2).claim(study.ask(), "d1") is None  # the retry trains
    # A retry never enqueued (none left, or its enqueuer died too) holds the slot only briefly.
    monkeypatch.setattr(slots, "RETRY_AWAITED_S", 0.0)
    study, _ = dead_trial_failed_not_yet_retried()
    assert TrialSlots(total=2).claim(study.ask(), "d2") is None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_worker_whose_trial_was_taken_for_dead_goes_on():
    """Suspended past the grace period, a worker finds its trial failed and retried by another:
    it says so and carries on instead of stopping with a traceback."""
    study = optuna.create_study(direction="maximize")
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback()

    def objective(trial):
        record_worker(trial)
        if trial.number == 0:  # what another worker's fail_stale_trials does meanwhile
            trial.storage.set_trial_state_values(trial_id(trial), optuna.trial.TrialState.FAIL)
            retry(study, study.trials[0])
        return 1.0

    run_trials(study, objective, [StopAtTotal(evaluated=2, max_pruned=10)])
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].system_attrs["failed_trial"] == 0


def test_other_errors_still_stop_the_worker():
    study = optuna.create_study(direction="maximize")

    def objective(trial):
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError, match="a real bug"):
        run_trials(study, objective, [])


def test_trials_collect_only_what_was_made_after_the_search_started():
    """What exists when the trials start (data, reference sample, supernet) is frozen out of
    the collection after each trial, and handed back to the collector when they end, also on
    an error."""
    study = optuna.create_study(direction="maximize")
    frozen_during = []

    def objective(trial):
        frozen_during.append(gc.get_freeze_count())
        if trial.number == 1:
            raise RuntimeError("stop")
        return 1.0

    with pytest.raises(RuntimeError, match="stop"):
        run_trials(study, objective, [])
    assert frozen_during[0] > 1000 and gc.get_freeze_count() == 0
