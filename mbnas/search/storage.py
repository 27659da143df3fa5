"""Where a search's Optuna study lives, and what keeps it sound when workers die.

- **The URL**: ``storage=`` is ``null`` (SQLite in the run folder), a database URL, or
  ``env:NAME``: the URL read from the environment variable ``NAME`` (e.g. ``MBNAS_STORAGE``), so
  no password is ever typed on a command line or written to a file.
- **The driver**: ``postgresql://`` (and ``postgres://``) URLs get the PostgreSQL driver that is
  installed, named explicitly: psycopg 3 (the ``postgres`` extra, SQLAlchemy's own default since
  2.1) or else psycopg2. SQLAlchemy 2.0 would pick psycopg2 and 2.1 psycopg 3 by themselves, so
  naming the installed one makes the same URL work with either.
- **Secrets**: :func:`masked` replaces a URL's password with ``***`` wherever the URL is shown or
  saved (config.yaml, the plan, the summary); a masked URL read back from config.yaml connects
  without a password, which libpq then takes from ``PGPASSWORD`` or ``~/.pgpass``.
- **Connection errors** (refused, unknown host, bad password, missing database, missing driver,
  not a database) become one :class:`~mbnas.errors.ConfigError` line: what, and how to fix it.
- **SQLite** (the run folder's ``study.db``) runs in WAL mode, synced at checkpoints only
  (``synchronous=NORMAL``): Optuna commits once per sampled decision, and a full sync per commit
  cost about a second per candidate on a 2-core VM (BENCHMARKS.md, "Framework overhead per
  trial"). A killed worker loses nothing committed; a power cut may lose the last commits, never
  the file. Workers sharing the file must run on one machine (WAL needs shared memory; several
  machines share a PostgreSQL study).
- **Heartbeat**: every running trial records a heartbeat (Optuna's RDBStorage heartbeat, SQLite
  and PostgreSQL alike); a trial silent for ``grace_s`` (its worker was killed or its machine
  lost) is failed by the next worker that looks, and Optuna's
  ``RetryHeartbeatStaleTrialCallback`` enqueues it again with the same parameters, so the same
  architecture is evaluated by whichever worker takes it next.
"""

from __future__ import annotations

import importlib.util
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from mbnas.errors import ConfigError

ENV_PREFIX = "env:"
MASK = "***"
# psycopg 3 first: the driver of the postgres extra and SQLAlchemy 2.1's own default.
POSTGRES_DRIVERS = ("psycopg", "psycopg2")
POSTGRES_SCHEMES = ("postgresql", "postgres")
INSTALL_DRIVER = 'pip install "mbnas[postgres]" (psycopg 3)'
CONNECT_TIMEOUT_S = 10
TABLE_RACE_TRIES = 5


@dataclass
class HeartbeatConfig:
    """How a dead worker's trials are found and retried (schema of ``heartbeat:``)."""

    interval_s: int = 30  # each running trial records a heartbeat this often
    grace_s: int = 120  # a trial silent this long is failed (its worker died) and retried
    retries: int = 2  # how many times one trial is retried after its worker died


def resolve_url(setting: str | None, study_db: Path) -> str:
    """The URL ``storage=`` names: SQLite in ``study_db`` for ``None``, ``$NAME`` for
    ``env:NAME``, otherwise the URL itself."""
    if not setting:
        return f"sqlite:///{study_db.resolve()}"
    if setting.startswith(ENV_PREFIX):
        name = setting[len(ENV_PREFIX):]
        value = os.environ.get(name, "").strip()
        if not value:
            raise ConfigError("storage", f"{setting} names the environment variable {name}, "
                              "which is not set", f"export {name}=postgresql://user:password@"
                              "host/database before starting the command")
        return value
    return setting


def parse(url: str) -> URL:
    """The URL as SQLAlchemy reads it; a malformed one is refused (without echoing it)."""
    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError("storage", "is not a database URL",
                          "give e.g. postgresql://user@host/database or sqlite:///path/study.db")\
            from None


def masked(setting: str | None) -> str | None:
    """``setting`` with the URL's password replaced by ``***`` (``env:NAME`` stays as is)."""
    if not setting or setting.startswith(ENV_PREFIX):
        return setting
    try:
        return make_url(setting).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable storage URL>"


def display(setting: str | None, study_db: Path) -> str:
    """The storage as shown to people: the masked URL, ``$NAME``, or the run's SQLite file."""
    if setting and setting.startswith(ENV_PREFIX):
        return "$" + setting[len(ENV_PREFIX):]
    return masked(setting) or f"sqlite:///{study_db}"


def with_driver(url: URL) -> URL:
    """``postgresql://`` with the installed driver named; a masked password dropped (libpq then
    reads ``PGPASSWORD`` or ``~/.pgpass``); other URLs unchanged."""
    if url.password == MASK:  # (URL.set cannot unset a field)
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                         url.query)
    if url.drivername not in POSTGRES_SCHEMES:
        return url
    for driver in POSTGRES_DRIVERS:
        if importlib.util.find_spec(driver) is not None:
            return url.set(drivername=f"postgresql+{driver}")
    raise ConfigError("storage", f"{masked(url.render_as_string(hide_password=False))} needs a "
                      "PostgreSQL driver and none is installed", INSTALL_DRIVER)


def engine_kwargs(url: URL) -> dict:
    """SQLite: wait for the file's lock (local workers share it). PostgreSQL: give up on a
    silent server after CONNECT_TIMEOUT_S, check pooled connections before use."""
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 120}}
    if url.get_backend_name() == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def heartbeat_kwargs(heartbeat: HeartbeatConfig | None) -> dict:
    """RDBStorage's heartbeat arguments: stale trials failed, then retried with the same
    parameters."""
    if heartbeat is None:
        return {}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.retries)
    return {"heartbeat_interval": heartbeat.interval_s, "grace_period": heartbeat.grace_s,
            "heartbeat_stale_trial_callback": retry}


def open_storage(setting: str | None, study_db: Path,
                 heartbeat: HeartbeatConfig | None = None) -> optuna.storages.RDBStorage:
    """The Optuna storage ``storage=`` names, connected, with the heartbeat when given (workers
    running trials need it; reading a finished run does not)."""
    url = with_driver(parse(resolve_url(setting, study_db)))
    shown = display(setting, study_db)
    try:
        return connect(url, heartbeat)
    except ImportError as error:
        fix = INSTALL_DRIVER if url.get_backend_name() == "postgresql" else (
            "install the driver its URL names")
        raise ConfigError("storage", f"{shown}: its database driver is not installed "
                          f"({error.__cause__ or error})", fix) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError("storage", f"{shown}: unknown kind of database {url.drivername!r}",
                          "use postgresql://..., mysql://... or sqlite:///...") from None
    except sqlalchemy.exc.DBAPIError as error:
        raise connection_error(error, url, shown) from None


def connect(url: URL, heartbeat: HeartbeatConfig | None) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for ``url``: connects, and creates its tables if missing."""
    for _ in range(TABLE_RACE_TRIES - 1):
        try:
            return rdb_storage(url, heartbeat)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers on other machines creating the tables at the same moment (PostgreSQL:
            # "relation already exists", "duplicate key ... pg_type"): once made, they open.
            time.sleep(random.uniform(0.2, 1.0))
    return rdb_storage(url, heartbeat)


def rdb_storage(url: URL, heartbeat: HeartbeatConfig | None) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # the heartbeat is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(url.render_as_string(hide_password=False),
                                             engine_kwargs=engine_kwargs(url),
                                             **heartbeat_kwargs(heartbeat))
    if url.get_backend_name() == "sqlite":
        sqlalchemy.event.listen(storage.engine, "connect", sqlite_pragmas)
        storage.engine.dispose()  # connections opened while creating the tables go
    return storage


def sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL journal, synced at checkpoints: a commit without an fsync of its own."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def connection_error(error: sqlalchemy.exc.DBAPIError, url: URL, shown: str) -> ConfigError:
    """One line saying why the database refused us and what to do about it."""
    message = str(error.orig or error)
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    known = [
        ("Connection refused", f"no database server answers at {where}",
         "start the server, or check the URL's host and port"),
        ("could not translate host name", f"unknown host {url.host!r}", "check the URL's host"),
        ("failed to resolve host", f"unknown host {url.host!r}", "check the URL's host"),
        ("timeout expired", f"no answer from {where} within {CONNECT_TIMEOUT_S} s",
         "check the host, port and firewall"),
        ("password authentication failed", f"password authentication failed for user "
         f"{url.username!r}", "check the password (in the URL, its environment variable, "
         "PGPASSWORD or ~/.pgpass)"),
        ("no password supplied", f"the server wants a password for user {url.username!r}",
         "give it in the URL (best through storage=env:MBNAS_STORAGE), PGPASSWORD or "
         "~/.pgpass"),
        (f'database "{url.database}" does not exist',
         f"database {url.database!r} does not exist on {where}",
         f"create it first: createdb -h {url.host or 'localhost'} -U {url.username} "
         f"{url.database}"),
        ("file is not a database", "is not an SQLite database",
         "give the run's own study.db, or another name= for a new run"),
        ("unable to open database file", "cannot open the SQLite file",
         "check that the run folder exists and is writable"),
    ]
    for marker, problem, fix in known:
        if marker in message:
            return ConfigError("storage", f"{shown}: {problem}", fix)
    return ConfigError("storage", f"{shown}: {first}", "check the URL and the database server")


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped beating (they are enqueued again with the same
    parameters); nothing without a heartbeat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
