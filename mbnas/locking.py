"""A lock between processes that share a folder: warm-up and storage setup run once per run.

The lock file holds ``host pid`` of its holder: a lock whose holder no longer runs on this host
(killed with kill -9, say) is stale and taken over; a lock held on another host that shares the
folder (network storage) is waited for, never broken.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, poll_s: float = 1.0, waiting: str | None = None) -> Iterator[None]:
    """An exclusive lock between processes sharing a folder (a lock file created atomically);
    ``waiting`` is printed (to stderr, once) when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if _stale(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if waiting:
                print(f"{waiting} (lock {path}, held by {holder(path)})", file=sys.stderr,
                      flush=True)
                waiting = None
            time.sleep(poll_s)
    try:
        os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def holder(path: Path) -> str:
    """Who holds the lock at ``path``: ``host pid``, as written there."""
    try:
        return path.read_text().strip() or "a process starting up"
    except OSError:
        return "a process that just released it"


def _stale(path: Path) -> bool:
    """A lock left by a process of this host that no longer runs (interrupted with kill -9)."""
    try:
        host, _, pid_text = path.read_text().strip().rpartition(" ")
        pid = int(pid_text or "0")
    except (OSError, ValueError):
        return False
    if pid <= 0 or (host and host != socket.gethostname()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
