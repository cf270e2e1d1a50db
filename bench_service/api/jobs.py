"""Sweeps as Ray Jobs: submit, follow, stop, through ``JobSubmissionClient`` only.

The embedded head and a remote cluster are driven the same way (HTTP to the job server), so
there is one code path. A job's entrypoint runs the sweep *from the database*
(``bench run --sweep NAME``): only the name travels, the spec is read from the store, and
the API process never trains. Ray's token authentication is left on: the client sends
``RAY_AUTH_TOKEN`` (from this process's environment) with every request.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bench_service.store import Store, StoreError
from bench_service.store.service import active_jobs, set_job

#: Ray's job statuses -> the service's job states (``vocab.JOB_STATES``).
RAY_TO_STATE = {
    "PENDING": "queued", "RUNNING": "running", "SUCCEEDED": "succeeded",
    "FAILED": "failed", "STOPPED": "cancelled",
}
#: Seconds between two looks at the unfinished jobs (the poller).
POLL_S = 2.0


class ClusterError(Exception):
    """The Ray cluster's job server could not be reached or refused a request."""


class JobRunner:
    """Submits, follows and stops the Ray Jobs of the service's sweeps.

    Args:
        address: The job server, ``http://HEAD:8265``.
        db_url: The database URL the jobs' drivers open (passed as ``BENCH_DB_URL``).
        python: The command that runs Python on the cluster (the entrypoint is
            ``PYTHON -m bench_service.cli run --sweep NAME``).
    """

    def __init__(self, address: str, db_url: str, python: str = "python") -> None:
        self.address, self.db_url, self.python = address, db_url, python
        self._client: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def client(self) -> Any:
        """The ``JobSubmissionClient`` (created on first use: Ray's import is slow)."""
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                try:
                    self._client = JobSubmissionClient(self.address)
                except Exception as exc:  # ConnectionError, Ray's RuntimeError: reachability
                    raise ClusterError(_first_line(exc)) from exc
            return self._client

    def submit(self, sweep: str) -> str:
        """Start sweep ``sweep`` (already in the database) as a new Ray Job; its id.

        Raises:
            ClusterError: The job server refused or could not be reached.
        """
        job_id = f"bench-{_slug(sweep)}-{uuid.uuid4().hex[:8]}"
        entrypoint = (f"{self.python} -m bench_service.cli run --sweep {shlex.quote(sweep)}"
                      " --no-progress")
        try:
            return str(self.client.submit_job(
                entrypoint=entrypoint, submission_id=job_id,
                runtime_env={"env_vars": {"BENCH_DB_URL": self.db_url}},
                metadata={"bench_sweep": sweep[:200]},
            ))
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(_first_line(exc)) from exc

    def state(self, job_id: str) -> tuple[str, str | None]:
        """``(job state, message)`` of a job as Ray reports it now; a job Ray does not know
        (the cluster restarted) is ``failed`` with a message saying so."""
        try:
            info = self.client.get_job_info(job_id)
        except ClusterError:
            raise
        except Exception as exc:
            text = str(exc)
            if "does not exist" in text or "404" in text:
                return "failed", f"job {job_id} is unknown to the Ray cluster at {self.address}"
            raise ClusterError(_first_line(exc)) from exc
        status = str(getattr(info.status, "value", info.status))
        return RAY_TO_STATE.get(status, "running"), info.message

    def stop(self, job_id: str) -> None:
        """Ask Ray to stop the job (SIGTERM to its driver, which cancels the sweep)."""
        try:
            self.client.stop_job(job_id)
        except Exception as exc:
            raise ClusterError(_first_line(exc)) from exc

    def logs(self, job_id: str) -> str:
        try:
            return str(self.client.get_job_logs(job_id))
        except Exception as exc:
            raise ClusterError(_first_line(exc)) from exc

    async def follow(self, job_id: str) -> AsyncIterator[str]:
        """The job's log as it is written, until the job ends."""
        async for chunk in self.client.tail_job_logs(job_id):
            yield chunk

    # ------------------------------------------------------------------ state in the store

    def refresh(self, store: Store, sweep: str, job_id: str) -> str | None:
        """Store the job's current state for ``sweep``; the state, or ``None`` when the
        cluster could not be asked (the stored state stays)."""
        try:
            state, message = self.state(job_id)
        except ClusterError:
            return None
        current = store.get_sweep(sweep)
        if current is None or current.job_id != job_id:
            return None
        if state != current.job_state or (message and message != current.job_message):
            set_job(store, sweep, job_state=state, job_message=message)
        if state == "cancelled" or (state == "failed" and current.status == "running"):
            _settle(store, current.id, state)
        return state

    def start_polling(self, store: Store) -> None:
        """Refresh every unfinished job every ``POLL_S`` seconds in a daemon thread, so
        the stored states follow the cluster even when nobody asks."""

        def loop() -> None:
            while not self._stop.wait(POLL_S):
                try:
                    for name, job_id in active_jobs(store):
                        self.refresh(store, name, job_id)
                except StoreError:
                    continue

        self._thread = threading.Thread(target=loop, name="bench-job-poller", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_ended(self, job_id: str, timeout: float) -> str | None:
        """Poll until the job has ended; its state, or ``None`` at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state, _ = self.state(job_id)
            except ClusterError:
                state = "running"
            if state in ("succeeded", "failed", "cancelled"):
                return state
            time.sleep(0.3)
        return None


def _settle(store: Store, sweep_id: int, state: str) -> None:
    """A job that ended without its driver closing the sweep (killed, lost): its unfinished
    trials become ``cancelled`` and the sweep takes the job's end."""
    store.mark_unfinished(sweep_id, "cancelled")
    info = next((s for s in store.list_sweeps() if s.id == sweep_id), None)
    if info is not None and info.status in ("pending", "running"):
        store.set_sweep_status(sweep_id, "cancelled" if state == "cancelled" else "failed")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:60].strip("-") or "sweep"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]
