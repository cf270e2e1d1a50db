"""A PostgreSQL server that is down or dropped the connection: a retryable, one-line error.

The writers (the metric writer actor, the driver storing an outcome) retry it the way they
retry a locked SQLite file, so a database restart mid-sweep loses nothing
(tests/test_topology.py restarts a real one mid-sweep).
"""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from bench_service.cluster.tasks import retry_while_locked
from bench_service.store import DatabaseUnavailableError
from bench_service.store.db import database_error, is_unavailable_error


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once the socket is closed


def _refused() -> OperationalError:
    url = f"postgresql+psycopg://bench@127.0.0.1:{_closed_port()}/bench"
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("connected to a closed port")


def test_a_refused_connection_is_unavailable_and_says_nothing_was_written() -> None:
    pytest.importorskip("psycopg")
    exc = _refused()
    assert is_unavailable_error(exc)
    err = database_error(exc, "postgresql+psycopg://bench:secret@127.0.0.1:1/bench")
    assert isinstance(err, DatabaseUnavailableError)
    assert "unreachable" in str(err) and "nothing was written" in str(err)
    assert "secret" not in str(err)  # the password is masked


def test_writers_retry_while_the_database_is_unavailable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv("BENCH_WRITE_RETRY_S", "30")
    failures = [_refused(), database_error(_refused(), "postgresql://x@h/db")]
    calls = []

    def write() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "stored"

    assert retry_while_locked(write, who="test") == "stored"
    assert len(calls) == 3
    assert capsys.readouterr().err.count("retrying in") == 2


def test_other_errors_are_not_retried() -> None:
    calls = []

    def write() -> None:
        calls.append(1)
        raise ValueError("a constraint")

    with pytest.raises(ValueError):
        retry_while_locked(write, who="test")
    assert calls == [1]
