"""Errors of the results store.

Everything the store raises on purpose is a ``StoreError`` (a ``ValueError``), so the CLI and
the HTTP API can show one clear line (the URL with its password masked) instead of a driver
traceback.
"""

from __future__ import annotations


class StoreError(ValueError):
    """The database is unreachable, the URL is malformed, or a request names unknown rows."""


class SweepExistsError(StoreError):
    """``create_sweep`` was given a name that is already taken.

    A subclass so that a driver racing another one to create the same sweep can catch exactly
    this case and fall back to ``get_sweep``.
    """


class NoDatabaseError(StoreError):
    """A read-only command was pointed at a database that does not exist or has no bench
    schema; nothing was created."""


class SchemaVersionError(StoreError):
    """The database's schema (ours or Optuna's) is at a revision this installation cannot use:
    newer than this bench knows (upgrade bench), or older and a read path may not upgrade it."""


class DatabaseLockedError(StoreError):
    """Another process held SQLite's write lock for longer than the busy timeout; nothing was
    written. Worth retrying later (a subclass so that writers with their own retry can)."""


class ReadOnlyDatabaseError(StoreError):
    """A write was refused because the database (file, directory or connection) is
    read-only; nothing was written."""


class DatabaseUnavailableError(StoreError):
    """The database server could not be reached, or dropped the connection (restarting,
    failing over, a network cut); the transaction was rolled back. Worth retrying once it is
    back (a subclass so that writers with their own retry can)."""
