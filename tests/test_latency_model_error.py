"""benchmarks/latency_model_error.py tells a table's model error from the machine's drift, on
synthetic timings."""

import importlib.util
import itertools
from pathlib import Path

import pytest

from mbnas.cost.latency_table import LatencyTable

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "latency_model_error.py"
_spec = importlib.util.spec_from_file_location("latency_model_error", SCRIPT)
latency_model_error = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latency_model_error)

ENTRIES = {"a": 1.0, "b": 2.0, "c": 4.0}
MEMBERS = [list(keys) for keys in itertools.combinations_with_replacement("abc", 4)]


def table(offset_ms: float) -> LatencyTable:
    """Three entries of different sizes, a model that adds ``offset_ms`` to their sum."""
    return LatencyTable({
        "entries": dict(ENTRIES), "elements": dict.fromkeys(ENTRIES, 256),
        "params": {"a": 100_000, "b": 300_000, "c": 900_000},
        "model": {"call_overhead_ms": 0.0, "overhead_ms_per_element": 0.0,
                  "offset_ms": offset_ms, "scale": 1.0, "scale_per_mparam": 0.0,
                  "mparams_range": [0.0, 4.0]}})


def timed(factor: float) -> list[tuple[list[str], float]]:
    """Every member taking ``factor`` times the sum of its entries."""
    return [(keys, factor * sum(ENTRIES[k] for k in keys)) for keys in MEMBERS]


def test_a_uniform_drift_is_told_from_the_model():
    scores = latency_model_error.scores(table(0.0), timed(1.25), calibrate=6, splits=5,
                                        again=timed(1.3))
    assert scores["as built"]["median_abs_error"] == pytest.approx(0.2)  # 1 / 1.25 - 1
    assert scores["one factor"]["max_abs_error"] == pytest.approx(0.0, abs=1e-9)
    assert scores["one factor"]["factor"] == pytest.approx(1.25)
    assert scores["model"]["p90_abs_error"] == pytest.approx(0.0, abs=1e-3)
    assert not latency_model_error.meets(scores["as built"])
    assert latency_model_error.meets(scores["model"])
    assert scores["repeat"]["max_abs_error"] == pytest.approx(0.04)  # 1.3 / 1.25 - 1


def test_a_model_that_misfits_is_not_excused_by_one_factor():
    # The table adds 3 ms that the members do not take: the error shrinks with a member's
    # size, so no single factor removes it; refitted on the members, the model does.
    scores = latency_model_error.scores(table(3.0), timed(1.0), calibrate=6, splits=5)
    assert scores["one factor"]["p90_abs_error"] > 0.1
    assert scores["model"]["p90_abs_error"] == pytest.approx(0.0, abs=1e-3)
