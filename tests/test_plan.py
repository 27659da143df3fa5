"""The search's expected duration: the estimate from timed work, the timing itself, and the
revisions from the real warm-up (no timing assertions: fixed timings and a fake clock)."""

import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mbnas.budget import Budget
from mbnas.data import DataConfig, make_loader
from mbnas.evaluators import evaluator_config
from mbnas.search.forecast import FIRST_REVISION, Forecast
from mbnas.search.plan import (
    TRIAL_OVERHEAD_S,
    Estimate,
    describe_evaluator,
    estimate,
    validation_batches,
)
from mbnas.search.timing import Timings, measure
from mbnas.space import load_space

TINY = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
CONF = Path(__file__).parent.parent / "conf" / "evaluator"
DATA = DataConfig(resolution=16, num_classes=4, synthetic_size=200, batch_size=16)
TIMES = Timings(warmup_step=2.0, extract=0.5, train_step=0.25, forward=0.1, latency=0.3)
SUPERNET = {"name": "supernet", "warmup_steps": 300, "finetune_steps": 20, "bn_images": 40,
            "eval_batches": None}


def test_validation_batches_match_the_split_without_drawing_it():
    for data in (DATA, DataConfig(resolution=8, synthetic_size=1000, val_fraction=0.25,
                                  batch_size=64)):
        assert validation_batches(data, None) == len(make_loader(data, "val"))
    assert validation_batches(DATA, 1) == 1


def test_a_trained_candidate_costs_its_cut_steps_forwards_latency_and_overhead():
    expected = estimate(SUPERNET, DATA, TIMES)
    forwards = 3 + validation_batches(DATA, None)  # ceil(40 / 16) BN batches, validation
    assert expected.trial_s == pytest.approx(0.5 + 20 * 0.25 + forwards * 0.1 + 0.3
                                             + TRIAL_OVERHEAD_S)
    assert (expected.warmup_steps, expected.warmup_step_s, expected.setup_s) == (300, 2.0, 0.0)
    assert expected.total(10) == pytest.approx(600 + 10 * expected.trial_s)


def test_a_checkpoint_warm_up_steps_are_not_expected_again():
    assert estimate(SUPERNET, DATA, TIMES, steps_done=120).warmup_steps == 180
    assert estimate(SUPERNET, DATA, TIMES, steps_done=300).warmup_s == 0.0


def test_scoring_evaluators_pay_for_their_reference_members_once():
    zero_cost = {"name": "zero_cost", "reference_archs": 50, "batch_size": 64}
    expected = estimate(zero_cost, DATA, TIMES)
    assert expected.warmup_steps == 0
    assert expected.setup_s == pytest.approx(50 * (0.5 + 0.25))
    assert expected.trial_s == pytest.approx(0.5 + 0.25 + 0.3 + TRIAL_OVERHEAD_S)
    predictor = {"name": "predictor", "warmup_steps": 100, "label_archs": 30}
    assert estimate(predictor, DATA, TIMES).setup_s == pytest.approx(30 * 0.75)
    assert estimate(predictor, DATA, TIMES, steps_done=100).setup_s == 0.0  # labelled then


def test_architecture_features_alone_are_counted_not_run():
    counted = {"name": "zero_cost", "reference_archs": 50,
               "features": {"macs": 1.0, "activations": 1.0, "naswot": 0.0}}
    expected = estimate(counted, DATA, TIMES)
    assert expected.setup_s == 0.0
    assert expected.trial_s == pytest.approx(0.3 + TRIAL_OVERHEAD_S)
    with_a_proxy = {**counted, "features": {"macs": 1.0, "naswot": 1.0}}
    assert estimate(with_a_proxy, DATA, TIMES).trial_s == pytest.approx(expected.trial_s + 0.75)


def test_the_run_own_work_is_timed_and_leaves_the_generators_as_they_were():
    space = load_space(str(TINY)).replace(num_classes=4)
    settings = {**SUPERNET, "num_random": 1, "distill": True, "budget_aware": True,
                "optim": {"grad_clip": 5.0}}
    measured = []
    before = torch.get_rng_state()
    times = measure(space, Budget.from_config({"macs": "0.6M"}), DATA, settings,
                    torch.device("cpu"), seed=0, warm_up=True,
                    measure_latency=lambda arch: measured.append(arch))
    assert torch.equal(torch.get_rng_state(), before)
    assert min(times.warmup_step, times.extract, times.train_step, times.forward,
               times.latency) > 0
    assert len(measured) == 1 and measured[0].name == space.name
    unwarmed = measure(space, Budget.from_config({}), DATA, settings, torch.device("cpu"),
                       seed=0, warm_up=False)
    assert unwarmed.warmup_step == 0 and unwarmed.latency == 0
    scratch = measure(space, Budget.from_config({}), DATA, {"name": "scratch", "train_steps": 3},
                      torch.device("cpu"), seed=0, warm_up=True)  # no supernet: built
    assert scratch.warmup_step == 0 and scratch.train_step > 0


def test_every_shipped_evaluator_is_estimated_from_its_own_settings():
    expected = {}
    for name in ("supernet", "predictor", "zero_cost", "scratch"):
        settings = dataclasses.asdict(evaluator_config(OmegaConf.load(CONF / f"{name}.yaml")))
        expected[name] = estimate(settings, DATA, TIMES)
    assert expected["supernet"].warmup_steps == 300 and expected["scratch"].warmup_steps == 0
    assert expected["predictor"].setup_s > 0 and expected["zero_cost"].setup_s > 0
    trials = [expected[name].trial_s for name in ("scratch", "supernet", "zero_cost")]
    assert trials == sorted(trials, reverse=True)  # 200 steps, 20 steps, none


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(("settings", "line"), [
    ({"name": "supernet", "warmup_steps": 300, "finetune_steps": 20, "optim": {"lr": 0.1}},
     "supernet (warmup_steps 300, finetune_steps 20)"),
    ({"name": "zero_cost", "features": {"macs": 1.0}, "batch_size": 8},
     "zero_cost (features: macs 1)"),
    ({"name": "predictor", "warmup_steps": 3, "proxy_features": {"naswot": 1.0, "swap": 0.5}},
     "predictor (warmup_steps 3; proxy_features: naswot 1, swap 0.5)"),
    ({"name": "zero_cost", "features": {}}, "zero_cost"),
])
def test_the_plan_says_what_an_evaluator_scores_with(settings, line):
    assert describe_evaluator(settings) == line


def run_warmup(forecast: Forecast, clock: Clock, steps: range, pace: float) -> None:
    for step in steps:
        clock.now += pace
        forecast.warmup_step(step)


def test_the_real_warm_up_pace_revises_the_expected_duration_once_known():
    clock, lines = Clock(), []
    expected = Estimate(warmup_steps=100, warmup_step_s=1.0, setup_s=0.0, trial_s=10.0)
    forecast = Forecast(expected, trials=30, clock=clock, write=lines.append)
    run_warmup(forecast, clock, range(1, FIRST_REVISION + 1), pace=3.0)
    assert lines == []  # the first step is untimed: FIRST_REVISION timed ones are needed
    run_warmup(forecast, clock, range(FIRST_REVISION + 1, FIRST_REVISION + 2), pace=3.0)
    assert len(lines) == 1
    # 3x slower than timed: the warm-up's 94 steps left at 3 s, the candidates 3x too.
    left = (100 - FIRST_REVISION - 1) * 3.0 + 30 * 30.0
    assert f"about {left / 60:.0f} min left" in lines[0]
    assert "3.00 s a step" in lines[0] and "estimated 1.00 s" in lines[0]
    assert "30 × 30 s" in lines[0]


def test_a_steady_pace_is_not_repeated_but_a_changed_one_and_the_end_are():
    clock, lines = Clock(), []
    expected = Estimate(warmup_steps=200, warmup_step_s=1.0, setup_s=0.0, trial_s=10.0)
    forecast = Forecast(expected, trials=10, clock=clock, write=lines.append)
    run_warmup(forecast, clock, range(1, 100), pace=1.0)
    assert len(lines) == 1  # on course: the first revision only
    run_warmup(forecast, clock, range(100, 200), pace=4.0)  # the machine got busy
    assert len(lines) >= 2 and "warm-up at" in lines[1]
    assert any("at 4.00 s a step" in line for line in lines)  # the recent pace, not the mean
    run_warmup(forecast, clock, range(200, 201), pace=4.0)
    assert "warm-up done" in lines[-1]


def test_no_warm_up_to_run_means_no_revision():
    clock, lines = Clock(), []
    forecast = Forecast(Estimate(0, 0.0, 0.0, 10.0), trials=5, clock=clock,
                        write=lines.append)
    run_warmup(forecast, clock, range(1, 40), pace=1.0)
    assert lines == []
