"""Alembic environment of the ``bench_`` schema (driven by ``bench_service.store.migrate``).

Only tables prefixed ``bench_`` are considered, so autogenerate never proposes to drop the
Optuna tables that share the database.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from bench_service.store.db import make_engine, resolve_url, writer
from bench_service.store.models import TABLE_PREFIX, VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Reflect only our own tables (Optuna's live in the same database)."""
    if type_ == "table":
        return bool(name) and str(name).startswith(TABLE_PREFIX)
    return True


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    """Emit SQL (``alembic upgrade --sql``) instead of running it."""
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run on the connection handed over by ``migrate.upgrade_engine`` (or open one)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(resolve_url(config.get_main_option("sqlalchemy.url")))
    try:
        with writer(engine).begin() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
