"""A driver's hold on its sweep: take the lease, keep it alive, give it back.

``sweep_lease`` wraps a driver's whole run of a sweep (create or resume, run, mark the
outcome). A second driver of the same sweep is refused with the owner's name (exit 2), or
waits for its turn with ``wait=True``. A heartbeat thread renews the lease every
``ttl / 6`` seconds on its own connection, so a driver that dies (SIGKILL, a lost machine)
or hangs stops renewing and the next driver takes over once ``ttl`` has passed; one that
died on this same machine (its process is gone) is taken over at once.
``BENCH_LEASE_TTL_S`` sets the time to live (default 30 s; tests use a short one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from bench_service.engine.errors import ConfigError

if TYPE_CHECKING:
    from bench_service.store import Store
    from bench_service.store.lease import LeaseInfo

#: Environment variable: seconds a lease lives without a renewal.
TTL_ENV = "BENCH_LEASE_TTL_S"
DEFAULT_TTL_S = 30.0
#: Renewals per time to live: a lease survives ``RENEWALS - 1`` failed renewals in a row.
RENEWALS = 6
#: What a refused driver is told to do instead.
WAIT_HINT = ("run it again with --wait-if-busy to resume it once that driver ends, or stop "
             "that driver first")


def lease_ttl() -> float:
    """The lease's time to live in seconds (``BENCH_LEASE_TTL_S``, default 30)."""
    raw = os.environ.get(TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if not 0.5 <= ttl <= 3600:
        raise ConfigError(TTL_ENV, f"must be a number of seconds in [0.5, 3600], not {raw[:40]!r}")
    return ttl


def owner_id() -> str:
    """``host:pid:pidns-uuid``: unique per driver even when hosts and pids repeat."""
    return f"{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}-{uuid.uuid4().hex[:12]}"


def _pid_namespace() -> str:
    """This process's PID namespace (containers sharing a host name have their own)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def owner_is_gone(owner: str) -> bool:
    """Whether ``owner`` (an ``owner_id``) is a process of this machine and namespace that no
    longer exists: a driver killed here a moment ago need not wait for its lease to expire.
    Anything uncertain (another machine, a pid now reused) counts as alive."""
    host, _, rest = owner.partition(":")
    pid, _, tag = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() \
            or tag.partition("-")[0] != _pid_namespace() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _stop_this_driver(holder: LeaseInfo | None) -> None:
    """The lease was taken over while this driver ran: cancel the run (as SIGTERM does)."""
    who = holder.describe() if holder is not None else "nobody"
    print(f"bench: lost the lease on this sweep (now held by {who}); stopping this driver",
          file=sys.stderr, flush=True)
    signal.raise_signal(signal.SIGTERM)


class LeaseKeeper:
    """Renews a lease in a daemon thread until ``stop``; reports a lease lost to others."""

    def __init__(self, url: str, sweep_name: str, owner: str, ttl_s: float,
                 on_lost: Callable[[LeaseInfo | None], None] = _stop_this_driver) -> None:
        self.url, self.sweep_name, self.owner, self.ttl_s = url, sweep_name, owner, ttl_s
        self.on_lost = on_lost
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.ttl_s)

    def _run(self) -> None:
        from bench_service.store import Store
        from bench_service.store.lease import lease_holder, renew_lease

        store = Store(self.url, upgrade=False)  # its own connections, not the driver's
        try:
            while not self._stop.wait(self.ttl_s / RENEWALS):
                try:
                    kept = renew_lease(store, self.sweep_name, self.owner, self.ttl_s)
                except Exception:  # database busy or unreachable: try again next beat
                    continue
                if kept:
                    self.renewals += 1
                    continue
                if not self._stop.is_set():
                    holder = None
                    with contextlib.suppress(Exception):
                        holder = lease_holder(store, self.sweep_name)
                    self.on_lost(holder)
                return
        finally:
            store.close()


@contextmanager
def sweep_lease(store: Store, sweep_name: str, *, wait: bool = False,
                out: TextIO | None = None) -> Iterator[LeaseInfo]:
    """Hold the sweep's lease for the body: refuse, or with ``wait`` wait, if it is taken.

    Raises:
        SweepLeaseHeld: Another live driver runs the sweep (and ``wait`` is false); its
            message names that driver.
    """
    from bench_service.store.lease import SweepLeaseHeld, acquire_lease, release_lease

    def say(msg: str) -> None:
        if out is not None:
            print(msg, file=out, flush=True)

    ttl = lease_ttl()
    owner = owner_id()
    host, pid = socket.gethostname(), os.getpid()
    waiting_for: str | None = None
    gone: str | None = None
    while True:
        try:
            lease, previous = acquire_lease(store, sweep_name, owner, host, pid, ttl,
                                            dead_owner=gone)
            break
        except SweepLeaseHeld as exc:
            if owner_is_gone(exc.holder.owner) and gone != exc.holder.owner:
                gone = exc.holder.owner  # killed on this machine: take over at once
                continue
            if not wait:
                raise SweepLeaseHeld(exc.holder, WAIT_HINT) from None
            if exc.holder.owner != waiting_for:
                waiting_for = exc.holder.owner
                say(f"waiting: sweep {sweep_name!r} is being run by {exc.holder.describe()}")
            time.sleep(ttl / RENEWALS)
    if previous is not None:
        why = "process is gone" if previous.owner == gone and not previous.expired() else \
            "lease expired"
        say(f"took sweep {sweep_name!r} over from {previous.host}:{previous.pid}, whose {why} "
            f"(last renewed {previous.renewed_at:%H:%M:%S} UTC)")
    keeper = LeaseKeeper(store.url, sweep_name, owner, ttl)
    keeper.start()
    try:
        yield lease
    finally:
        keeper.stop()
        with contextlib.suppress(Exception):  # if this fails, the lease simply expires
            release_lease(store, sweep_name, owner)


__all__ = ["DEFAULT_TTL_S", "TTL_ENV", "LeaseKeeper", "lease_ttl", "owner_id", "owner_is_gone",
           "sweep_lease"]
