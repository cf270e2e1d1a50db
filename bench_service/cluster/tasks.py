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
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, NamedTuple

import ray

import bench_service
from bench_service.engine.errors import TrialPruned
from bench_service.engine.records import MetricPoint, TrialResult

#: Send metrics to the writer when this many points are buffered or this many seconds passed.
FLUSH_POINTS = 500
FLUSH_SECONDS = 1.0


class MetricWriter:
    """Ray actor (one per sweep driver) that owns the store connection."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._store: Any = None
        self.stopped = False

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
        return self.store.start_trial(trial_id, **start)

    def append(self, trial_id: int, points: Sequence[MetricPoint]) -> None:
        if not self.stopped:
            self.store.append_metrics(trial_id, points)

    def finish(self, trial_id: int, summary: dict[str, Any],
               points: Sequence[MetricPoint] = (), start: dict[str, Any] | None = None) -> None:
        if not self.stopped:
            self.store.finish_trial(trial_id, summary, points, start=start)

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


class _Streamer:
    """The runner's metrics callback: buffers points and ships them in batches.

    Nothing is sent while the trial is younger than ``FLUSH_SECONDS``: a short trial's start
    (host, device, versions, time), whole curve and outcome travel together in its
    ``TrialOutcome``, one transaction on the driver. A longer trial streams to the writer
    actor, its start with the first batch; until the writer exists, points stay buffered.

    For a tuning trial it also reports each epoch's validation metric to the tuner and stops
    the trial (``TrialPruned``) when the pruner says so; the points so far are kept.
    """

    def __init__(self, writer_name: str, trial_id: int, start: dict[str, Any],
                 pruning: PruningHook | None = None) -> None:
        self.writer_name, self.trial_id, self.pruning = writer_name, trial_id, pruning
        self.unsent_start: dict[str, Any] | None = start
        self.buffer: list[MetricPoint] = []
        self.last = time.monotonic()
        self._pending: Any = None
        self._sent: Any = None  # ref of the last writer call
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
        # Fire and forget: calls from one caller reach the actor in order.
        writer = writer_handle(self.writer_name)
        if writer is None:  # not started yet: keep the points, look again in a while
            self._retry_at = time.monotonic() + FLUSH_SECONDS
            return
        if self.unsent_start is not None:
            self._sent = writer.start.remote(self.trial_id, self.unsent_start)
            self.unsent_start = None
        if self.buffer:
            self._sent = writer.append.remote(self.trial_id, self.buffer)
            self.buffer = []
        self.last = time.monotonic()

    def outcome(self, summary: dict[str, Any]) -> TrialOutcome:
        """The outcome for the driver to store, with the points and start not sent yet.

        If anything went to the writer, wait until it is stored first: the attempt's start
        resets the trial's row, so it must never land after the driver's outcome.
        """
        if self._sent is not None:
            wait_in_slot(self._sent)
            self._sent = None
        last, start = self.buffer, self.unsent_start
        self.buffer, self.unsent_start = [], None
        return TrialOutcome(self.trial_id, summary, last, start)

    def cancelled(self) -> None:
        """Store ``cancelled`` with the points so far through the writer (the task is being
        cancelled, so no outcome reaches the driver) and wait until it is stored."""
        writer = writer_handle(self.writer_name)
        if writer is None:  # the driver marks it cancelled; its points are not kept
            return
        last, start = self.buffer, self.unsent_start
        self.buffer, self.unsent_start = [], None
        wait_in_slot(writer.finish.remote(self.trial_id, {"status": "cancelled"}, last, start))


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
