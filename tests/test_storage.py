"""The study's storage: URLs from the environment, the PostgreSQL driver, masked passwords, and
connection errors as one line each (against a real PostgreSQL server the tests start)."""

import importlib.util
import threading
from pathlib import Path

import optuna
import pytest
from pg_server import PASSWORD, free_port
from sqlalchemy.engine import make_url

from mbnas.__main__ import main
from mbnas.errors import ConfigError
from mbnas.search import storage
from mbnas.search.storage import (
    HeartbeatConfig,
    display,
    masked,
    open_storage,
    resolve_url,
    with_driver,
)

TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"


def test_default_is_sqlite_in_the_run_folder(tmp_path):
    assert resolve_url(None, tmp_path / "study.db") == f"sqlite:///{tmp_path}/study.db"
    assert display(None, Path("runs/x/study.db")) == "sqlite:///runs/x/study.db"


def test_url_from_an_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MBNAS_STORAGE", "postgresql://u:pw@db/mbnas")
    assert resolve_url("env:MBNAS_STORAGE", tmp_path) == "postgresql://u:pw@db/mbnas"
    assert masked("env:MBNAS_STORAGE") == "env:MBNAS_STORAGE"
    assert display("env:MBNAS_STORAGE", tmp_path) == "$MBNAS_STORAGE"
    monkeypatch.delenv("MBNAS_STORAGE")
    with pytest.raises(ConfigError, match="MBNAS_STORAGE, which is not set; export MBNAS_"):
        resolve_url("env:MBNAS_STORAGE", tmp_path)


def test_passwords_are_masked():
    assert masked("postgresql://u:pw@db:5433/mbnas") == "postgresql://u:***@db:5433/mbnas"
    assert masked("postgresql://u@db/mbnas") == "postgresql://u@db/mbnas"
    assert masked(None) is None and "pw" not in masked("mysql://u:pw@db/x")


def test_postgresql_urls_name_the_installed_driver():
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg (the postgres extra) is not installed")
    for scheme in ("postgresql", "postgres"):
        url = with_driver(make_url(f"{scheme}://u:pw@db/mbnas"))
        assert url.drivername == "postgresql+psycopg" and url.password == "pw"
    assert with_driver(make_url("postgresql+psycopg2://u@db/x")).drivername.endswith("psycopg2")
    assert with_driver(make_url("sqlite:///x.db")).drivername == "sqlite"
    # A masked password read back from config.yaml is left to PGPASSWORD or ~/.pgpass.
    assert with_driver(make_url("postgresql://u:***@db/x")).password is None


def test_no_postgresql_driver_says_how_to_install_one(monkeypatch, tmp_path):
    monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r'needs a PostgreSQL driver.*mbnas\[postgres\]') as err:
        open_storage("postgresql://u:pw@127.0.0.1/x", tmp_path / "study.db")
    assert "pw" not in str(err.value)


def test_a_driver_named_but_missing_is_one_line(tmp_path):
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed")
    with pytest.raises(ConfigError, match="driver is not installed") as err:
        open_storage("postgresql+psycopg2://u:pw@127.0.0.1/x", tmp_path / "study.db")
    assert "pw@" not in str(err.value)


def test_malformed_and_unknown_urls(tmp_path):
    with pytest.raises(ConfigError, match="not a database URL"):
        open_storage("not a url", tmp_path / "study.db")
    with pytest.raises(ConfigError, match="unknown kind of database"):
        open_storage("nosuchdb://u@h/x", tmp_path / "study.db")


def test_sqlite_storage_records_heartbeats(tmp_path):
    rdb = open_storage(None, tmp_path / "study.db", HeartbeatConfig(interval_s=5, grace_s=20))
    assert rdb.get_heartbeat_interval() == 5 and rdb.grace_period == 20
    assert isinstance(rdb.get_heartbeat_stale_trial_callback(),
                      optuna.storages.RetryHeartbeatStaleTrialCallback)


def search_error(capsys, tmp_path, storage_setting: str) -> str:
    """What `search` prints when it cannot open its storage: it must stop before any work."""
    code = main(["search", "+budget.macs=0.5M", f"space={TINY_SPACE}", "latency=none",
                 f"runs_dir={tmp_path}", "name=x", "preset=smoke", f"storage={storage_setting}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert PASSWORD not in err
    return err


def test_connection_errors_are_one_line_each(postgres, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    refused = postgres.url("mbnas").replace(str(postgres.port), str(free_port()))
    assert "no database server answers at 127.0.0.1" in search_error(capsys, tmp_path, refused)
    bad_password = postgres.url("postgres", password="wrong")
    assert ("password authentication failed for user 'mbnas'; check the password"
            in search_error(capsys, tmp_path, bad_password))
    missing = postgres.url("nosuchdb")
    assert ("database 'nosuchdb' does not exist" in search_error(capsys, tmp_path, missing)
            and "createdb" in search_error(capsys, tmp_path, missing))
    no_password = postgres.url("postgres", password=None)
    assert "wants a password" in search_error(capsys, tmp_path, no_password)
    assert not (tmp_path / "x" / "config.yaml").exists()


def test_a_masked_url_connects_with_pgpassword(postgres, monkeypatch, tmp_path):
    url = postgres.create_database("masked")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    rdb = open_storage(masked(url), tmp_path / "study.db")
    optuna.create_study(study_name="m", storage=rdb)
    assert PASSWORD not in masked(url)


def test_workers_on_several_machines_create_the_tables_at_once(postgres, tmp_path):
    """PostgreSQL refuses concurrent CREATE TABLEs of the same name (no lock file spans
    machines): every worker must still open the storage."""
    url, errors = postgres.create_database("race"), []

    def start():
        try:
            optuna.create_study(study_name="s", load_if_exists=True,
                                storage=open_storage(url, tmp_path / "unused.db"))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
