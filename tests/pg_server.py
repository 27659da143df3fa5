"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, started on a free
port of 127.0.0.1 with password authentication, stopped and deleted at the end.

It needs the server programs (``initdb``, ``pg_ctl``: Debian's ``postgresql`` package, which
``.ci/run`` installs) and a driver (the ``postgres`` extra). The server refuses to run as root,
so under root it runs as the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "mbnas", "s3cret-pw"


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's newest PostgreSQL."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_as() -> dict:
    """subprocess arguments that drop root (PostgreSQL refuses it) to an unprivileged user."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            user = pwd.getpwnam(name)
            return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


@dataclass
class PostgresServer:
    """A running server; :meth:`url` and :meth:`create_database` give tests their databases."""

    port: int
    root: Path

    def url(self, database: str, password: str | None = PASSWORD, user: str = USER) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL (with the password)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Start a server from ``bin_dir`` in a temporary folder; stop and delete it afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mbnas-pg-"))
    as_user = run_as()
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    if as_user:
        os.chown(password_file, as_user["user"], as_user["group"])
    data, port = root / "data", free_port()
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
                        "--auth=scram-sha-256", f"--pwfile={password_file}", "--no-sync"],
                       check=True, capture_output=True, **as_user)
        # fsync off: a test database need not survive a power cut, and it is much faster.
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                        "-o", f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "start"],
                       check=True, capture_output=True, **as_user)
        yield PostgresServer(port, root)
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, **as_user)
        shutil.rmtree(root, ignore_errors=True)
