"""Entries timed with cold caches too, and the model's ramp that adds their extra time to the
networks whose weights do not stay in the caches between inferences."""

import random

import pytest

from mbnas.commands.latency import print_model
from mbnas.cost.device_script import (
    COLD_MIN_PARAMS,
    build_table,
    cold_extra,
    fit_model,
    measure_in_chunks,
    predict,
    ramp,
)

# (work ms, million parameters, cold extra ms) of calibration members
MEMBERS = [(1.0, 0.3, 0.0), (2.0, 2.5, 1.2), (1.5, 1.0, 0.4), (3.0, 0.6, 0.2), (2.5, 3.5, 2.0),
           (1.2, 2.0, 0.9), (4.0, 1.5, 0.7), (2.2, 0.9, 0.1), (3.5, 5.0, 2.4), (1.8, 4.0, 1.6),
           (2.8, 3.0, 1.1), (1.1, 0.5, 0.0)]


def slowed(work: float, mparams: float, cold: float) -> float:
    """A machine where networks from 1 M parameters on pay their cold extra, in full from 3 M."""
    return 0.1 + 1.05 * work + 0.6 * ramp(mparams, 1.0, 2.0) * cold


def table(model: dict) -> dict:
    """Two entries: a small one and a large one with a cold extra of 0.8 ms."""
    return {"model": {**model, "call_overhead_ms": 0.0, "overhead_ms_per_element": 0.0},
            "entries": {"small": 0.5, "big": 1.0}, "elements": {"small": 0, "big": 0},
            "params": {"small": 300_000, "big": 2_000_000}, "cold_extra": {"big": 0.8}}


def test_the_ramp_is_at_zero_below_its_start_and_one_past_its_width():
    assert [ramp(m, 1.0, 2.0) for m in (0.5, 1.0, 2.0, 3.0, 9.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_a_ramp_and_cold_scale_are_fitted_where_networks_pay_for_cold_caches():
    points = [(w, m, slowed(w, m, c)) for w, m, c in MEMBERS]
    model = fit_model(points, [c for *_, c in MEMBERS])
    assert model["cold_ramp"] == [1.0, 2.0]
    assert model["cold_scale"] == pytest.approx(0.6, abs=1e-3)
    assert model["scale"] == pytest.approx(1.05, abs=1e-3)
    assert model["offset_ms"] == pytest.approx(0.1, abs=1e-3)
    # Two large entries: 4 M parameters, past the ramp, their cold extra paid in full.
    assert predict(table(model), ["big", "big"]) == pytest.approx(slowed(2.0, 4.0, 1.6), rel=1e-3)
    assert cold_extra(table(model), ["small", "big", "big"]) == pytest.approx(1.6)


@pytest.mark.parametrize("seed", range(5))
def test_cold_extras_that_do_not_explain_the_timings_barely_move_the_predictions(seed):
    def truth(work: float) -> float:
        return 0.1 + 1.05 * work

    def worst_error(model: dict) -> float:
        document = {"model": {**model, "call_overhead_ms": 0.0, "overhead_ms_per_element": 0.0},
                    "entries": {}, "elements": {}, "params": {}, "cold_extra": {}}
        errors = []
        for index, (w, m, c) in enumerate(MEMBERS):
            key = f"member-{index}"
            document["entries"][key], document["params"][key] = w, m * 1e6
            document["cold_extra"][key], document["elements"][key] = c, 0
            errors.append(abs(predict(document, [key]) / truth(w) - 1))
        return max(errors)

    rng = random.Random(seed)
    points = [(w, m, truth(w) * (1 + rng.uniform(-0.02, 0.02))) for w, m, _ in MEMBERS]
    with_cold = fit_model(points, [c for *_, c in MEMBERS])
    assert with_cold["cold_scale"] < 0.1
    assert worst_error(with_cold) <= worst_error(fit_model(points)) + 0.02


def test_tables_without_cold_timings_predict_as_before():
    model = {"offset_ms": 0.1, "scale": 1.0, "scale_per_mparam": 0.0, "mparams_range": [0, 9]}
    older = {key: value for key, value in table(model).items() if key != "cold_extra"}
    assert predict(older, ["big", "big"]) == pytest.approx(2.1)
    assert predict(table(model), ["big", "big"]) == pytest.approx(2.1)


def test_only_entries_with_enough_parameters_are_timed_cold():
    def maker(key: str):
        return lambda: (lambda: sum(range(100)))

    timed = measure_in_chunks({"a": maker("a"), "b": maker("b")}, warmup=1, repeats=2,
                              log=lambda _: None, cold={"b"})
    assert "cold_ms" not in timed["a"]
    assert timed["b"]["cold_ms"] > 0
    document = build_table({}, {"small": maker("small"), "big": maker("big")},
                           {"small": 0, "big": 0}, {"small": 10, "big": COLD_MIN_PARAMS},
                           {256: lambda: None}, [], {}, warmup=1, repeats=2, log=lambda _: None)
    assert set(document["cold_extra"]) == {"big"}
    assert document["cold_extra"]["big"] >= 0.0


def test_the_printed_model_shows_the_cold_term_where_the_table_has_one(capsys):
    plain = {"offset_ms": 0.1, "scale": 1.0, "scale_per_mparam": 0.01, "mparams_range": [0.3, 5.0],
             "call_overhead_ms": 0.002, "overhead_ms_per_element": 0.0, "cold_scale": 0.0,
             "cold_ramp": [0.0, 1.0]}
    print_model(plain)
    print_model({**plain, "cold_scale": 0.55, "cold_ramp": [0.5, 4.0]})
    without, with_cold = capsys.readouterr().out.splitlines()
    assert "cold" not in without
    assert "+ 0.550 × ramp(M: 0.5 → 4.5) × Σ (cold − warm entry)" in with_cold
