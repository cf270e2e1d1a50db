"""Metric writes under a locked database: delayed, retried, never dropped without a trace.

A real ``BEGIN EXCLUSIVE`` in another process holds the SQLite file while a real ``bench
run`` streams a long trial. Every wait is on a condition (a line the writer or the trial
prints, rows in the database), never on the machine's speed: the trial is longer than any
test needs and the sweep is ended with SIGTERM once the checks are done.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _helpers import bench_cmd, cli_env
from test_sweep_e2e import _kill_session, _wait_for, write_spec

from bench_service.cluster.lease import TTL_ENV
from bench_service.cluster.signals import EXIT_TERMINATED
from bench_service.cluster.tasks import WRITE_RETRY_ENV
from bench_service.store import Store, TrialInfo
from bench_service.store.db import BUSY_TIMEOUT_ENV_VAR as BUSY_TIMEOUT_ENV

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

#: A trial far longer than the test (it is cancelled at the end).
ENDLESS = {"name": "locked", "workloads": ["mlp_digits"], "optimizers": ["adam"],
           "seeds": [0], "budget": {"epochs": 100_000}}

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


class Lock:
    """An exclusive lock on the SQLite file, held by another process until ``release``."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(db)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline() == "released\n"
        self.proc.wait(timeout=60)


class Driver:
    """``bench run`` with its stderr collected line by line while it runs."""

    def __init__(self, spec: Path, db: Path, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            bench_cmd("run", str(spec), "--db", str(db), "--num-cpus", "1", "--no-progress"),
            cwd=cwd, env={**cli_env(), **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def said(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def stop(self) -> int:
        """SIGTERM (a clean cancel); returns the exit code."""
        self.proc.terminate()
        self.proc.wait(timeout=180)
        self._reader.join(timeout=30)
        return self.proc.returncode


def _query(db: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return list(conn.execute(sql))
    except sqlite3.OperationalError:
        return []


def _sweep_running(db: Path) -> bool:
    return _query(db, "SELECT status FROM bench_sweeps") == [("running",)]


def _epochs_stored(db: Path) -> list[int]:
    return [int(e) for (e,) in _query(
        db, "SELECT epoch FROM bench_metrics WHERE name = 'val_loss' AND scope = 'epoch' "
            "ORDER BY epoch")]


def _run_under_lock(tmp_path: Path, env: dict[str, str], held_until: str, times: int
                    ) -> tuple[Driver, Path, bool]:
    """Start the endless trial, lock the database (before its first write, as a rule), keep
    the lock until the driver's stderr shows ``held_until`` ``times`` times (``{kind}``: the
    write the lock caught first), release it, and wait until the trial has streamed several
    epochs after that. Returns whether the lock caught the trial's start."""
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "locked.yaml", ENDLESS)
    env = {BUSY_TIMEOUT_ENV: "0.3", TTL_ENV: "600", **env}
    driver = Driver(spec, db, tmp_path, env)
    try:
        _wait_for(lambda: _sweep_running(db), timeout=300)
        lock = Lock(db)  # the trial is still starting, as a rule: its start is not stored
        try:
            caught_start = _query(db, "SELECT attempt FROM bench_trials") == [(0,)]
            text = held_until.format(kind="start" if caught_start else "append")
            _wait_for(lambda: driver.said(text) >= times, timeout=300)
        finally:
            lock.release()
        _wait_for(lambda: len(_epochs_stored(db)) >= 3, timeout=300)
    except BaseException:
        _kill_session(driver.proc)
        raise
    return driver, db, caught_start


def _check_nothing_dropped(db: Path) -> TrialInfo:
    store = Store(str(db))
    [row] = store.trials_frame("locked").to_dict("records")
    trial = store.trial(int(row["trial_id"]))
    assert trial.attempt == 1  # the start was stored once, for this attempt
    assert trial.host and trial.versions and trial.versions.get("worker_pid")
    # No gap, once the batches sent again have landed (newer ones may land first): a batch
    # dropped would leave its gap for good.
    _wait_for(lambda: _contiguous(_epochs_stored(db)), timeout=300)
    return trial


def _contiguous(epochs: list[int]) -> bool:
    return bool(epochs) and epochs == list(range(epochs[0], epochs[0] + len(epochs)))


def test_a_lock_shorter_than_the_retries_delays_the_writes_and_loses_nothing(
    tmp_path: Path
) -> None:
    driver, db, _ = _run_under_lock(tmp_path, {WRITE_RETRY_ENV: "600"},
                                    "bench: metric writer: database", times=2)
    try:
        trial = _check_nothing_dropped(db)
        assert trial.error is None  # absorbed by the writer's retries: nothing to report
        assert driver.said("bench: metric write failed") == 0
    finally:
        code = driver.stop()
        _kill_session(driver.proc)
    assert code == EXIT_TERMINATED, "".join(driver.lines[-20:])


def test_a_lock_longer_than_the_retries_is_noted_on_the_trial_and_loses_nothing(
    tmp_path: Path
) -> None:
    driver, db, caught_start = _run_under_lock(
        tmp_path, {WRITE_RETRY_ENV: "0.5"}, "bench: metric write failed: {kind} of trial", 1)
    try:
        _wait_for(lambda: _query(db, "SELECT error FROM bench_trials WHERE error IS NOT NULL"),
                  timeout=300)
        error = _check_nothing_dropped(db).error or ""
        assert "metric write(s) to the database failed and were sent again later" in error
        kind = "start" if caught_start else "append"
        assert f"{kind} of trial" in error and "locked" in error
    finally:
        code = driver.stop()
        _kill_session(driver.proc)
    assert code == EXIT_TERMINATED, "".join(driver.lines[-20:])
    # the cancel keeps the note: the record still says what happened
    [(status, error)] = _query(db, "SELECT status, error FROM bench_trials")
    assert status == "cancelled" and "failed and were sent again later" in error
