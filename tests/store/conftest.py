"""Backends for the store's contract suite: a SQLite file and a real PostgreSQL server.

PostgreSQL gets one throwaway database per test session (``bench_test_<random>``, dropped at
the end) and one schema per test (selected through ``search_path`` in the URL), so tests never
see each other's rows and the shared ``test`` database is never written to. The PostgreSQL
parameter is skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench_service.store import Store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database of each backend (our schema not created yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'bench.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()
