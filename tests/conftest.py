"""Fixtures shared by every test folder: a real PostgreSQL database, free ports, the CLI.

PostgreSQL gets one throwaway database per test session (``bench_test_<random>``, dropped at
the end) and one schema per test (selected through ``search_path`` in the URL), so tests never
see each other's rows and the shared ``test`` database is never written to. Tests that need it
are skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

#: Admin URL of the PostgreSQL server (override with ``BENCH_TEST_PG_URL``).
PG_ADMIN_URL = os.environ.get(
    "BENCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[URL]:
    """A fresh PostgreSQL database for this test session."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}")
    try:
        yield make_url(PG_ADMIN_URL).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pg_schema_url(database: URL) -> str:
    """A fresh, empty schema of ``database`` selected through ``search_path`` in the URL."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = database.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)




@pytest.fixture
def pg_url(pg_database: URL) -> str:
    """A URL of an empty PostgreSQL schema, fresh for this test."""
    return pg_schema_url(pg_database)


_session: pytest.Session | None = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    global _session
    _session = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit with pytest's status without the interpreter's finalisation.

    After every test and report, the interpreter's teardown of the native libraries this
    process loaded (Ray's core worker from in-process sessions, torch, gRPC, Streamlit's
    threads) once segfaulted in CI (exit 139 after "698 passed"), turning a green run red.
    Nothing of ours runs at that point; ``BENCH_TEST_FULL_EXIT=1`` keeps the normal exit.
    """
    if _session is None or os.environ.get("BENCH_TEST_FULL_EXIT") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(_session.exitstatus))
