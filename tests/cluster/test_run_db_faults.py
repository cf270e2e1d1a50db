"""`bench run` on a database it cannot write: one line, exit 2, nothing half-written."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import bench_cmd, cli_env
from test_metric_writes import Lock
from test_sweep_e2e import write_spec

from bench_service.store import Store
from bench_service.store.db import BUSY_TIMEOUT_ENV_VAR as BUSY_TIMEOUT_ENV

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

TINY = {"name": "tiny", "workloads": ["linreg"], "optimizers": ["sgd"], "budget": {"epochs": 1}}


def _run(spec: Path, db: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bench_cmd("run", str(spec), "--db", str(db), "--num-cpus", "1", "--no-progress"),
        cwd=cwd, env={**cli_env(), **env}, capture_output=True, text=True, timeout=600,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in ("bench_sweeps", "bench_trials", "bench_sweep_leases")}


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    """A database file nobody may write: immutable for root (who ignores file modes),
    mode 0444 for anyone else."""
    db = tmp_path / "ro.db"
    Store(str(db)).close()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            pytest.skip("root cannot make a read-only file here (no chattr +i)")
    else:
        db.chmod(0o444)
    try:
        yield db
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=False)
        db.chmod(0o644)


def test_a_read_only_database_is_one_line_and_exit_2(read_only_db: Path, tmp_path: Path
                                                     ) -> None:
    proc = _run(write_spec(tmp_path / "tiny.yaml", TINY), read_only_db, tmp_path)
    line = _one_error_line(proc)
    assert f"database sqlite:///{read_only_db} is read-only" in line
    assert _rows(read_only_db) == {"bench_sweeps": 0, "bench_trials": 0,
                                   "bench_sweep_leases": 0}


def test_a_database_locked_by_another_writer_is_waited_for_boundedly(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    Store(str(db)).close()
    spec = write_spec(tmp_path / "tiny.yaml", TINY)
    lock = Lock(db)
    try:
        began = time.monotonic()
        proc = _run(spec, db, tmp_path, **{BUSY_TIMEOUT_ENV: "2"})
        took = time.monotonic() - began
    finally:
        lock.release()
    line = _one_error_line(proc)
    waited = re.search(
        rf"database sqlite:///{re.escape(str(db))} is locked by another process "
        r"\(gave up after (\d+) s", line)
    assert waited, line
    # the wait it reports is the one it measured: at least the busy timeout, more when loaded
    assert int(waited.group(1)) >= 2, line
    assert "nothing was written" in line
    assert took < 300  # one bounded wait, not one per retry (four timeouts of 30 s before)
    assert _rows(db) == {"bench_sweeps": 0, "bench_trials": 0, "bench_sweep_leases": 0}
    # once the other writer is done, the same command runs
    again = _run(spec, db, tmp_path)
    assert again.returncode == 0, again.stderr


def test_an_outcome_waits_out_a_lock_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    """The driver stores each outcome again while another process holds the lock past the
    busy timeout (it used to give up after one timeout and leave the trial ``running``)."""
    from test_metric_writes import Driver

    db = tmp_path / "bench.db"
    Store(str(db)).close()
    spec = write_spec(tmp_path / "held.yaml", {
        "name": "held", "workloads": ["mlp_digits"], "optimizers": ["adam"],
        "seeds": list(range(8)), "budget": {"epochs": 3},
    })
    driver = Driver(spec, db, tmp_path, {BUSY_TIMEOUT_ENV: "0.5", "BENCH_WRITE_RETRY_S": "600"})
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a deadline
        while _completed(db) < 1 and driver.proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert driver.proc.poll() is None, (
            "the sweep ended before the lock: make it longer\n" + "".join(driver.lines[-20:]))
        lock = Lock(db)
        try:  # hold it until the driver has met it (and retried) at least once
            while not driver.said("bench: driver:") and driver.proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            lock.release()
        assert driver.proc.wait(timeout=600) == 0, "".join(driver.lines)
    finally:
        if driver.proc.poll() is None:
            driver.proc.kill()
    assert driver.said("bench: driver:") >= 1
    assert _completed(db) == 8


def _completed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM bench_trials WHERE status = 'completed'").fetchone()[0])
    except sqlite3.OperationalError:  # tables not there yet, or locked
        return 0
