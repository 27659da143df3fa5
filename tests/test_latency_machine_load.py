import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from mbnas import machine_load
from mbnas.cost import device_script
from mbnas.cost.device_script import OtherLoad, busy_reason, is_busy
from mbnas.cost.latency import Latency, LatencyConfig
from mbnas.machine_load import MachineLoad, busy_note
from mbnas.search.latency import MeasuredLatency
from mbnas.space import load_space

MICRO_SPACE = Path(__file__).parent / "fixtures" / "micro_space.yaml"


def test_an_idle_machine_says_nothing(monkeypatch):
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setattr(machine_load.os, "cpu_count", lambda: 2)
    assert busy_note(threads=1) is None


def test_a_busy_machine_states_the_expected_duration(monkeypatch):
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    monkeypatch.setattr(machine_load.os, "cpu_count", lambda: 2)
    note = busy_note(threads=1, idle_minutes=10)
    assert "load average 5.0 on 2 cores" in note and "2.5x" in note and "~25 min now" in note


def test_slowdown_counts_the_other_processes_and_this_runs_threads():
    assert MachineLoad(load=1.0, cores=2, threads=2).slowdown == 1.0
    assert MachineLoad(load=3.0, cores=2, threads=2).slowdown == pytest.approx(2.0)
    assert not MachineLoad(load=1.2, cores=2, threads=1).busy


class FakeMachine:
    """/proc/stat and this process's CPU time as a test sets them."""

    def __init__(self, monkeypatch):
        self.machine_s, self.own_s, self.wall_s = 100.0, 1.0, 0.0
        monkeypatch.setattr(device_script, "machine_cpu_seconds", lambda: self.machine_s)
        monkeypatch.setattr(device_script, "time", types.SimpleNamespace(
            process_time=lambda: self.own_s, perf_counter=lambda: self.wall_s))

    def run(self, wall_s: float, own_s: float, others_s: float) -> None:
        self.wall_s += wall_s
        self.own_s += own_s
        self.machine_s += own_s + others_s


def test_other_load_counts_the_cores_others_used_while_timing(monkeypatch):
    fake, others = FakeMachine(monkeypatch), OtherLoad()
    with others:
        fake.run(wall_s=0.5, own_s=0.5, others_s=0.5)
    assert others.cores is None  # half a second of timing: too short to judge
    fake.run(wall_s=10.0, own_s=0.0, others_s=20.0)  # between the timings: not counted
    with others:
        fake.run(wall_s=1.5, own_s=1.5, others_s=0.0)
    assert others.cores == pytest.approx(0.25)  # 0.5 s of others over 2 s of timing
    assert is_busy([0.02], others.cores) and not is_busy([0.02], 0.1)
    assert "other processes kept 0.2 of" in busy_reason(0.02, others.cores)
    assert "varied 20% across repeats" in busy_reason(0.2, None)


def test_other_load_is_unknown_where_the_system_does_not_say(monkeypatch):
    monkeypatch.setattr(device_script, "machine_cpu_seconds", lambda: None)
    with OtherLoad() as others:
        pass
    assert others.cores is None and not is_busy([0.02], others.cores)


@pytest.mark.skipif(device_script.machine_cpu_seconds() is None, reason="needs /proc/stat")
def test_other_load_sees_a_process_spinning_beside_it():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the spinner is running
        with OtherLoad() as others:
            time.sleep(1.2)
    finally:
        spinner.kill()
        spinner.wait()
    assert others.cores is not None and others.cores > 0.6


def test_a_search_warns_once_when_others_keep_the_cores_busy(monkeypatch, capsys):
    fake = FakeMachine(monkeypatch)
    steady = Latency(median_ms=10.0, min_ms=9.9, iqr_ms=0.2, repeats=10, threads=1)

    def measured(arch, cfg):
        fake.run(wall_s=0.6, own_s=0.6, others_s=0.6)  # a neighbour on one core all along
        return steady

    monkeypatch.setattr("mbnas.search.latency.measure_config", measured)
    estimate = MeasuredLatency(LatencyConfig())
    arch = load_space(MICRO_SPACE).smallest()
    assert estimate.measure(arch) == 9.9 and capsys.readouterr().out == ""  # 0.6 s: too short
    estimate.measure(arch)
    estimate.measure(arch)
    printed = capsys.readouterr().out
    assert printed.count("other processes kept 1.0 of") == 1
    assert "sharing the processor's caches" in printed
