"""Sweep leases: at most one driver runs a sweep at a time, and a dead one's turn expires.

Two drivers of the same sweep (a re-submit racing a terminal's ``bench run``, two schedulers)
would both run every unfinished trial: the data stay consistent (trials are keyed by their
config hash) but the compute is spent twice. A driver therefore holds a lease on the sweep's
*name* in ``bench_sweep_leases`` while it runs it: the row names the owner (``host:pid:uuid``)
and the time it expires, which the owner's heartbeat keeps pushing forward. A driver that
finds a live row refuses (or waits); one that finds an expired row (its owner was SIGKILLed,
its machine lost) takes it over. Keyed by name, not by sweep id, so the lease is taken before
the sweep row exists and covers creating it.

Every step is one write transaction, so it is atomic on both backends: on SQLite the write
lock is taken up front (``BEGIN IMMEDIATE``), on PostgreSQL the row is read ``FOR UPDATE`` and
a racing first ``INSERT`` loses on the primary key (inside a savepoint, so the transaction
goes on to read the winner). Times are the drivers' clocks (UTC): a lease's time to live
(tens of seconds) is meant to be far above the skew between machines of one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from bench_service.store._types import utcnow
from bench_service.store.errors import StoreError
from bench_service.store.models import SweepLease
from bench_service.store.store import Store

LEASES = cast(Table, SweepLease.__table__)


@dataclass(frozen=True)
class LeaseInfo:
    """One driver's lease on one sweep (a row of ``bench_sweep_leases``)."""

    sweep_name: str
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= self.expires_at

    def describe(self, now: datetime | None = None) -> str:
        """``host:pid since 2026-12-01 21:50:03 UTC, lease renewed 3 s ago``."""
        now = now or utcnow()
        ago = max(0.0, (now - self.renewed_at).total_seconds())
        return (f"{self.host}:{self.pid} since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"lease renewed {ago:.0f} s ago")


class SweepLeaseHeld(StoreError):
    """Another live driver holds the sweep's lease (``holder`` says which)."""

    def __init__(self, holder: LeaseInfo, hint: str = "") -> None:
        self.holder = holder
        message = f"sweep {holder.sweep_name!r} is being run by {holder.describe()}"
        super().__init__(f"{message}; {hint}" if hint else message)


def acquire_lease(store: Store, sweep_name: str, owner: str, host: str, pid: int,
                  ttl_s: float, *, dead_owner: str | None = None
                  ) -> tuple[LeaseInfo, LeaseInfo | None]:
    """Take the sweep's lease for ``owner`` for ``ttl_s`` seconds.

    Returns the new lease and, when it was taken over from a driver whose lease had
    expired (or ``dead_owner``, known to be dead), that driver's last lease (``None``
    otherwise). Taking a lease ``owner`` already holds renews it.

    Raises:
        SweepLeaseHeld: Another owner's lease has not expired.
        StoreError: The database cannot be written.
    """

    def tx(conn: Connection) -> tuple[LeaseInfo, LeaseInfo | None] | LeaseInfo:
        now = utcnow()
        values = {"owner": owner, "host": host, "pid": pid, "acquired_at": now,
                  "renewed_at": now, "expires_at": now + timedelta(seconds=ttl_s)}
        row = _read(conn, sweep_name, for_update=True)
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(LEASES).values(sweep_name=sweep_name, **values))
            except IntegrityError:  # another driver inserted it first (PostgreSQL)
                winner = _read(conn, sweep_name)
                if winner is None:
                    raise
                return winner
            return _info(sweep_name, values), None
        if row.owner not in (owner, dead_owner) and not row.expired(now):
            return row
        if row.owner == owner:
            values["acquired_at"] = row.acquired_at
        taken = conn.execute(
            update(LEASES)
            .where(LEASES.c.sweep_name == sweep_name, LEASES.c.owner == row.owner)
            .values(**values)
        ).rowcount
        if taken != 1:  # changed hands since the read (cannot happen under the lock)
            current = _read(conn, sweep_name)
            if current is not None:
                return current
        return _info(sweep_name, values), (None if row.owner == owner else row)

    result = store._write(tx)
    if isinstance(result, LeaseInfo):
        raise SweepLeaseHeld(result)
    return result


def renew_lease(store: Store, sweep_name: str, owner: str, ttl_s: float) -> bool:
    """Push the lease's expiry ``ttl_s`` seconds past now; ``False`` if ``owner`` lost it."""

    def tx(conn: Connection) -> bool:
        now = utcnow()
        result = conn.execute(
            update(LEASES)
            .where(LEASES.c.sweep_name == sweep_name, LEASES.c.owner == owner)
            .values(renewed_at=now, expires_at=now + timedelta(seconds=ttl_s))
        )
        return int(result.rowcount) == 1

    return store._write(tx)


def release_lease(store: Store, sweep_name: str, owner: str) -> None:
    """Give the lease up (a no-op if ``owner`` does not hold it any more)."""
    store._write(lambda conn: conn.execute(
        delete(LEASES).where(LEASES.c.sweep_name == sweep_name, LEASES.c.owner == owner)))


def lease_holder(store: Store, sweep_name: str) -> LeaseInfo | None:
    """The sweep's current lease, expired or not (``None``: nobody holds one)."""
    with store.engine.connect() as conn:
        return _read(conn, sweep_name)


def _read(conn: Connection, sweep_name: str, *, for_update: bool = False) -> LeaseInfo | None:
    query = select(LEASES).where(LEASES.c.sweep_name == sweep_name)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else _info(sweep_name, row)


def _info(sweep_name: str, row: RowMapping | dict[str, Any]) -> LeaseInfo:
    return LeaseInfo(sweep_name=sweep_name, owner=row["owner"], host=row["host"],
                     pid=int(row["pid"]), acquired_at=row["acquired_at"],
                     renewed_at=row["renewed_at"], expires_at=row["expires_at"])


__all__ = ["LeaseInfo", "SweepLeaseHeld", "acquire_lease", "lease_holder", "release_lease",
           "renew_lease"]
