"""Ctrl-C at any moment of a search (while the libraries load, during the supernet warm-up,
while a candidate is scored) ends with one line and exit code 130; the same command then
resumes and finishes the run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbnas.search import report_run

pytestmark = pytest.mark.slow
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
# Candidates fine-tuned 150 steps: the interrupt sent when trial 1's line is read must arrive
# before the run ends (with 4 steps the rest of the run took 0.26 s, a delay a busy CI machine
# can exceed; with 100 steps 1.3 s).
SEARCH = [sys.executable, "-m", "mbnas", "search", "+budget.macs=0.5M", "preset=smoke",
          f"space={TINY_SPACE}", "data.synthetic_size=128", "latency=none", "name=stop",
          "n_trials=2", "evaluator.warmup_steps=40", "evaluator.finetune_steps=150", "threads=1"]


def launch(cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MBNAS_CACHE": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(SEARCH, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def interrupt(worker: subprocess.Popen) -> tuple[str, str]:
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, out + err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last == "mbnas search: interrupted; run the same command again to resume", err
    return out, err


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.02)


def test_ctrl_c_at_any_moment_leaves_a_run_that_resumes(tmp_path):
    run = tmp_path / "runs" / "stop"
    # While Python loads torch, Optuna and Hydra: nothing of the run exists yet.
    worker = launch(tmp_path)
    time.sleep(0.5)
    interrupt(worker)
    assert not (run / "study.db").exists()

    # During the supernet warm-up (its lock is held while it runs).
    worker = launch(tmp_path)
    wait_for(lambda: (run / "supernet.lock").exists() or worker.poll() is not None)
    interrupt(worker)
    assert not (run / "supernet.lock").exists()

    # While a candidate is scored: the line of the first one is printed, the next one starts.
    worker = launch(tmp_path)
    for line in worker.stdout:
        if line.startswith("[trial 1/2]"):
            break
    interrupt(worker)

    done = subprocess.run(SEARCH, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MBNAS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout and "[trial 2/2]" in done.stdout
    result = report_run(run)
    # The resumed sampler draws anew: it may repeat a scored member (a repeat takes no place).
    assert result["counts"]["complete"] - result["repeats"] == 2
    assert result["counts"]["running"] == 0
    assert all(t["failed_reason"].startswith("interrupted")
               for t in result["trials"] if t["state"] == "fail")
    assert (run / "best.yaml").is_file()
