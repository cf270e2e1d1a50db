"""Optuna's tables in our database: checking their schema, deleting a sweep's studies.

Optuna's RDB storage shares the database (its ``studies``, ``trials``, ``alembic_version`` ...
next to our ``bench_`` tables). The store never imports Optuna to read or delete: deleting a
sweep removes its studies with plain SQL in the same transaction as the sweep's own rows, so
either both are gone or neither. Optuna's child tables are found by their foreign keys rather
than listed, so the deletion follows whatever layout the installed Optuna created.

``check_optuna_schema`` does import Optuna (lazily): whether Optuna can use its tables is
Optuna's own rule, so the check asks Optuna's storage, and only when its tables exist (so the
check never creates them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import column, delete, func, inspect, or_, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from bench_service.store.db import (
    check_connection,
    database_error,
    first_line,
    is_database_error,
    make_engine,
    mask_url,
    resolve_url,
)
from bench_service.store.errors import SchemaVersionError, StoreError

#: Optuna's table of studies and of trials (stable names since Optuna 1.x).
STUDIES, TRIALS = "studies", "trials"
#: The tables whose presence means Optuna has set up its schema in this database.
_OPTUNA_MARKERS = frozenset({STUDIES, "version_info", "alembic_version"})


def delete_studies(conn: Connection, names: Iterable[str], prefix: str | None = None) -> int:
    """Delete Optuna's studies called ``names`` or starting with ``prefix``, with their trials.

    Runs in the caller's transaction; a database without Optuna's tables is left alone.

    Returns:
        How many studies were deleted.
    """
    tables = set(inspect(conn).get_table_names())
    if STUDIES not in tables:
        return 0
    studies = table(STUDIES, column("study_id"), column("study_name"))
    wanted = sorted(set(names))
    conditions: list[Any] = [studies.c.study_name.in_(wanted)] if wanted else []
    if prefix:
        conditions.append(func.substr(studies.c.study_name, 1, len(prefix)) == prefix)
    if not conditions:
        return 0
    ids = [int(i) for i in conn.scalars(select(studies.c.study_id).where(or_(*conditions)))]
    if not ids:
        return 0
    trial_ids = None
    if TRIALS in tables:
        trials = table(TRIALS, column("trial_id"), column("study_id"))
        trial_ids = select(trials.c.trial_id).where(trials.c.study_id.in_(ids))
    # Children first (Optuna's foreign keys have no ON DELETE CASCADE): rows of trials'
    # tables, then trials, then the studies' other tables, then the studies.
    referring = _referring_tables(conn, tables)
    if trial_ids is not None:
        for name, col in referring[TRIALS]:
            child = table(name, column(col))
            conn.execute(delete(child).where(child.c[col].in_(trial_ids)))
    for name, col in referring[STUDIES]:
        if name != TRIALS:
            child = table(name, column(col))
            conn.execute(delete(child).where(child.c[col].in_(ids)))
    if trial_ids is not None:
        trials_t = table(TRIALS, column("study_id"))
        conn.execute(delete(trials_t).where(trials_t.c.study_id.in_(ids)))
    conn.execute(delete(studies).where(studies.c.study_id.in_(ids)))
    return len(ids)


def _referring_tables(conn: Connection, tables: set[str]) -> dict[str, list[tuple[str, str]]]:
    """``{"trials": [(table, column), ...], "studies": [...]}``: Optuna's foreign keys."""
    inspector = inspect(conn)
    found: dict[str, list[tuple[str, str]]] = {STUDIES: [], TRIALS: []}
    for name in sorted(tables):
        if name.startswith("bench_"):
            continue
        for fk in inspector.get_foreign_keys(name):
            target = fk.get("referred_table")
            if target in found and len(fk["constrained_columns"]) == 1:
                found[target].append((name, fk["constrained_columns"][0]))
    return found


def check_optuna_schema(url: str | None = None) -> None:
    """Refuse, before anything is written, a database whose Optuna tables this Optuna cannot
    use (set up by a newer Optuna, or an older one needing ``optuna storage upgrade``).

    Call it before creating a tuned sweep. A database without Optuna's tables passes (Optuna
    creates them at its head revision); nothing is created or written either way.

    Raises:
        SchemaVersionError: Optuna refuses its tables; the message says which revision they
            are at and what to do.
        StoreError: The database cannot be reached.
    """
    resolved = resolve_url(url)
    engine = make_engine(resolved)
    try:
        check_connection(engine)
        try:
            with engine.connect() as conn:
                present = set(inspect(conn).get_table_names()) & _OPTUNA_MARKERS
                revision = _optuna_revision(conn) if "alembic_version" in present else None
        except DBAPIError as exc:
            if not is_database_error(exc):
                raise
            raise database_error(exc, resolved) from exc
    finally:
        engine.dispose()
    if present != _OPTUNA_MARKERS or revision is None:
        return
    _ask_optuna(resolved, revision)


def _optuna_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _ask_optuna(url: str, revision: str) -> None:
    """Optuna's own compatibility check, on tables that exist (so it writes nothing)."""
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    except RuntimeError as exc:
        raise SchemaVersionError(
            f"the Optuna tables in {mask_url(url)} are at Optuna schema revision "
            f"{revision!r}, which optuna {optuna.__version__} cannot use: {first_line(exc)}"
        ) from exc
    except DBAPIError as exc:
        raise StoreError(f"cannot check the Optuna tables in {mask_url(url)}: "
                         f"{first_line(exc)}") from exc
    storage.engine.dispose()
