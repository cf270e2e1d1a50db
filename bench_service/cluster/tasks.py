"""The Ray side of one trial: a task that trains it and an actor that writes to the store.

Workers never open the database themselves: they stream metric batches to one
``MetricWriter`` actor pinned to the driver's node. That keeps SQLite usable with worker
nodes that cannot see the file, serialises writes of a sweep (no lock contention) and lets
each batch be one bulk insert. A retried trial (worker or node lost; Ray's ``max_retries``)
calls ``start`` again, which deletes the points of the lost attempt, so nothing is stored twice.
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
from typing import Any

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
        from bench_service.store import Store

        self.store = Store(db_url, upgrade=False)

    def start(self, trial_id: int, start: dict[str, Any]) -> int:
        return self.store.start_trial(trial_id, **start)

    def append(self, trial_id: int, points: Sequence[MetricPoint]) -> None:
        self.store.append_metrics(trial_id, points)

    def finish(self, trial_id: int, summary: dict[str, Any],
               points: Sequence[MetricPoint] = (), start: dict[str, Any] | None = None) -> None:
        self.store.finish_trial(trial_id, summary, points, start=start)

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

    The attempt's start (host, device, versions, time) goes out with the first batch, so a
    trial shorter than ``FLUSH_SECONDS`` costs the writer a single call and transaction: its
    start, whole curve and outcome arrive together in ``finish``.

    For a tuning trial it also reports each epoch's validation metric to the tuner and stops
    the trial (``TrialPruned``) when the pruner says so; the points so far are kept.
    """

    def __init__(self, writer: Any, trial_id: int, start: dict[str, Any],
                 pruning: PruningHook | None = None) -> None:
        self.writer, self.trial_id, self.pruning = writer, trial_id, pruning
        self.unsent_start: dict[str, Any] | None = start
        self.buffer: list[MetricPoint] = []
        self.last = time.monotonic()
        self._pending: Any = None

    def __call__(self, points: list[MetricPoint]) -> None:
        self.buffer.extend(points)
        if len(self.buffer) >= FLUSH_POINTS or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()
        hook = self.pruning
        if hook is None:
            return
        for p in points:
            if p.name == hook.metric and p.scope == "epoch":
                # Non-blocking: the decision on epoch e is read when epoch e+1 reports, so
                # training never waits on the tuner's storage round trip.
                self._check_pruned()
                self._pending = hook.coordinator.report.remote(hook.cell_key, hook.number,
                                                               p.epoch, p.value)

    def settle(self) -> None:
        """Wait for the last report, so the study has every intermediate value before the
        driver tells the outcome (the decision itself no longer matters)."""
        if self._pending is not None:
            with contextlib.suppress(Exception):
                wait_in_slot(self._pending)
            self._pending = None

    def _check_pruned(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if wait_in_slot(pending):
                raise TrialPruned()

    def flush(self) -> None:
        # Fire and forget: calls from one caller reach the actor in order.
        if self.unsent_start is not None:
            self.writer.start.remote(self.trial_id, self.unsent_start)
            self.unsent_start = None
        if self.buffer:
            self.writer.append.remote(self.trial_id, self.buffer)
            self.buffer = []
        self.last = time.monotonic()

    def finish(self, summary: dict[str, Any]) -> Any:
        """Send the outcome with the last points (and the start, if never sent): one call,
        one transaction. Returns the call's ref; the outcome is stored when it resolves."""
        last, start = self.buffer, self.unsent_start
        self.buffer, self.unsent_start = [], None
        return self.writer.finish.remote(self.trial_id, summary, last, start)


def summary_of(result: TrialResult) -> dict[str, Any]:
    """The result without its metric points (those were streamed)."""
    return {f.name: getattr(result, f.name) for f in fields(result) if f.name != "metrics"}


#: Writer handles this worker process has looked up, by actor name.
_WRITERS: dict[str, Any] = {}


def writer_handle(name: str) -> Any:
    """The sweep's writer actor, looked up once per worker process.

    Tasks get the writer's *name*: an actor handle passed as a task argument makes every
    task a borrower of it (reference-counting messages between worker, driver and actor for
    each trial), which cost ~6 % of the run phase of a 2-core sweep of short trials.
    """
    handle = _WRITERS.get(name)
    if handle is None:
        handle = _WRITERS[name] = ray.get_actor(name)
    return handle


def execute_trial(
    trial_id: int, config: dict[str, Any], writer_name: str,
    pruning: PruningHook | None = None,
) -> dict[str, Any]:
    """Body of the Ray task: run one trial, stream its metrics, store its outcome."""
    import torch

    writer = writer_handle(writer_name)

    from bench_service.engine.runner import run_trial

    if not config.get("device", "cpu").startswith("cuda"):
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources()
                                         .get("CPU", 1))))
    start = {"host": socket.gethostname(), "device": config.get("device", "cpu"),
             "versions": _versions(), "started_at": datetime.now(timezone.utc)}
    stream = _Streamer(writer, trial_id, start, pruning)
    try:
        result = run_trial(config, on_metrics=stream)
    except KeyboardInterrupt:  # ray.cancel() of a running task (Ctrl-C on the driver)
        wait_in_slot(stream.finish({"status": "cancelled"}))
        raise
    stream.settle()
    wait_in_slot(stream.finish(summary_of(result)))  # durable on return
    return {"trial_id": trial_id, "status": result.status}
