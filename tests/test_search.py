"""Unit tests of the search's pieces: seeds, budgets as constraints, stopping, Pareto sets."""

from pathlib import Path

import optuna
import pytest

import mbnas
from mbnas.__main__ import main
from mbnas.budget import Budget
from mbnas.evaluators import Evaluation
from mbnas.search.callbacks import StopAtTotal
from mbnas.search.exploration import ExploreAfterRepeats
from mbnas.search.objective import Objective
from mbnas.search.report import format_report, report
from mbnas.search.study import enqueue_seeds, make_sampler, open_study
from mbnas.search.trials import pareto_indices
from mbnas.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"


def test_reference_seeds_that_belong_to_the_space_are_tried_first():
    space = load_space("mobilenet_v3").replace(num_classes=10)
    study = optuna.create_study(direction="maximize")
    assert enqueue_seeds(study, space, ["mobilenet_v3_large", "efficientnet_b0"]) == [
        "efficientnet_b0"]
    arch = space.sample(study.ask())
    reference = mbnas.load_arch("mobilenet_v3_large")
    assert arch.stage_blocks() == reference.stage_blocks()
    assert mbnas.count(arch).params == mbnas.count(reference.replace(num_classes=10)).params


def make_objective(tmp_path, budget: Budget, scores: list) -> Objective:
    def evaluate(arch, log, checkpoint=None):
        scores.append(arch)
        return Evaluation(0.5, 0.0)

    space = load_space(TINY_SPACE)
    return Objective(space, budget, "accuracy", evaluate, None, tmp_path)


def test_over_budget_candidates_are_pruned_untrained_with_reason_and_constraints(tmp_path):
    trained: list = []
    objective = make_objective(tmp_path, Budget(macs=500_000), trained)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=25)
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert pruned and complete and len(trained) <= len(complete)
    for trial in pruned:
        assert trial.user_attrs["macs"] > 500_000 and "budget" in trial.user_attrs["pruned_reason"]
        assert trial.constraints["macs"] > 0
    for trial in complete:
        assert trial.user_attrs["macs"] <= 500_000 and trial.constraints["macs"] <= 0
    # optuna-dashboard colours trials feasible or not from Optuna's list form of the values.
    for trial in pruned + complete:
        assert trial.system_attrs["constraints"] == [trial.constraints["macs"]]
    assert all(mbnas.count(arch).macs <= 500_000 for arch in trained)


def test_a_latency_budget_without_a_measurement_never_passes(tmp_path):
    objective = make_objective(tmp_path, Budget(latency_ms=5.0), [])
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.PRUNED}


def test_duplicate_candidates_reuse_the_earlier_score(tmp_path):
    trained: list = []
    objective = make_objective(tmp_path, Budget(), trained)
    study = optuna.create_study(direction="maximize")
    params = objective.space.choices(objective.space.smallest())
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=2)
    assert study.trials[0].params == study.trials[1].params
    assert len(trained) == 1 and study.trials[1].user_attrs["duplicate_of"] == 0
    assert study.trials[1].value == study.trials[0].value


def test_a_repeat_is_followed_by_an_unseen_member_within_budget(tmp_path):
    trained: list = []
    objective = make_objective(tmp_path, Budget(macs=500_000), trained)
    objective.explore = ExploreAfterRepeats(objective.space, objective.budget, seed=0)
    study = optuna.create_study(direction="maximize")
    params = objective.space.choices(objective.space.smallest())
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=3)
    first, repeat, explored = study.trials
    assert repeat.user_attrs["duplicate_of"] == 0 and explored.system_attrs.get("fixed_params")
    assert explored.user_attrs["digest"] != first.user_attrs["digest"]
    assert explored.user_attrs["macs"] <= 500_000 and len(trained) == 2
    # Only one exploration waits at a time, and none is queued once every member was seen.
    assert objective.explore.after_repeat(study) is True
    assert objective.explore.after_repeat(study) is False


def test_exploration_gives_up_once_every_member_was_seen(tmp_path):
    two_members = tmp_path / "two.yaml"  # one choice: the activation of a single block
    two_members.write_text("""name: two
resolution: 32
num_classes: 10
stem: {out: 8, kernel: 3, stride: 2, act: hswish}
stages:
- {block: mbconv, kernel: 3, expand: 3, se: 0, act: [relu, hswish], depth: 1, out: 16, stride: 2}
head: {channels: 64, act: hswish}
""")
    objective = make_objective(tmp_path, Budget(), [])
    objective.space = load_space(two_members)
    explore = ExploreAfterRepeats(objective.space, Budget(), seed=0)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    assert explore.after_repeat(study) is True  # the other activation
    study.optimize(objective, n_trials=1)
    assert explore.after_repeat(study) is False


def test_no_exploration_is_queued_once_the_places_are_taken(tmp_path):
    # Queued then, it would be left waiting after the search stops.
    objective = make_objective(tmp_path, Budget(), [])
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    study.ask()  # the repeat's own trial, running
    full = ExploreAfterRepeats(objective.space, Budget(), seed=0, total=1)
    assert full.after_repeat(study) is False
    assert ExploreAfterRepeats(objective.space, Budget(), seed=0, total=2).after_repeat(study)


def test_the_report_lists_a_network_once_and_counts_its_repeats_apart(tmp_path):
    objective = make_objective(tmp_path, Budget(), [])
    study = optuna.create_study(direction="maximize")
    params = objective.space.choices(objective.space.smallest())
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=2)
    result = report(study, "accuracy")
    assert result["counts"]["complete"] == 2 and result["repeats"] == 1
    assert [row["number"] for row in result["top"]] == [0]
    assert "2 complete (1 of them repeats of a scored architecture" in format_report(result)


def test_stop_counts_trained_candidates_only():
    study = optuna.create_study(direction="maximize")
    stop = StopAtTotal(evaluated=2, max_pruned=100)

    def objective(trial):
        if trial.number % 2:
            raise optuna.TrialPruned()
        return 1.0

    study.optimize(objective, n_trials=50, callbacks=[stop])
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    assert len(study.trials) == 3


def test_stop_counts_repeats_of_scored_architectures_apart_and_gives_up_on_too_many():
    study = optuna.create_study(direction="maximize")
    stop = StopAtTotal(evaluated=3, max_pruned=5)

    def objective(trial):
        if trial.number:  # the sampler proposes the first architecture again and again
            trial.set_user_attr("duplicate_of", 0)
        return 1.0

    study.optimize(objective, n_trials=50, callbacks=[stop])
    assert len(study.trials) == 6 and "5 re-sampled architectures" in stop.reason
    assert "1 distinct ones evaluated" in stop.reason


def test_stop_gives_up_when_the_budget_leaves_too_little():
    study = optuna.create_study(direction="maximize")
    stop = StopAtTotal(evaluated=5, max_pruned=4)

    def objective(trial):
        raise optuna.TrialPruned()

    study.optimize(objective, n_trials=50, callbacks=[stop])
    assert len(study.trials) == 4 and "raise it" in stop.reason


def test_over_budget_candidates_end_a_search_only_in_a_row():
    study = optuna.create_study(direction="maximize")
    stop = StopAtTotal(evaluated=5, max_pruned=4)

    def objective(trial):  # three over budget for each one within it, as random search at 20M
        if trial.number % 4 != 3:
            raise optuna.TrialPruned()
        return 1.0

    study.optimize(objective, n_trials=50, callbacks=[stop])
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 5
    assert len(study.trials) == 20 and not stop.reason


@pytest.mark.parametrize("points, front", [
    ([{"accuracy": .5, "macs": 1}, {"accuracy": .6, "macs": 2}, {"accuracy": .4, "macs": 3}],
     [0, 1]),
    ([{"accuracy": .5, "macs": 1}, {"accuracy": .5, "macs": 1}], [0, 1]),
    ([{"accuracy": .9, "macs": 1}, {"accuracy": .6, "macs": 2}], [0]),
])
def test_pareto_front(points, front):
    assert pareto_indices(points, "macs") == front


def test_a_repeat_is_followed_by_an_untried_neighbour_of_the_best_candidate(tmp_path):
    def macs_score(arch, log, checkpoint=None):  # the larger the better: the best is known
        return Evaluation(float(mbnas.count(arch).macs), 0.0)

    space = load_space(TINY_SPACE)
    objective = Objective(space, Budget(), "accuracy", macs_score, None, tmp_path,
                          explore=ExploreAfterRepeats(space, Budget(), seed=0))
    study = optuna.create_study(direction="maximize")
    small, large = space.choices(space.smallest()), space.choices(space.largest())
    for params in (large, small, small):  # the best, another, then a repeat
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=4)
    explored = study.trials[3]
    assert explored.user_attrs["exploration"] and study.trials[2].user_attrs["duplicate_of"] == 1
    # One decision away from the best (a shallower stage drops its layer's decisions), not
    # from the repeat.
    changed = {k for k, v in explored.params.items() if k in large and v != large[k]}
    assert len(changed) == 1, changed
    assert explored.user_attrs["digest"] not in {t.user_attrs["digest"] for t in study.trials[:3]}


def test_a_resumed_study_draws_new_candidates_instead_of_replaying_its_first(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")

    def draws(n):
        study = open_study("s", storage, lambda offset: make_sampler("random", offset),
                           "accuracy", {"seed": 0})
        before = len(study.trials)
        study.optimize(lambda t: float(t.suggest_int("x", 0, 10**9)), n_trials=n)
        return [t.params["x"] for t in study.trials[before:]]

    first = draws(5)
    assert not set(first) & set(draws(5))
    # A fresh study with the same seed draws the same candidates: runs stay reproducible.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'again.db'}")
    assert draws(5) == first


def test_a_worker_explores_with_its_own_samplers_seed(tmp_path, monkeypatch):
    # The explorations after repeats follow the process's sampler: the run's creator explores
    # from seed= (reproducible), a worker joining it (here: the run resumed) from its own seed.
    seeds = []

    class Recorded(ExploreAfterRepeats):
        def __init__(self, space, budget, seed, total=None):
            seeds.append(seed)
            super().__init__(space, budget, seed, total)

    monkeypatch.setattr("mbnas.search.run.ExploreAfterRepeats", Recorded)
    monkeypatch.chdir(tmp_path)
    search = ["search", "+budget.macs=0.5M", "preset=smoke", f"space={TINY_SPACE}",
              "data.synthetic_size=128", "latency=none", "evaluator=zero_cost", "seed=3",
              "startup_trials=2", "name=run"]
    assert main([*search, "n_trials=2"]) == 0
    assert main([*search, "n_trials=3"]) == 0
    assert seeds[0] == 3 and seeds[1] != 3


def test_workers_joining_a_study_are_seeded_apart_from_its_creator_and_each_other(tmp_path):
    # Seeded alike, a second random-search worker started with the first replayed its
    # candidates, each one a repeat or an over-budget candidate again.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    offset_of = {}

    def sampler_for(offset):
        sampler = make_sampler("random", offset)
        offset_of[id(sampler)] = offset
        return sampler

    # No trial yet: all three start at once.
    studies = [open_study("s", storage, sampler_for, "accuracy", {"seed": 0}) for _ in range(3)]
    offsets = [offset_of[id(study.sampler)] for study in studies]
    assert offsets[0] == 0 and len(set(offsets)) == 3
