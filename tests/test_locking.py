"""The lock between workers of a run: says who holds it, takes over leftovers, never waits
silently."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mbnas import locking
from mbnas.locking import LockTimeout, file_lock

HOLD = """
import sys, time
from pathlib import Path
from mbnas.locking import file_lock
with file_lock(Path(sys.argv[1]), "a test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(path, seconds: float) -> subprocess.Popen:
    """Another process holding the lock ``path`` for ``seconds``."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def test_a_live_holder_is_named_and_the_waiter_gives_up_after_its_timeout(tmp_path, capsys):
    lock = tmp_path / "supernet.lock"
    process = holder(lock, 60)
    try:
        with pytest.raises(LockTimeout) as raised, file_lock(lock, "the warm-up", timeout_s=0.6,
                                                             poll_s=0.1):
            pass
    finally:
        process.kill()
        process.wait()
    message = str(raised.value)
    held = f"the warm-up is held by PID {process.pid} on host {socket.gethostname()} since"
    assert held in message
    assert "gave up after waiting" in message
    out = capsys.readouterr().out
    assert out.count("waiting for the warm-up") == 1 and f"PID {process.pid}" in out


def test_the_waiter_goes_on_when_the_holder_finishes(tmp_path, capsys):
    lock = tmp_path / "storage.lock"
    process = holder(lock, 1.5)  # long enough that a busy machine still finds it held
    with file_lock(lock, "the storage", timeout_s=30, poll_s=0.1):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    process.wait()
    assert "waiting for the storage" in capsys.readouterr().out
    assert not lock.exists()


def test_a_lock_of_a_killed_process_is_taken_over_at_once(tmp_path, capsys):
    lock = tmp_path / "supernet.lock"
    process = holder(lock, 60)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert lock.exists()  # left behind, naming a dead process
    started = time.monotonic()
    with file_lock(lock, "the warm-up", timeout_s=5):
        pass
    assert time.monotonic() - started < 5
    out = capsys.readouterr().out
    assert f"took over {lock}, left by PID {process.pid}" in out and "no longer running" in out


@pytest.mark.parametrize("content", ["", "12ab", "{\"pid\""])
def test_an_empty_or_corrupt_lock_file_is_taken_over(tmp_path, capsys, content):
    lock = tmp_path / "storage.lock"
    lock.write_text(content)
    with file_lock(lock, "the storage", timeout_s=5):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()
    assert "an empty or corrupt lock file" in capsys.readouterr().out


def test_threads_of_one_process_take_turns(tmp_path):
    lock, inside, overlaps = tmp_path / "lock", [], []

    def work():
        with file_lock(lock, "turns", timeout_s=30, poll_s=0.01):
            overlaps.append(len(inside))
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [0, 0, 0, 0]


def test_a_ctrl_c_while_the_lock_is_being_taken_leaves_no_lock_file(tmp_path, monkeypatch):
    lock = tmp_path / "run" / "supernet.lock"
    write_holder = locking.take_over

    def interrupted(fd: int, path, created: bool) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the holder is written
        write_holder(fd, path, created)

    monkeypatch.setattr(locking, "take_over", interrupted)
    with pytest.raises(KeyboardInterrupt), file_lock(lock, "the warm-up"):
        pytest.fail("the interrupt lands before the locked work starts")
    assert not lock.exists()
    monkeypatch.setattr(locking, "take_over", write_holder)
    with file_lock(lock, "the warm-up"):  # the lock is free again
        assert lock.exists()
    with pytest.raises(KeyboardInterrupt):  # and Ctrl-C is let through again
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
