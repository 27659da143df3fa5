import pytest

from mbnas import machine_load
from mbnas.machine_load import MachineLoad, busy_note


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
