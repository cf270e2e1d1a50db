"""Fixtures shared by every test folder: a real PostgreSQL database, free ports, the CLI.

The suite runs on two pytest-xdist workers (``-n auto --dist loadgroup`` in pyproject.toml;
``BENCH_TEST_WORKERS`` overrides the count, ``-n 0`` runs in one process). Each worker is its
own pytest session, so session fixtures (the PostgreSQL database, the dashboard's database)
exist once per worker. Scheduling is per test, with two rules for the tests that need it:

* a test using a module-scoped fixture runs on the worker that holds its module's other
  users of it (``xdist_group`` by module), so an expensive module fixture (a Ray cluster, a
  wheel build) is built once; ``@pytest.mark.xdist_group("name")`` groups any other tests;
* tests marked ``slow`` (real ``bench run`` processes, Ray clusters) are handed out first, so
  the last minutes are short tests on both workers rather than one long test on one.

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

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker computes with its share of the cores: torch's default (one thread per
    # core in every process) made two workers' OpenMP threads fight over 2 cores, and the
    # engine tests took 1.6x as long. Set before torch is imported; `bench run` processes and
    # their Ray workers the tests start inherit it (Ray sets one per task slot anyway).
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("MKL_NUM_THREADS", str(_share))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: two (the suite waits on processes as much as it computes, so
    two workers finish about twice as fast even on 2 cores), ``$BENCH_TEST_WORKERS`` if set,
    and none when every argument names single tests (quick runs start no worker processes)."""
    raw = os.environ.get("BENCH_TEST_WORKERS", "").strip()
    if raw:
        return int(raw)
    if config.args and all("::" in arg for arg in config.args):
        return 0
    return max(2, min(4, (os.cpu_count() or 2) // 2))


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(fd.scope in ("module", "class", "package") for seq in defs for fd in seq)


@pytest.hookimpl(tryfirst=True)  # before xdist turns ``xdist_group`` marks into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the users of module fixtures by module; put ``slow`` tests (and groups) first.

    A group keeps its tests' order (a module may rely on it, e.g. the two-node test that
    kills a node last), and is as early as its slowest member.
    """
    groups: dict[str, str] = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None and _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            groups[item.nodeid] = str(mark.args[0] if mark.args else
                                      mark.kwargs.get("name", "default"))
    slow_groups = {groups[i.nodeid] for i in items
                   if i.get_closest_marker("slow") and i.nodeid in groups}

    def late(item: pytest.Item) -> bool:
        group = groups.get(item.nodeid)
        return not (item.get_closest_marker("slow") or group in slow_groups)

    items.sort(key=late)  # stable: the order within each group and among peers stays


_session: pytest.Session | None = None


def pytest_sessionfinish(session: pytest.Session) -> None:
    global _session
    _session = session
    import _ray_head  # the shared Ray head of this process's drivers, if one was started

    _ray_head.stop()


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
