"""URL resolution, engine settings and the errors a bad URL or server produces."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from bench_service.store import Store, StoreError, resolve_url
from bench_service.store.db import ENV_VAR, make_engine, mask_url


def test_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "postgresql+psycopg://u@h/env")
    assert resolve_url("postgresql+psycopg://u@h/explicit") == "postgresql+psycopg://u@h/explicit"
    assert resolve_url(None) == "postgresql+psycopg://u@h/env"


def test_default_is_bench_db_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_url() == f"sqlite:///{tmp_path.resolve() / 'bench.db'}"


def test_file_paths_become_absolute_sqlite_urls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'results.db'}"
    assert resolve_url("results.db") == expected
    assert resolve_url(tmp_path / "results.db") == expected
    assert resolve_url("sqlite:///results.db") == expected
    assert resolve_url(f"sqlite:///{tmp_path}/results.db") == expected


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("nosuchdb://u:hunter2@h/db", "unknown database dialect"),
        ("mysql+mysqldb://u:hunter2@h/db", "driver .* is not installed"),
        ("postgresql+psycopg://u:hunter2@h:notaport/db", "malformed database URL"),
    ],
)
def test_bad_urls_are_clear_errors_without_the_password(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match) as info:
        make_engine(resolve_url(url))
    assert "hunter2" not in str(info.value)


def test_unreachable_databases_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"cannot open database .*\*\*\*") as info:
        Store("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreError, match="cannot open database"):
        Store(tmp_path / "missing-dir" / "bench.db")


def test_mask_url() -> None:
    assert mask_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_connections_are_configured_for_concurrency(tmp_path: Path) -> None:
    engine = make_engine(resolve_url(tmp_path / "x.db"))
    with engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 30000,
        "synchronous": 1,
    }


def test_sqlite_write_transactions_take_the_lock_up_front(tmp_path: Path) -> None:
    """Store writes begin IMMEDIATE: the write lock is held from the first statement on."""
    path = tmp_path / "x.db"
    with Store(path) as store, store._writer.begin() as conn:
        conn.execute(text("SELECT 1"))  # a read only, yet the write lock is already ours
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
