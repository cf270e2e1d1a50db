"""Database URLs and engines: where the results live and how connections are set up.

Concurrency lives here because it is a property of the connection, not of any one query: a
store is written from many processes at once (Ray workers, several sweeps). On SQLite that
needs WAL (readers never block the writer), a bounded busy timeout (writers queue instead of
failing, but not forever: after ``$BENCH_DB_BUSY_TIMEOUT`` seconds, 30 by default, a write
gives up with one line saying the database is locked by another process) and ``BEGIN
IMMEDIATE`` for write transactions (a writer takes the lock up front, so it never has to
upgrade a read snapshot, which SQLite refuses with "database is locked" without waiting).
PostgreSQL needs only ``pool_pre_ping`` for long-lived workers.

Driver errors that are about the database rather than a query (locked, read-only, full) are
turned into one-line ``StoreError`` subclasses by ``database_error``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from bench_service.store.errors import (
    DatabaseLockedError,
    DatabaseUnavailableError,
    ReadOnlyDatabaseError,
    StoreError,
)

#: Environment variable naming the database when no URL is given.
ENV_VAR = "BENCH_DB_URL"
#: SQLite file used (in the current directory) when neither a URL nor the variable is set.
DEFAULT_FILE = "bench.db"
#: Seconds a SQLite writer waits for the lock before giving up (the default of
#: ``$BENCH_DB_BUSY_TIMEOUT``).
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Environment variable overriding ``SQLITE_BUSY_TIMEOUT_S`` (seconds, > 0).
BUSY_TIMEOUT_ENV_VAR = "BENCH_DB_BUSY_TIMEOUT"
#: Execution option marking a connection whose transactions write (``BEGIN IMMEDIATE``).
WRITE_OPTION = "bench_write"


def resolve_url(url: str | os.PathLike[str] | None = None) -> str:
    """The database URL to use: ``url``, else ``$BENCH_DB_URL``, else ``./bench.db``.

    A bare file path (``results.db``, ``~/runs/x.db``) becomes a SQLite URL. Relative SQLite
    paths are made absolute here, so a URL handed to a worker process with another working
    directory still names the same file.

    Raises:
        StoreError: The URL is malformed.
    """
    raw = os.fspath(url) if url is not None else ""
    raw = raw.strip() or os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return _sqlite_url(Path.cwd() / DEFAULT_FILE)
    if "://" not in raw:
        return "sqlite://" if raw == ":memory:" else _sqlite_url(Path(raw))
    parsed = _parse(raw)
    database = parsed.database
    if (
        parsed.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).expanduser().is_absolute()
    ):
        return _sqlite_url(Path(database), parsed)
    return raw


def mask_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***`` (for error messages and logs)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def busy_timeout_s() -> float:
    """How long a SQLite writer waits for another process's lock: ``$BENCH_DB_BUSY_TIMEOUT``
    seconds, else ``SQLITE_BUSY_TIMEOUT_S``.

    Raises:
        StoreError: The variable is set but not a positive number.
    """
    raw = os.environ.get(BUSY_TIMEOUT_ENV_VAR, "").strip()
    if not raw:
        return SQLITE_BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1e6:
        raise StoreError(
            f"${BUSY_TIMEOUT_ENV_VAR} must be a number of seconds > 0, got {raw[:40]!r}"
        )
    return value


def sqlite_file(url: str | URL) -> Path | None:
    """The file behind a SQLite URL (``None``: not SQLite, or an in-memory database).

    Understands plain paths and SQLite URI filenames (``sqlite:///file:x.db?mode=ro&uri=true``).
    """
    parsed = url if isinstance(url, URL) else _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
        if database.startswith("//"):  # file://host/path or file:///path
            database = "/" + database[2:].split("/", 1)[-1]
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def make_engine(url: str, *, busy_timeout: float | None = None) -> Engine:
    """An engine for ``url`` with the concurrency settings of its backend (module docstring).

    Creating the engine does not connect; use ``check_connection`` for a clear early error.
    ``busy_timeout`` (seconds) overrides ``busy_timeout_s()`` for SQLite.

    Raises:
        StoreError: Malformed URL, unknown dialect or a driver that is not installed.
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "postgresql":
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise StoreError(
            f"unknown database dialect {parsed.drivername!r} in {mask_url(parsed)}; "
            "use sqlite:///path.db or postgresql+psycopg://user@host/db"
        ) from exc
    except ImportError as exc:
        raise StoreError(
            f"the driver for {mask_url(parsed)} is not installed ({exc}); for PostgreSQL "
            "install psycopg (pip install 'bench-service[postgres]') and use postgresql+psycopg://"
        ) from exc
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_s() if busy_timeout is None else busy_timeout)
    return engine


def writer(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) whose transactions start with ``BEGIN IMMEDIATE``."""
    return engine.execution_options(**{WRITE_OPTION: True})


def check_connection(engine: Engine) -> None:
    """Connect once, so an unreachable database fails early as a one-line ``StoreError``."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        if is_locked_error(exc):
            raise database_error(exc, engine.url) from exc
        where = mask_url(engine.url)
        raise StoreError(f"cannot open database {where}: {first_line(exc)}") from exc


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's transient "database is locked/busy" (worth a retry)."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text


#: Driver messages of a server that is down, restarting or unreachable (PostgreSQL/psycopg).
_UNAVAILABLE = (
    "connection refused", "could not connect", "connection timeout", "timeout expired",
    "server closed the connection", "terminating connection", "connection is closed",
    "connection is lost", "connection reset", "no connection to the server",
    "consuming input failed", "ssl syscall", "the database system is starting up",
    "the database system is shutting down", "the database system is in recovery mode",
    "the database system is not yet accepting connections", "connection failed",
)


def is_unavailable_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the database server is down or the connection dropped (a
    restart, a failover, a network cut), rather than anything about the statement: the
    transaction did not commit, and the same write is worth trying again later."""
    if getattr(exc, "connection_invalidated", False):
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(marker in text for marker in _UNAVAILABLE)


def is_readonly_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be written (a read-only file, directory,
    connection or PostgreSQL transaction)."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "readonly database" in text or "read-only" in text or "read only" in text


def is_database_error(exc: BaseException) -> bool:
    """Whether a driver error is about the database (locked, read-only, unavailable, full)
    rather than about one statement (a constraint, a bad query): ``database_error`` material."""
    return isinstance(exc, OperationalError) or is_locked_error(exc) or is_readonly_error(exc)


def first_line(exc: BaseException) -> str:
    """The first line of a (driver) error, without SQLAlchemy's SQL and background link."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_error(
    exc: BaseException, url: str | URL, waited_s: float | None = None
) -> StoreError:
    """A one-line ``StoreError`` for a driver error about the database itself.

    Locked (another process holds SQLite's write lock past the busy timeout) becomes
    ``DatabaseLockedError``; read-only becomes ``ReadOnlyDatabaseError``; anything else a
    plain ``StoreError`` with the driver's first line.
    """
    where = mask_url(url)
    if is_locked_error(exc):
        waited = busy_timeout_s() if waited_s is None else waited_s
        return DatabaseLockedError(
            f"database {where} is locked by another process (gave up after {waited:.0f} s; "
            f"${BUSY_TIMEOUT_ENV_VAR} sets the wait); nothing was written, try again when "
            "it is done"
        )
    if is_unavailable_error(exc):
        return DatabaseUnavailableError(
            f"database {where} is unreachable ({first_line(exc)}); nothing was written, "
            "try again when it is back"
        )
    if is_readonly_error(exc):
        return ReadOnlyDatabaseError(
            f"database {where} is read-only ({first_line(exc)}): this command needs to write "
            "to it; use a writable file (or --db another database)"
        )
    return StoreError(f"database error in {where}: {first_line(exc)}")


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"malformed database URL {mask_url(url)!r}: {exc}") from exc


def _sqlite_url(path: Path, base: URL | None = None) -> str:
    absolute = str(path.expanduser().resolve())
    if base is None:
        return f"sqlite:///{absolute}"
    return base.set(database=absolute).render_as_string(hide_password=False)


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL once. The switch needs an exclusive lock, and SQLite may refuse
    it at once with "database is locked" (no busy wait) while other processes open the same
    new file, so it is retried for up to the busy timeout. A read-only database keeps its
    journal mode (readers need no WAL; its writes fail later with a clear message)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if is_readonly_error(exc):
                return
            if not is_locked_error(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _configure_sqlite(engine: Engine, timeout_s: float) -> None:
    """Install the SQLite pragmas and our own ``BEGIN`` (see the module docstring)."""
    timeout_ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module so that we choose DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            _enable_wal(cursor, timeout_s)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")
