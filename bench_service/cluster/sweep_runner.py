"""Run a sweep's trials as Ray tasks, with a live progress bar and clean cancellation."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bench_service.cluster.tasks import MetricWriter, TrialOutcome, execute_trial

if TYPE_CHECKING:
    from bench_service.store import Store

TERMINAL = ("completed", "diverged", "failed", "pruned", "cancelled")


@dataclass(frozen=True)
class TrialJob:
    """One trial to run: its row id in the store and its config."""

    trial_id: int
    config: dict[str, Any]


@dataclass
class SweepOutcome:
    """What happened to the submitted trials."""

    counts: Counter[str] = field(default_factory=Counter)
    cancelled: bool = False
    wall_time: float = 0.0


class Writer(NamedTuple):
    """The sweep's metric writer: the driver's handle, and the unique name tasks get."""

    handle: Any
    name: str


def start_writer(db_url: str, *, name: str | None = None, wait: bool = True) -> Writer:
    """The metric writer actor, pinned to this (the driver's) node; uses no CPU slot.

    ``name`` lets tasks be submitted with it before the actor starts (``writer_name()``).
    With ``wait=False`` the caller goes on while the actor's process starts (~1 s of CPU
    for its imports) and must call ``ensure_ready`` before relying on it; calls made
    meanwhile queue up in order.
    """
    node_id = ray.get_runtime_context().get_node_id()
    actor_cls = ray.remote(num_cpus=0, max_restarts=3)(MetricWriter)
    name = name or writer_name()
    writer = actor_cls.options(
        name=name,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(db_url)
    if wait:
        ensure_ready(writer)
    return Writer(writer, name)


def writer_name() -> str:
    """A unique name for a sweep's writer actor (several sweeps may share a cluster)."""
    return f"bench-writer-{uuid.uuid4().hex}"


def ensure_ready(writer: Any) -> None:
    """Raise (``RayActorError``) if the writer actor could not start."""
    ray.get(writer.ping.remote())


class Progress:
    """tqdm bar showing done / running / diverged / failed and an ETA."""

    def __init__(self, total: int, already: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total + already, initial=already, unit="trial",
                            dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def update(self, n: int, counts: Counter[str], running: int) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix_str(
            f"running={running} done={counts['completed']} diverged={counts['diverged']} "
            f"failed={counts['failed']}", refresh=False,
        )
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_planned_trials(
    jobs: Sequence[TrialJob],
    store: Store,
    *,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_retries: int = 3,
    already_done: int = 0,
    progress: bool = True,
) -> SweepOutcome:
    """Submit every job as a Ray task, store each outcome as it arrives, wait for all.

    Ray handles placement (CPU/GPU resources, fractional GPUs) and retries on worker or node
    loss (``max_retries``); exceptions inside a trial are not retried: the runner turns them
    into ``failed`` records. A trial counts as finished once the driver has committed its
    outcome. Ctrl-C cancels (``stop_trials``): the function returns with ``outcome.cancelled``
    set and the caller marks the unfinished trials ``cancelled``.
    """
    outcome = SweepOutcome()
    t0 = time.perf_counter()
    if not jobs:
        return outcome
    task = ray.remote(execute_trial).options(
        num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=max_retries,
        retry_exceptions=False,
    )
    # Only trials longer than FLUSH_SECONDS use the writer; it starts while trials are
    # submitted, and a trial that looks for it before it exists keeps its points meanwhile.
    writer, name = start_writer(store.url, wait=False)
    pending = {task.remote(job.trial_id, job.config, name): job for job in jobs}
    bar = Progress(len(jobs), already_done, progress)
    capacity = slots(ray.cluster_resources(), cpus_per_trial, gpus_per_trial)
    try:
        ensure_ready(writer)
        while pending:
            # Store each outcome as soon as it arrives: finished means committed.
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                job = pending.pop(ref)
                status, _ = collect(ref, job.trial_id, store)
                outcome.counts[status] += 1
            bar.update(len(done), outcome.counts, min(len(pending), capacity))
    except KeyboardInterrupt:
        outcome.cancelled = True
        stored = collect_returned({r: j.trial_id for r, j in pending.items()}, store,
                                  outcome.counts)
        stop_writer(writer)
        outcome.counts["cancelled"] += len(pending) - stored
    finally:
        # No final flush needed: a task that streamed to the writer waits until its
        # batches are stored before it returns its outcome.
        bar.close()
    outcome.wall_time = time.perf_counter() - t0
    return outcome


def collect_returned(trial_ids: dict[Any, int], store: Store, counts: Counter[str]) -> int:
    """Ctrl-C: store the outcomes already returned; returns how many.

    ``trial_ids`` maps the task refs still in flight to their trials' row ids.
    """
    stored = 0
    with contextlib.suppress(Exception):
        done, _ = ray.wait(list(trial_ids), num_returns=len(trial_ids), timeout=0)
        for ref in done:
            status, _ = collect(ref, trial_ids[ref], store)
            counts[status] += 1
            stored += 1
    return stored


def stop_writer(writer: Any) -> None:
    """Ctrl-C: stop the trials' writes, so the driver's ``cancelled`` marks are final.

    Trials still running are left to end with the job (an embedded Ray shuts down, a cluster
    kills the workers of a driver that exits); once the writer has stopped nothing they send
    is stored, and the points they stored so far stay. ``ray.cancel`` is not used: cancelling
    a task that Ray is handing to a worker at that moment aborts the driver inside Ray 2.60
    (``Check failed: ... Tried to complete task that was not pending``), which about one
    Ctrl-C in six hit on a sweep of short trials.
    """
    with contextlib.suppress(Exception):
        ray.get(writer.stop.remote(), timeout=30)


def collect(ref: Any, trial_id: int, store: Store) -> tuple[str, bool]:
    """Store the outcome of a finished trial task; returns its status and whether Ray lost it.

    A task Ray gave up on (lost after all retries) and an outcome the store refuses are
    stored as ``failed`` with the reason, so the sweep goes on.
    """
    from bench_service.store import StoreError

    lost = False
    try:
        result: TrialOutcome = ray.get(ref)
        store.finish_trial(result.trial_id, result.summary, result.points, start=result.start)
        return result.status, lost
    except ray.exceptions.RayError as exc:
        lost, error = True, f"lost by Ray after retries: {type(exc).__name__}: {exc}"
    except StoreError as exc:
        error = f"could not store the outcome: {exc}"
    with contextlib.suppress(Exception):
        store.finish_trial(trial_id, {"status": "failed", "error": error})
    return "failed", lost


def slots(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once (what the progress bar calls running).

    Ray starts a queued task as soon as one ends, so while trials are queued every slot is
    busy; counting them here costs nothing, unlike asking the store which trials started.
    """
    fits = [resources.get("CPU", 0.0) / cpus_per_trial] if cpus_per_trial > 0 else []
    if gpus_per_trial > 0:
        fits.append(resources.get("GPU", 0.0) / gpus_per_trial)
    return max(1, int(min(fits, default=1.0) + 1e-9))
