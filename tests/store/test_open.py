"""Opening a store: read paths never create a database; refused schemas and databases are
one-line errors that leave the database as it was. Real files, real schemas, real locks."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _store_helpers import new_trial
from alembic import command
from sqlalchemy import func, inspect, select, text

from bench_service.store import (
    DatabaseLockedError,
    NoDatabaseError,
    ReadOnlyDatabaseError,
    SchemaVersionError,
    Store,
    current_revision,
    upgrade,
)
from bench_service.store.db import make_engine, writer
from bench_service.store.migrate import alembic_config, head_revision
from bench_service.store.models import VERSION_TABLE, Sweep

FUTURE = "9999"
#: Busy timeout (s) of the locked-database test.
BUSY = 3.0


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _stamp(url: str, revision: str) -> None:
    """Set our version row to ``revision`` (as a newer, or older, bench would have left it)."""
    engine = make_engine(url)
    try:
        with writer(engine).begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def _n_sweeps(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Sweep)) or 0)
    finally:
        engine.dispose()


@pytest.fixture
def populated(db_url: str) -> str:
    """A database with our schema at head and one sweep."""
    with Store(db_url) as store:
        store.create_sweep("s", {"name": "s"}, "0" * 64, [new_trial(0)])
    return db_url


# --------------------------------------------------------------------- missing / empty


def test_open_existing_never_creates_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(NoDatabaseError, match="does not exist") as info:
        Store.open_existing(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_open_existing_refuses_a_database_without_our_schema(db_url: str) -> None:
    before = _tables(db_url)  # creates the SQLite file, empty
    with pytest.raises(NoDatabaseError, match=r"no bench schema.*bench db upgrade"):
        Store.open_existing(db_url)
    assert _tables(db_url) == before == set()


def test_open_existing_reads_a_database_at_head(populated: str) -> None:
    with Store.open_existing(populated) as store:
        assert [s.name for s in store.list_sweeps()] == ["s"]


def test_open_existing_does_not_upgrade_an_older_schema(populated: str) -> None:
    _stamp(populated, "0001")
    with pytest.raises(SchemaVersionError, match=r"older than this bench.*bench db upgrade"):
        Store.open_existing(populated)
    assert current_revision(populated) == "0001"


# --------------------------------------------------------------------- future schema


def test_a_future_bench_schema_is_refused_everywhere_and_left_alone(populated: str) -> None:
    _stamp(populated, FUTURE)
    opens = (
        lambda: Store(populated),
        lambda: Store.open_existing(populated),
        lambda: upgrade(populated),
        lambda: Store(populated, create=False, upgrade=True),
    )
    for open_ in opens:
        with pytest.raises(SchemaVersionError) as info:
            open_()
        message = str(info.value)
        assert f"revision '{FUTURE}'" in message and f"knows up to '{head_revision()}'" in message
        assert "upgrade bench" in message and "\n" not in message
    assert current_revision(populated) == FUTURE and _n_sweeps(populated) == 1


# --------------------------------------------------------------------- read-only


@pytest.fixture
def immutable_file(tmp_path: Path) -> Iterator[Path]:
    """A populated SQLite file that even root cannot write (``chattr +i``)."""
    path = tmp_path / "ro.db"
    with Store(path) as store:
        store.create_sweep("s", {"name": "s"}, "0" * 64, [new_trial(0)])
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {made.stderr.strip()[:200]}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _refuses_writes(url: str) -> None:
    with Store(url) as store:  # at head: opening writes nothing
        assert [s.name for s in store.list_sweeps()] == ["s"]
        with pytest.raises(ReadOnlyDatabaseError, match="is read-only") as info:
            store.check_writable()
        assert "\n" not in str(info.value)
        with pytest.raises(ReadOnlyDatabaseError):
            store.create_sweep("t", {"name": "t"}, "1" * 64, [new_trial(1)])
        assert [s.name for s in store.list_sweeps()] == ["s"]


def test_an_immutable_file_reads_and_refuses_writes_in_one_line(immutable_file: Path) -> None:
    _refuses_writes(f"sqlite:///{immutable_file}")


def test_a_read_only_connection_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with Store(path) as store:
        store.create_sweep("s", {"name": "s"}, "0" * 64, [new_trial(0)])
    _refuses_writes(f"sqlite:///file:{path}?mode=ro&uri=true")


def test_an_older_read_only_database_says_so_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a database of the first release
        command.upgrade(alembic_config(connection=conn), "0001")
    engine.dispose()
    with pytest.raises(ReadOnlyDatabaseError, match="is read-only"):
        Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert current_revision(str(path)) == "0001"


def test_a_read_only_postgresql_session_is_refused_up_front(pg_url: str) -> None:
    with Store(pg_url) as store:
        store.create_sweep("s", {"name": "s"}, "0" * 64, [new_trial(0)])
    populated = pg_url
    read_only = populated.replace("-csearch_path", "-cdefault_transaction_read_only=on "
                                  "-csearch_path")
    with Store(read_only) as store:
        with pytest.raises(ReadOnlyDatabaseError, match="read-only"):
            store.check_writable()
        with pytest.raises(ReadOnlyDatabaseError, match="read-only"):
            store.create_sweep("t", {"name": "t"}, "1" * 64, [new_trial(1)])
    assert _n_sweeps(populated) == 1


# --------------------------------------------------------------------- locked


def _hold_write_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding the database's write lock until its stdin closes."""
    holder = subprocess.Popen(
        ["python", "-c",
         "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_database_locked_by_another_process_gives_up_in_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with Store(path) as store:
        store.create_sweep("s", {"name": "s"}, "0" * 64, [new_trial(0)])
    # Another writer (a separate process) holds the write lock and does not let go.
    holder = _hold_write_lock(path)
    try:
        with Store(path, busy_timeout=BUSY) as store:
            assert [s.name for s in store.list_sweeps()] == ["s"]  # WAL: readers go on
            start = time.monotonic()
            with pytest.raises(DatabaseLockedError, match="locked by another process") as info:
                store.create_sweep("t", {"name": "t"}, "1" * 64, [new_trial(1)])
            waited = time.monotonic() - start
            assert "\n" not in str(info.value)
            with pytest.raises(DatabaseLockedError):
                store.check_writable()
        # it waited for the lock, but not once per retry (4 attempts used to wait 4 x BUSY)
        assert 0.9 * BUSY <= waited < 4 * BUSY, waited
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    with Store(path) as store:  # released: nothing of the refused write is there
        assert [s.name for s in store.list_sweeps()] == ["s"]


def test_the_busy_timeout_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DB_BUSY_TIMEOUT", "2.5")
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    engine.dispose()
    monkeypatch.setenv("BENCH_DB_BUSY_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="BENCH_DB_BUSY_TIMEOUT"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}")


def test_a_sqlite_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    for open_ in (lambda: Store(path), lambda: Store.open_existing(path)):
        with pytest.raises(ValueError, match="not a database"):
            open_()
    assert path.read_text() == "not a database\n" * 100
    assert sqlite3.sqlite_version  # the stdlib driver is the one in use


def test_an_older_locked_database_says_so_on_upgrade(tmp_path: Path) -> None:
    """Migrating needs the write lock too: held by another process past the busy timeout,
    opening says so in one line instead of raising the driver's OperationalError."""
    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a database of the first release
        command.upgrade(alembic_config(connection=conn), "0001")
    engine.dispose()
    holder = _hold_write_lock(path)
    try:
        with pytest.raises(DatabaseLockedError, match="locked by another process") as info:
            Store(path, busy_timeout=BUSY)
        assert "\n" not in str(info.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert current_revision(str(path)) == "0001"
