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


class DatabaseLocked(StoreError):
    """Another writer held the database's write lock for longer than the busy timeout."""


class DatabaseReadOnly(StoreError):
    """The database (file, directory or connection) accepts no writes."""
