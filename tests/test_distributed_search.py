"""Workers sharing one study, one of them killed (SIGKILL) while it trains a candidate: the study
ends with exactly n_trials trained candidates, no architecture evaluated twice, the dead worker's
trial failed and retried with the same architecture, no trial left running, and the run resumes.

PostgreSQL: three workers as if on three machines (each its own runs_dir, one database, the URL
from an environment variable or on the command line); SQLite: two workers in one run folder.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from pg_server import PASSWORD

from mbnas.errors import ConfigError
from mbnas.search.report import format_report, report_run
from mbnas.search.storage import open_storage

pytestmark = pytest.mark.slow
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
# Tiny and quick: trials of a few steps, a dead worker noticed within seconds.
SEARCH = ["search", "+budget.macs=0.5M", "preset=smoke", f"space={TINY_SPACE}",
          "data.synthetic_size=128", "latency=none", "evaluator=scratch", "threads=1",
          "heartbeat.interval_s=1", "heartbeat.grace_s=3", "name=shared"]
RUNNING, FAIL = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL


def worker(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mbnas", *SEARCH, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def loaded(storage_url: str | None, study_db: Path, workers: list[subprocess.Popen],
           timeout: float = 300) -> optuna.Study:
    """The shared study, once the first worker has created it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return optuna.load_study(study_name="shared",
                                     storage=open_storage(storage_url, study_db))
        except (KeyError, ConfigError):  # no study yet, or not even its SQLite file
            dead = [w.communicate()[0] for w in workers if w.poll() is not None]
            assert not dead, f"a worker ended before the study existed: {dead[0]}"
            assert time.monotonic() < deadline, "no worker created the study"
            time.sleep(0.2)


def kill_while_training(study: optuna.Study, workers: list[subprocess.Popen],
                        timeout: float = 300) -> tuple[subprocess.Popen, int]:
    """SIGKILL the first of ``workers`` seen training a candidate (a trial holding a slot); the
    worker and that trial's number."""
    names = {f"{socket.gethostname()}:{w.pid}": w for w in workers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for trial in study.get_trials(deepcopy=False, states=(RUNNING,)):
            victim = names.get(trial.user_attrs.get("worker"))
            if victim is not None and trial.user_attrs.get("slot") and still_training(
                    study, victim, trial.number):
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                return victim, trial.number
        time.sleep(0.05)
    raise AssertionError("no worker trained a candidate")


def still_training(study: optuna.Study, worker: subprocess.Popen, number: int) -> bool:
    """Freeze ``worker`` and say whether trial ``number`` is still running: a trial seen running
    a moment ago may have ended since (CI once killed a worker just after it told its result).
    The pause lets a commit already sent reach the database; a worker that finished the trial
    goes on."""
    worker.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    if study.get_trials(deepcopy=False)[number].state == RUNNING:
        return True
    worker.send_signal(signal.SIGCONT)
    return False


def finish(workers: list[subprocess.Popen]) -> list[str]:
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    return outputs


def check_study(study: optuna.Study, n_trials: int, killed: int) -> None:
    trials = study.get_trials()
    states = Counter(t.state.name for t in trials)
    repeats = sum("duplicate_of" in t.user_attrs for t in trials if t.state.name == "COMPLETE")
    assert states["COMPLETE"] - repeats == n_trials, states  # repeats take no place
    assert states["RUNNING"] == 0 and states["WAITING"] == 0, states
    assert trials[killed].state == FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert [t.state.name for t in retries] == ["COMPLETE"]
    assert retries[0].params == trials[killed].params  # the same architecture, evaluated
    evaluated = [t.user_attrs["digest"] for t in trials
                 if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated)), "an architecture was evaluated twice"


def test_postgresql_three_workers_one_killed(postgres, tmp_path, monkeypatch):
    url = postgres.create_database("three_workers")
    env = {**os.environ, "MBNAS_CACHE": str(tmp_path / "cache"), "MBNAS_STORAGE": url}
    env.pop("PGPASSWORD", None)
    # Three "machines": each its own runs_dir; two read the URL from $MBNAS_STORAGE, one is
    # given it on the command line (its password must not be stored either).
    storages = ["storage=env:MBNAS_STORAGE", "storage=env:MBNAS_STORAGE", f"storage={url}"]
    workers = [worker(["n_trials=4", f"runs_dir=machine{i}", storage], tmp_path, env)
               for i, storage in enumerate(storages)]
    study = loaded(url, tmp_path, workers)
    victim, killed = kill_while_training(study, workers)
    outputs = finish([w for w in workers if w is not victim])
    check_study(study, 4, killed)
    # The same command resumes (here on machine 2, raising n_trials) and stays exact.
    resumed = finish([worker(["n_trials=5", "runs_dir=machine2", f"storage={url}"], tmp_path,
                             env)])
    assert "1 of 5 trials to go" in resumed[0]
    check_study(study, 5, killed)
    for text in [*outputs, *resumed]:
        assert PASSWORD not in text and "Traceback" not in text
    for path in tmp_path.glob("machine*/**/*"):
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path
    config = (tmp_path / "machine2" / "shared" / "config.yaml").read_text()
    assert "storage: postgresql://mbnas:***@127.0.0.1" in config
    # Any machine reports: through $MBNAS_STORAGE, or with a masked URL through PGPASSWORD.
    monkeypatch.setenv("MBNAS_STORAGE", url)
    result = report_run(tmp_path / "machine1" / "shared")
    text = format_report(result)
    assert f"{5 + result['repeats']} complete" in text and "1 fail, 0 running, 0 waiting" in text
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    result = report_run(tmp_path / "machine2" / "shared")
    assert result["counts"]["complete"] - result["repeats"] == 5


def test_sqlite_two_workers_one_killed(tmp_path):
    env = {**os.environ, "MBNAS_CACHE": str(tmp_path / "cache")}
    workers = [worker(["n_trials=3"], tmp_path, env) for _ in range(2)]
    study = loaded(None, tmp_path / "runs" / "shared" / "study.db", workers)
    victim, killed = kill_while_training(study, workers)
    finish([w for w in workers if w is not victim])
    check_study(study, 3, killed)
    resumed = finish([worker(["n_trials=4"], tmp_path, env)])
    assert "1 of 4 trials to go" in resumed[0]
    check_study(study, 4, killed)
