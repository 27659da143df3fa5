"""benchmarks/latency_statistic.py scores each statistic's table on synthetic timings."""

import argparse
import importlib.util
import itertools
from pathlib import Path

import pytest

from mbnas.cost.device_script import OVERHEAD_ELEMENTS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "latency_statistic.py"
_spec = importlib.util.spec_from_file_location("latency_statistic", SCRIPT)
latency_statistic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latency_statistic)
SETTINGS = argparse.Namespace(warmup=1, repeats=3)


def timing(fastest: float) -> dict[str, float]:
    return {"min_ms": fastest, "median_ms": 1.5 * fastest, "spread": 0.0}


def synthetic() -> dict:
    """Three entries; members of three entries each, whole = Σ entries, with the minimum; the
    medians of whole members are off by member (so only the minimum's table fits exactly)."""
    entries = {"a": 1.0, "b": 2.0, "c": 4.0}
    combos = list(itertools.combinations_with_replacement("abc", 3))
    networks = [{"name": f"m{i}", "role": "calibrate" if i < 6 else "check", "keys": list(keys),
                 "arch": {}} for i, keys in enumerate(combos)]
    whole = {}
    for index, n in enumerate(networks):
        fastest = sum(entries[k] for k in n["keys"])
        whole[n["name"]] = {"min_ms": fastest, "median_ms": fastest * (1 + 0.1 * (index % 3)),
                            "spread": 0.0}
    return {"timings": {"entries": {k: timing(v) for k, v in entries.items()},
                        "overhead": {str(n): timing(0.0) for n in OVERHEAD_ELEMENTS},
                        "whole": whole},
            "elements": dict.fromkeys(entries, 256), "params": dict.fromkeys(entries, 1000),
            "networks": networks}


def test_each_statistic_is_scored_and_the_drift_taken_out():
    measured = synthetic()
    slower = {name: {key: 1.25 * value for key, value in stats.items()}
              for name, stats in measured["timings"]["whole"].items()}
    fastest = dict(latency_statistic.scores(measured, [slower], "min", SETTINGS))
    assert fastest["own"]["max_abs_error"] == pytest.approx(0.0, abs=1e-9)
    assert fastest["re-timing 1"]["median_abs_error"] == pytest.approx(0.2)  # 1/1.25 - 1
    assert fastest["re-timing 1 without the drift"]["max_abs_error"] == pytest.approx(0.0, abs=1e-9)
    typical = dict(latency_statistic.scores(measured, [slower], "median", SETTINGS))
    assert typical["own"]["max_abs_error"] > 0.05
    assert latency_statistic.meets(fastest["own"]) and not latency_statistic.meets(typical["own"])
