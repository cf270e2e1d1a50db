"""One driver per sweep: the lease in the database, and real drivers competing for it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _helpers import bench_cmd, cli_env
from test_sweep_e2e import GRID, SLOW, SLOW_TRIALS, _counts, _kill_session, _wait_for, write_spec

from bench_service.cluster.lease import TTL_ENV, LeaseKeeper, sweep_lease
from bench_service.store import Store
from bench_service.store.lease import (
    SweepLeaseHeld,
    acquire_lease,
    lease_holder,
    release_lease,
    renew_lease,
)

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'bench.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("pg_url")
    return Store(url)


def test_a_lease_has_one_owner_until_it_expires(store: Store) -> None:
    mine, previous = acquire_lease(store, "s", "a:1:x", "a", 1, ttl_s=30)
    assert previous is None and mine.owner == "a:1:x" and not mine.expired()
    with pytest.raises(SweepLeaseHeld, match=r"sweep 's' is being run by a:1 since .* UTC, "
                                             r"lease renewed \d+ s ago"):
        acquire_lease(store, "s", "b:2:y", "b", 2, ttl_s=30)
    assert renew_lease(store, "s", "a:1:x", ttl_s=0.2)  # the owner renews (shortly)
    assert acquire_lease(store, "other", "b:2:y", "b", 2, ttl_s=30)[1] is None  # per sweep
    time.sleep(0.3)  # past the short expiry: the next driver takes over the dead one's lease
    theirs, previous = acquire_lease(store, "s", "b:2:y", "b", 2, ttl_s=30)
    assert theirs.owner == "b:2:y" and previous is not None and previous.owner == "a:1:x"
    assert not renew_lease(store, "s", "a:1:x", ttl_s=30)  # the old owner learns it lost it
    release_lease(store, "s", "a:1:x")  # not its lease any more: nothing happens
    holder = lease_holder(store, "s")
    assert holder is not None and holder.owner == "b:2:y"
    release_lease(store, "s", "b:2:y")
    assert lease_holder(store, "s") is None


def test_the_heartbeat_keeps_a_short_lease_alive_and_release_frees_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TTL_ENV, "0.6")
    with sweep_lease(store, "s") as lease:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # outlive the TTL a few times over
            holder = lease_holder(store, "s")
            assert holder is not None and holder.owner == lease.owner
            if (holder.renewed_at - lease.acquired_at).total_seconds() > 1.8:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the lease was never renewed")
        with pytest.raises(SweepLeaseHeld, match="--wait-if-busy"), sweep_lease(store, "s"):
            pass
    assert lease_holder(store, "s") is None


def test_a_keeper_whose_lease_was_taken_over_says_so(store: Store) -> None:
    acquire_lease(store, "s", "a:1:x", "a", 1, ttl_s=0.5)
    lost: list[str | None] = []
    keeper = LeaseKeeper(store.url, "s", "a:1:x", 0.5,
                         on_lost=lambda h: lost.append(h.owner if h else None))
    release_lease(store, "s", "a:1:x")
    acquire_lease(store, "s", "b:2:y", "b", 2, ttl_s=30)
    keeper.start()
    _wait_for(lambda: bool(lost), timeout=60)
    keeper.stop()
    assert lost == ["b:2:y"]


def _driver(spec: Path, db: Path, cwd: Path, *extra: str, ttl: float | None = None,
            shared_ray: bool = True) -> subprocess.Popen[str]:
    env = cli_env()
    if ttl is not None:
        env[TTL_ENV] = str(ttl)
    return subprocess.Popen(
        bench_cmd("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress", *extra,
                  shared_ray=shared_ray),
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def _session_pids(sid: int) -> set[int]:
    """The processes of session ``sid`` (a driver started with ``start_new_session``)."""
    pids = set()
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text()
                                       .rsplit(")", 1)[1].split()[3]) == sid:
                pids.add(int(entry))
    return pids


def _attempts(db: Path, name: str) -> list[int]:
    return [int(a) for a in Store(str(db)).trials_frame(name)["attempt"]]


def test_two_drivers_started_together_run_every_trial_once(tmp_path: Path) -> None:
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "grid.yaml", {**GRID, "seeds": [0]})
    procs = [_driver(spec, db, tmp_path) for _ in range(2)]
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            _kill_session(p)
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
    err = results[loser][1]
    assert f"is being run by {socket.gethostname()}:{procs[winner].pid} since" in err, err
    assert "Traceback" not in err
    assert _attempts(db, "e2e") == [1] * 12
    assert lease_holder(Store(str(db)), "e2e") is None  # released at the end


def test_a_driver_killed_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "slow.yaml", SLOW)
    first = _driver(spec, db, tmp_path, ttl=3600)  # its lease would outlive the test
    try:
        _wait_for(lambda: _counts(db).get("completed", 0) >= 2, timeout=600)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        _kill_session(first)
    holder = lease_holder(Store(str(db)), "slow")
    assert holder is not None and holder.pid == first.pid and not holder.expired()
    again = _driver(spec, db, tmp_path)
    try:
        out, err = again.communicate(timeout=600)
    finally:
        _kill_session(again)
    assert again.returncode == 0, err
    dead = f"{socket.gethostname()}:{first.pid}"
    assert f"took sweep 'slow' over from {dead}, whose process is gone" in out, out
    trials = Store(str(db)).trials_frame("slow")
    assert len(trials) == SLOW_TRIALS and set(trials["status"]) == {"completed"}


def test_a_hung_drivers_lease_expires_and_the_next_driver_takes_over(tmp_path: Path) -> None:
    ttl = 20.0
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "slow.yaml", SLOW)
    first = _driver(spec, db, tmp_path, ttl=ttl, shared_ray=False)  # its Ray dies with it
    try:
        _wait_for(lambda: _counts(db).get("completed", 0) >= 2, timeout=600)
        # Hung, not dead (a partitioned machine, a stuck process): the process is still
        # there, so only the lease's expiry can tell the next driver it may go on. Its
        # embedded Ray goes (as with the machine), so none of its trials run on meanwhile.
        os.kill(first.pid, signal.SIGSTOP)
        for pid in _session_pids(first.pid) - {first.pid}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        holder = lease_holder(Store(str(db)), "slow")
        assert holder is not None and holder.pid == first.pid
        hung = f"{socket.gethostname()}:{first.pid}"
        # Within its TTL the lease still stands: a plain run is refused, naming the holder
        # (unless this machine took longer than the TTL to start it: then it takes over).
        plain = _driver(spec, db, tmp_path)
        try:
            out, err = plain.communicate(timeout=600)
        finally:
            _kill_session(plain)
        if plain.returncode == 2:
            assert f"sweep 'slow' is being run by {hung} since" in err, err
            # A waiting driver takes over once the lease expires, and finishes the sweep.
            waiting = _driver(spec, db, tmp_path, "--wait-if-busy")
            try:
                out, err = waiting.communicate(timeout=600)
            finally:
                _kill_session(waiting)
            assert waiting.returncode == 0, err
        else:
            assert plain.returncode == 0, err
        assert f"took sweep 'slow' over from {hung}, whose lease expired" in out, out
    finally:
        _kill_session(first)
    trials = Store(str(db)).trials_frame("slow")
    assert len(trials) == SLOW_TRIALS and set(trials["status"]) == {"completed"}
    assert lease_holder(Store(str(db)), "slow") is None
