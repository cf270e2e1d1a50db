"""The Ray side of one trial: a task that trains it, and an actor for live metrics.

A trial's outcome (status, final metrics, its last metric points) comes back to the driver as
the task's return value and the driver stores it: a short trial costs no extra process hop,
and its worker moves on to the next trial at once. A trial that runs longer than
``FLUSH_SECONDS`` streams its metric batches while it trains to one ``MetricWriter`` actor
pinned to the driver's node, so the database fills while it runs (a dashboard can watch).
Workers never open the database themselves: SQLite keeps working with worker nodes that
cannot see the file, and each batch is one bulk insert. A retried trial (worker or node lost;
Ray's ``max_retries``) starts its attempt again, which deletes the points of the lost attempt,
so nothing is stored twice.

Every write to the writer is checked, without blocking the task (``_Streamer``): the writer
retries a database that is locked, the streamer re-sends a write that failed anyway, and a
write that still fails puts its start or points back to travel with the trial's outcome,
which the driver stores in one transaction. The failure is noted in the trial's ``error``
and printed by the worker; nothing is dropped without a trace.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, NamedTuple

import ray

import bench_service
from bench_service.engine.errors import TrialPruned
from bench_service.engine.records import MetricPoint, TrialResult

#: Send metrics to the writer when this many points are buffered or this many seconds passed.
FLUSH_POINTS = 500
FLUSH_SECONDS = 1.0
#: Seconds the writer keeps retrying a write the database refuses as locked (each try waits
#: up to the store's busy timeout); ``BENCH_WRITE_RETRY_S`` overrides it (tests).
WRITE_RETRY_ENV = "BENCH_WRITE_RETRY_S"
WRITE_RETRY_SECONDS = 120.0
#: Times the streamer sends a write that failed (after the writer's own retries) before it
#: counts as failed and its payload waits for the outcome; the pause doubles from 1 s.
WRITE_TRIES = 3


def _write_retry_seconds() -> float:
    try:
        value = float(os.environ.get(WRITE_RETRY_ENV) or WRITE_RETRY_SECONDS)
    except ValueError:
        return WRITE_RETRY_SECONDS
    return value if value >= 0 else WRITE_RETRY_SECONDS


def retry_while_locked(write: Callable[[], Any], *, stopped: Callable[[], bool] = lambda: False,
                       who: str = "bench") -> Any:
    """Run ``write``, again while the database is locked by another writer (a long
    transaction, a backup, a second sweep) or unreachable (PostgreSQL restarting or failing
    over, a network cut) for up to ``WRITE_RETRY_SECONDS``; then raise.

    Used by the metric writer and by the driver storing an outcome: a lock that outlasts one
    busy timeout, or a database server restart, must not turn a trial's real outcome into a
    lost one. Both errors mean the transaction was rolled back, so the retry writes it once.
    """
    from bench_service.store.db import is_locked_error, is_unavailable_error
    from bench_service.store.errors import DatabaseLockedError, DatabaseUnavailableError

    deadline = time.monotonic() + _write_retry_seconds()
    pause = 0.5
    while True:
        try:
            return write()
        except Exception as exc:
            locked = (isinstance(exc, (DatabaseLockedError, DatabaseUnavailableError))
                      or is_locked_error(exc) or is_unavailable_error(exc))
            if stopped() or not locked or time.monotonic() >= deadline:
                raise
            print(f"bench: {who}: {_first_line(exc)}; retrying in {pause:g} s",
                  file=sys.stderr, flush=True)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


class MetricWriter:
    """Ray actor (one per sweep driver) that owns the store connection."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._store: Any = None
        self.stopped = False
        #: Trials whose latest start failed: their points are refused until a start is
        #: stored, since that start will delete the points of its trial.
        self._unstarted: set[int] = set()

    @property
    def store(self) -> Any:
        """The store, opened on first use: a sweep of short trials never needs it, and its
        imports (SQLAlchemy, ~0.5 s of CPU) would compete with the workers' start-up."""
        if self._store is None:
            from bench_service.store import Store

            self._store = Store(self.db_url, upgrade=False)
        return self._store

    def start(self, trial_id: int, start: dict[str, Any]) -> int:
        if self.stopped:
            return 0
        self._unstarted.add(trial_id)
        attempt = int(self._retry(lambda: self.store.start_trial(trial_id, **start)) or 0)
        self._unstarted.discard(trial_id)
        return attempt

    def append(self, trial_id: int, points: Sequence[MetricPoint]) -> None:
        if self.stopped:
            return
        if trial_id in self._unstarted:
            raise RuntimeError(f"trial {trial_id}'s start is not stored: its points wait")
        self._retry(lambda: self.store.append_metrics(trial_id, points))

    def finish(self, trial_id: int, summary: dict[str, Any],
               points: Sequence[MetricPoint] = (), start: dict[str, Any] | None = None) -> None:
        if not self.stopped:
            self._retry(lambda: self.store.finish_trial(trial_id, summary, points, start=start))

    def note(self, trial_id: int, text: str) -> None:
        """Record on a running trial that some of its writes failed (its ``error``)."""
        if not self.stopped:
            self._retry(lambda: self.store.set_trial_error(trial_id, text))

    def _retry(self, write: Callable[[], Any]) -> Any:
        return retry_while_locked(write, stopped=lambda: self.stopped, who="metric writer")

    def stop(self) -> None:
        """Drop every later write: the sweep was cancelled and the driver marks what is
        unfinished; a trial still running must not set its row back to ``running``."""
        self.stopped = True

    def ping(self) -> bool:
        return True


def _versions() -> dict[str, str]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "bench_service": bench_service.__version__,
        # which Ray node ran it (several nodes can share a hostname, e.g. in containers)
        "ray_node_id": ray.get_runtime_context().get_node_id(),
        "worker_pid": str(os.getpid()),  # one process per CPU slot, reused across trials
    }


def wait_in_slot(ref: Any) -> Any:
    """``ray.get`` for a trial task that keeps its CPU slot while it waits on an actor.

    A normal task that waits in ``ray.get`` or ``ray.wait`` on an unfinished object (even
    with ``timeout=0``) tells the raylet it is blocked and hands its CPU back; the raylet
    then starts another worker process for the next queued trial (a fresh torch import,
    ~3 s on 2 cores), the node is oversubscribed once the first task resumes, and the
    surplus worker is killed as idle a second later: a sweep churned through worker
    processes. Waiting on the object's future (a completion callback) never notifies the
    raylet. The waits here are short: one store transaction, one tuner report.
    """
    return ref.future().result()


@dataclass(frozen=True)
class PruningHook:
    """Where a tuning trial reports its per-epoch metric: the coordinator actor's study."""

    coordinator: Any
    cell_key: str
    number: int
    metric: str


@dataclass(eq=False)
class _Write:
    """One call sent to the writer and not yet known to be stored."""

    kind: str  # "start" | "append" | "note": the writer's method
    payload: Any  # the start dict, the batch of points, or the note
    ref: Any = None
    future: Any = None
    tries: int = 0
    retry_at: float = 0.0
    errors: list[str] = field(default_factory=list)


class _Streamer:
    """The runner's metrics callback: buffers points and ships them in batches.

    Nothing is sent while the trial is younger than ``FLUSH_SECONDS``: a short trial's start
    (host, device, versions, time), whole curve and outcome travel together in its
    ``TrialOutcome``, one transaction on the driver. A longer trial streams to the writer
    actor, its start first; until the writer exists, points stay buffered.

    Every write is kept until it is known to be stored: each flush looks (without waiting)
    at the writes sent so far; one that failed is sent again (``WRITE_TRIES``), and then
    counts as failed: its start or points go back to wait for the next write or the
    outcome, and the failure is noted in the trial's ``error``. A start resets the trial's
    row and deletes its points, so points must never be stored ahead of a start sent again:
    the writer refuses the points of a trial whose start failed, and the streamer sends a
    start again before any points.

    For a tuning trial it also reports each epoch's validation metric to the tuner and stops
    the trial (``TrialPruned``) when the pruner says so; the points so far are kept.
    """

    def __init__(self, writer_name: str, trial_id: int, start: dict[str, Any],
                 pruning: PruningHook | None = None) -> None:
        self.writer_name, self.trial_id, self.pruning = writer_name, trial_id, pruning
        self.unsent_start: dict[str, Any] | None = start
        self.start_stored = False
        self.buffer: list[MetricPoint] = []
        self.last = time.monotonic()
        self._pending: Any = None
        self._writes: list[_Write] = []  # sent, not yet known to be stored; or to send again
        self.write_errors: list[str] = []
        self._noted = 0  # how many of write_errors the trial's row shows
        self._retry_at = 0.0  # no writer yet: when to look again

    def __call__(self, points: list[MetricPoint]) -> None:
        self.buffer.extend(points)
        now = time.monotonic()
        if (len(self.buffer) >= FLUSH_POINTS or now - self.last >= FLUSH_SECONDS) \
                and now >= self._retry_at:
            self.flush()
        hook = self.pruning
        if hook is None:
            return
        for p in points:
            if p.name == hook.metric and p.scope == "epoch":
                # Non-blocking: the decision on epoch e is read when epoch e+1 reports, so
                # training never waits on the tuner's storage round trip. Epoch e+1 ran, so
                # it is reported before the trial stops: the study's last intermediate value
                # (a pruned trial's value in Optuna) is the stored curve's last point.
                pruned = self._pruned()
                self._pending = hook.coordinator.report.remote(hook.cell_key, hook.number,
                                                               p.epoch, p.value)
                if pruned:
                    self.settle()
                    raise TrialPruned()

    def settle(self) -> None:
        """Wait for the last report, so the study has every intermediate value before the
        driver tells the outcome (the decision itself no longer matters)."""
        if self._pending is not None:
            with contextlib.suppress(Exception):
                wait_in_slot(self._pending)
            self._pending = None

    def _pruned(self) -> bool:
        """The pruner's decision on the last epoch reported (``False`` if none is pending)."""
        pending, self._pending = self._pending, None
        return pending is not None and bool(wait_in_slot(pending))

    def flush(self) -> None:
        # Calls from one caller reach the actor in order; their results are looked at later.
        self.last = time.monotonic()
        self._check_writes()
        writer = writer_handle(self.writer_name)
        if writer is None:  # not started yet: keep the points, look again in a while
            self._retry_at = time.monotonic() + FLUSH_SECONDS
            return
        now = time.monotonic()
        if self.unsent_start is not None:
            self._send(writer, _Write("start", self.unsent_start))
            self.unsent_start = None
        due = [w for w in self._writes if w.ref is None and now >= w.retry_at]
        for w in sorted(due, key=lambda w: w.kind != "start"):  # a start before points
            self._send(writer, w)
        if self.buffer:
            self._send(writer, _Write("append", self.buffer))
            self.buffer = []
        if self.start_stored and len(self.write_errors) > self._noted:
            self._noted = len(self.write_errors)
            self._send(writer, _Write("note", self.error_note()))

    def _send(self, writer: Any, w: _Write) -> None:
        w.ref = getattr(writer, w.kind).remote(self.trial_id, w.payload)
        w.future = w.ref.future()  # a callback: looking at it never blocks the task
        w.tries += 1
        if w not in self._writes:
            self._writes.append(w)

    def _check_writes(self, final: bool = False) -> None:
        """Settle the writes whose results are in (``final``: all of them, waiting)."""
        still: list[_Write] = []
        for w in self._writes:
            if w.ref is not None:
                if not (final or w.future.done()):
                    still.append(w)
                    continue
                error = _error_of(w.future)
                if error is None:
                    self.start_stored = self.start_stored or w.kind == "start"
                    continue
                w.errors.append(error)
                w.ref = w.future = None
                w.retry_at = time.monotonic() + 2.0 ** (w.tries - 1)
            if w.tries < WRITE_TRIES and not final:
                still.append(w)  # sent again by the next flush once its pause is over
            else:
                self._failed(w)
        self._writes = still

    def _failed(self, w: _Write) -> None:
        """A write that kept failing: its payload goes back, to wait for the next write (or
        the outcome); the failure is kept for the trial's record and printed."""
        if w.kind == "note":  # sent again (up to date) by a later flush
            self._noted = 0
            return
        if w.errors:
            note = (f"{w.kind} of trial {self.trial_id} failed {len(w.errors)}x "
                    f"({w.errors[-1]})")
            self.write_errors.append(note)
            print(f"bench: metric write failed: {note}; kept for the next write",
                  file=sys.stderr, flush=True)
        if w.kind == "start":
            self.unsent_start = w.payload
        else:
            self.buffer = list(w.payload) + self.buffer

    def outcome(self, summary: dict[str, Any]) -> TrialOutcome:
        """The outcome for the driver to store, with the points and start not stored yet.

        Every write sent is waited for first: the attempt's start resets the trial's row,
        so it must never land after the driver's outcome; whatever did not get stored
        travels with the outcome, and the failures are noted in its ``error``.
        """
        for w in self._writes:
            if w.future is not None:
                with contextlib.suppress(Exception):
                    wait_in_slot(w.ref)
        self._check_writes(final=True)
        last, start = self.buffer, self.unsent_start
        self.buffer, self.unsent_start = [], None
        if self.write_errors:
            summary = {**summary, "error": "; ".join(
                e for e in (summary.get("error"), self.error_note()) if e)}
        return TrialOutcome(self.trial_id, summary, last, start)

    def error_note(self) -> str:
        """What the trial's record says about its failed writes (none were dropped)."""
        errors = self.write_errors
        more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        return (f"{len(errors)} metric write(s) to the database failed and were sent again "
                f"later: {'; '.join(errors[:5])}{more}")

    def cancelled(self) -> None:
        """Store ``cancelled`` with the points so far through the writer (the task is being
        cancelled, so no outcome reaches the driver) and wait until it is stored."""
        writer = writer_handle(self.writer_name)
        if writer is None:  # the driver marks it cancelled; its points are not kept
            return
        with contextlib.suppress(Exception):
            for w in self._writes:
                if w.ref is not None:
                    wait_in_slot(w.ref)
        self._check_writes(final=True)
        last, start = self.buffer, self.unsent_start
        self.buffer, self.unsent_start = [], None
        with contextlib.suppress(Exception):  # the driver marks it cancelled regardless
            summary = {"status": "cancelled"} | (
                {"error": self.error_note()} if self.write_errors else {})
            wait_in_slot(writer.finish.remote(self.trial_id, summary, last, start))


def _error_of(future: Any) -> str | None:
    """The one-line error of a finished writer call, ``None`` if it was stored."""
    try:
        future.result(timeout=0)
    except Exception as exc:
        return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the writer's exception
    text = str(cause).strip()
    line = text.splitlines()[0] if text else type(cause).__name__
    return line[:300]


class TrialOutcome(NamedTuple):
    """What a trial task returns: ``Store.finish_trial``'s arguments, for the driver."""

    trial_id: int
    summary: dict[str, Any]
    points: list[MetricPoint]
    start: dict[str, Any] | None  # the attempt's start, if no batch carried it already

    @property
    def status(self) -> str:
        return str(self.summary["status"])


def summary_of(result: TrialResult) -> dict[str, Any]:
    """The result without its metric points (those were streamed)."""
    return {f.name: getattr(result, f.name) for f in fields(result) if f.name != "metrics"}


#: Writer handles this worker process has looked up, by actor name.
_WRITERS: dict[str, Any] = {}


def writer_handle(name: str) -> Any | None:
    """The sweep's writer actor, looked up once per worker process; ``None`` until it exists.

    Tasks get the writer's *name*: an actor handle passed as a task argument makes every
    task a borrower of it (reference-counting messages between worker, driver and actor for
    each trial), which cost ~6 % of the run phase of a 2-core sweep of short trials. The
    actor's name is registered while the first trials start, so a trial may look too soon.
    """
    handle = _WRITERS.get(name)
    if handle is None:
        try:
            handle = _WRITERS[name] = ray.get_actor(name)
        except ValueError:  # no actor of that name (yet)
            return None
    return handle


def warm_worker() -> None:
    """A task that only warms its worker process (torch and the engine imported, ``warm_up``)
    so the trials Ray hands that worker next start at once."""
    from bench_service.engine.runner import warm_up

    warm_up()


def execute_trial(
    trial_id: int, config: dict[str, Any], writer_name: str,
    pruning: PruningHook | None = None,
) -> TrialOutcome:
    """Body of the Ray task: run one trial, stream its metrics if it runs long, return its
    outcome (the driver stores it)."""
    import torch

    from bench_service.engine.runner import run_trial, warm_up

    warm_up()  # a new worker's one-off torch imports, before the trial's clock and flushes
    if not config.get("device", "cpu").startswith("cuda"):
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources()
                                         .get("CPU", 1))))
    start = {"host": socket.gethostname(), "device": config.get("device", "cpu"),
             "versions": _versions(), "started_at": datetime.now(timezone.utc)}
    stream = _Streamer(writer_name, trial_id, start, pruning)
    try:
        result = run_trial(config, on_metrics=stream)
    except KeyboardInterrupt:  # SIGINT in the worker (a terminal's Ctrl-C, ray.cancel)
        stream.cancelled()
        raise
    stream.settle()
    return stream.outcome(summary_of(result))


def execute_pack(
    trial_ids: list[int], configs: list[dict[str, Any]], writer_name: str,
    prunings: list[PruningHook | None],
) -> list[TrialOutcome]:
    """Body of a pack's Ray task: train the members as one program (``engine.packed``),
    each streaming through its own ``_Streamer``; one outcome per member, in order."""
    import torch

    from bench_service.engine.packed import run_packed
    from bench_service.engine.runner import warm_up

    warm_up()
    if not any(str(c.get("device", "cpu")).startswith("cuda") for c in configs):
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources()
                                         .get("CPU", 1))))
    streams = []
    for trial_id, config, pruning in zip(trial_ids, configs, prunings, strict=True):
        start = {"host": socket.gethostname(), "device": config.get("device", "cpu"),
                 "versions": _versions(), "started_at": datetime.now(timezone.utc)}
        streams.append(_Streamer(writer_name, trial_id, start, pruning))
    try:
        results = run_packed(configs, streams)
    except KeyboardInterrupt:
        for stream in streams:
            stream.cancelled()
        raise
    outcomes = []
    for stream, result in zip(streams, results, strict=True):
        stream.settle()
        outcomes.append(stream.outcome(summary_of(result)))
    return outcomes
