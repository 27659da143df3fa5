"""Multi-fidelity search: the scratch evaluator's checkpoints, the pruners, and a stopped
candidate recorded as evaluated with the step it was stopped at."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from mbnas.budget import Budget
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.evaluators import Evaluation, EvaluationContext, evaluator_config, make_evaluator
from mbnas.evaluators.brief_training import train_briefly
from mbnas.nn import build
from mbnas.search.objective import Objective
from mbnas.search.pruning import check_pruner, make_pruner, reporting_to
from mbnas.search.report import format_report, report
from mbnas.search.trials import (
    STOPPED_AT,
    TrialRecord,
    best_trials,
    count_stopped,
    record_duplicate,
)
from mbnas.space import load_space
from mbnas.train import OptimConfig, infinite

TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
SPACE = load_space(TINY_SPACE)


def scratch(**settings):
    cfg = evaluator_config({"name": "scratch", "train_steps": 8, "eval_batches": 1,
                            "optim": {"warmup_steps": 0}, **settings})
    context = EvaluationContext(data=DataConfig(synthetic_size=64, batch_size=8),
                                device=torch.device("cpu"), seed=0, space=SPACE, budget=Budget())
    return make_evaluator(cfg, context)


def test_training_stops_when_told():
    model = build(SPACE.smallest())
    batches = infinite([(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))])
    seen = []
    train_briefly(model, batches, 10, OptimConfig(warmup_steps=0),
                  stop=lambda step: seen.append(step) or step == 3)
    assert seen == [1, 2, 3]


def test_scratch_offers_each_checkpoint_and_scores_where_it_was_stopped():
    arch, offered = SPACE.largest(), []
    full = scratch(checkpoint_every=2).evaluate(
        arch, checkpoint=lambda step, acc: offered.append((step, acc)))
    assert [step for step, _ in offered] == [2, 4, 6]  # the 8th step's validation is the score
    assert full.stopped_at is None
    assert full.score == pytest.approx(scratch().evaluate(arch).score)  # checks change nothing
    evaluator = scratch(checkpoint_every=2)
    stopped = evaluator.evaluate(arch, checkpoint=lambda step, acc: step == 4)
    assert stopped.stopped_at == 4 and stopped.score == pytest.approx(offered[1][1])
    # Every candidate trains on the same batches: a second evaluation repeats the first.
    assert evaluator.evaluate(arch).score == pytest.approx(full.score)


@pytest.mark.parametrize("name, kind", [
    ("none", optuna.pruners.NopPruner), ("median", optuna.pruners.MedianPruner),
    ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    ("hyperband", optuna.pruners.HyperbandPruner)])
def test_pruners_have_their_rungs_at_the_checkpoints(name, kind):
    cfg = evaluator_config({"name": "scratch", "train_steps": 450, "checkpoint_every": 50})
    check_pruner(name, "accuracy", cfg, processes=1)
    pruner = make_pruner(name, cfg)
    assert isinstance(pruner, kind)
    if name == "hyperband":
        assert (pruner._min_resource, pruner._max_resource) == (50, 450)


@pytest.mark.parametrize("name, settings, objective, processes, message", [
    ("asha", {}, "accuracy", 1, r"pruner: 'asha' is not allowed"),
    ("median", {"name": "zero_cost", "features": {"swap": 1}}, "accuracy", 1,
     r"scores a candidate in one go"),
    ("median", {}, "accuracy", 1, r"evaluator\.checkpoint_every: is 0"),
    ("median", {"checkpoint_every": 200}, "accuracy", 1,
     r"checkpoint_every: is 200: .*train_steps=200.*checkpoint_every=50"),
    ("hyperband", {"checkpoint_every": 5}, "accuracy-macs", 1, r"single-objective"),
    ("median", {"checkpoint_every": 5}, "accuracy", 2, r"2 processes"),
])
def test_a_pruner_that_cannot_work_is_refused(name, settings, objective, processes, message):
    cfg = evaluator_config({"name": "scratch", **settings})
    with pytest.raises(ConfigError, match=message):
        check_pruner(name, objective, cfg, processes)


def test_a_stopped_candidate_completes_with_its_step_and_counts(tmp_path):
    # A fixed accuracy per candidate at every checkpoint: the median pruner, after two
    # finished trials, stops a candidate below the median of those that reached a checkpoint.
    def evaluate(arch, log, checkpoint=None):
        accuracy = float(int(arch.digest()[:6], 16) % 1000)
        for step in (10, 20):
            if checkpoint(step, accuracy):
                return Evaluation(accuracy, 0.0, stopped_at=step)
        return Evaluation(accuracy, 0.0)

    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    objective = Objective(SPACE, Budget(), "accuracy", evaluate, None, tmp_path,
                          checkpoint_for=reporting_to)
    study.optimize(objective, n_trials=12)
    records = [TrialRecord.of(t) for t in study.trials if t.state.name == "COMPLETE"]
    stopped = [r for r in records if r.stopped_at_step is not None]
    assert stopped and all(r.stopped_at_step in (10, 20) for r in stopped)
    assert count_stopped(study) == len(stopped) < len(records)
    finished = [r.accuracy for r in records[:2]]
    assert all(r.accuracy < max(finished) for r in stopped)
    result = report(study, "accuracy")
    assert [r["stopped_at_step"] for r in result["trials"] if r["stopped_at_step"]] == [
        r.stopped_at_step for r in stopped]
    assert f"{len(stopped)} candidates stopped early by the pruner" in format_report(result)


def finished(value, **attrs):
    return optuna.trial.create_trial(value=value, user_attrs={"accuracy": value, **attrs})


def test_the_best_is_trained_to_the_end_when_a_stopped_candidate_scored_higher():
    study = optuna.create_study(direction="maximize")
    for trial in (finished(0.6), finished(0.9, **{STOPPED_AT: 10}), finished(0.7)):
        study.add_trial(trial)
    assert [r.accuracy for r in best_trials(study)] == [0.7]
    only_stopped = optuna.create_study(direction="maximize")
    only_stopped.add_trial(finished(0.5, **{STOPPED_AT: 10}))
    assert [r.stopped_at_step for r in best_trials(only_stopped)] == [10]


def test_a_repeat_of_a_stopped_candidate_is_stopped_too_but_counts_once():
    study = optuna.create_study(direction="maximize")
    study.add_trial(finished(0.6))
    study.add_trial(finished(0.9, **{STOPPED_AT: 10}))
    earlier = TrialRecord.of(study.trials[1])
    trial = study.ask()
    record_duplicate(trial, earlier)
    study.tell(trial, earlier.accuracy)
    assert TrialRecord.of(study.trials[2]).stopped_at_step == 10
    assert count_stopped(study) == 1
    assert [r.accuracy for r in best_trials(study)] == [0.6]
    assert "1 candidates stopped early" in format_report(report(study, "accuracy"))
