"""A lock between processes that share a folder: warm-up and storage setup run once per run.

The lock is the kernel's (``fcntl.flock`` on a lock file), so it ends with its holder, even one
killed with ``kill -9``: a lock of a dead process, or an empty or corrupt lock file, is taken over
at once (with a note). The file only says who holds the lock (PID, host, since when), for the
messages of those who wait. A waiter never waits silently: it says what it waits for and who
holds it, again every minute, and gives up after ``timeout_s`` with one line naming the holder
(``None``: it waits as long as the holder lives; a warm-up takes as long as it takes).
Processes on several machines lock a shared folder through NFS, which Linux maps ``flock`` onto.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mbnas.errors import MbnasError

REMIND_S = 60.0  # how often a waiter repeats what it waits for


class LockTimeout(MbnasError):
    """A lock still held by another live process after the waiter's timeout."""


@contextlib.contextmanager
def file_lock(path: Path, what: str = "a lock", *, timeout_s: float | None = None,
              poll_s: float = 0.5) -> Iterator[None]:
    """Hold the lock ``path`` (created if missing) for ``what``, waiting for another holder as
    the module says; removed again on release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, interrupts = acquire(path, what, timeout_s, poll_s)
    try:
        restore_interrupts(interrupts)  # a Ctrl-C held back until now lands inside this try
        yield
    finally:
        # Removed while still locked: a waiter that opened this file finds it gone and retries.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def acquire(path: Path, what: str, timeout_s: float | None, poll_s: float
            ) -> tuple[int, Any]:
    """The open, locked file descriptor of ``path``, once no other process holds it, and the
    held Ctrl-C for :func:`restore_interrupts`: it returns with Ctrl-C held back, so that an
    interrupt cannot land between taking the lock and the caller's ``try`` that releases it (a
    lock file left behind is taken over by the next run, with a note, but a Ctrl-C should not
    leave one)."""
    started, told = time.monotonic(), None
    while True:
        interrupts = hold_interrupts()
        try:
            fd = try_lock(path)
        except BaseException:
            restore_interrupts(interrupts)
            raise
        if fd is not None:
            return fd, interrupts
        restore_interrupts(interrupts)
        waited, holder = time.monotonic() - started, describe(read_holder(path))
        if timeout_s is not None and waited >= timeout_s:
            raise LockTimeout(
                f"{path}: {what} is held by {holder}; gave up after waiting {waited:.0f} s; "
                "if that process hangs, stop it, then run again")
        if told is None or time.monotonic() - told >= REMIND_S:
            print(f"waiting for {what}: {path} is held by {holder} (Ctrl-C stops waiting)",
                  flush=True)
            told = time.monotonic()
        time.sleep(poll_s)


def try_lock(path: Path) -> int | None:
    """``path`` opened and locked, this process written in it as the holder; None while
    another process holds it."""
    while True:
        fd, created = open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if same_file(fd, path):
            take_over(fd, path, created)
            return fd
        os.close(fd)  # its holder removed it on release after we opened it: open it anew


def hold_interrupts() -> Any:
    """Hold back Ctrl-C: SIGINT's handler is swapped for one that only notes it (main thread
    only, where Python runs handlers; a signal mask would not do: the kernel hands a Ctrl-C to
    any thread that does not mask it, torch's included). What :func:`restore_interrupts`
    needs; None off the main thread or where the handler was not set from Python."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # None: a handler Python cannot restore
        return None
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    return previous, noted


def restore_interrupts(held: Any) -> None:
    """Put SIGINT's handler back; a Ctrl-C noted meanwhile is handed to it now."""
    if held is None:
        return
    previous, noted = held
    signal.signal(signal.SIGINT, previous)
    if noted:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def open_lock(path: Path) -> tuple[int, bool]:
    """``path`` opened for writing, and whether this call created it."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), False


def same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def take_over(fd: int, path: Path, created: bool) -> None:
    """Write this process as the holder; say so when the file was left by another one."""
    left = read_holder(path)
    if not created and left is not None:
        print(f"note: took over {path}, left by {describe(left)}", flush=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)


def read_holder(path: Path) -> dict | None:
    """Who the lock file names (``{}`` when it is empty or corrupt); None when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {"pid": holder}


def describe(holder: dict | None) -> str:
    """``PID 123 on host h since 2024-05-01T10:00:00 (3 min ago)``, or what is known of it."""
    if not holder:
        return "a process that left no name (an empty or corrupt lock file)"
    text = f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    since = holder.get("since")
    with contextlib.suppress(TypeError, ValueError):
        ago = datetime.datetime.now() - datetime.datetime.fromisoformat(since)
        text += f" since {since} ({ago.total_seconds() / 60:.0f} min ago)"
    if holder.get("host") == socket.gethostname() and not alive(holder.get("pid")):
        text += ", no longer running"
    return text


def alive(pid: object) -> bool:
    """Whether a process ``pid`` runs on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
