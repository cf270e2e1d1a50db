"""Run a sweep's trials as Ray tasks, with a live progress bar and clean cancellation."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bench_service.cluster.tasks import MetricWriter, execute_trial

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


def start_writer(db_url: str, *, wait: bool = True) -> Writer:
    """The metric writer actor, pinned to this (the driver's) node; uses no CPU slot.

    With ``wait=False`` the caller goes on while the actor's process starts (its imports
    take a second or two) and must call ``ensure_ready`` before relying on it; calls made
    meanwhile queue up in order.
    """
    node_id = ray.get_runtime_context().get_node_id()
    actor_cls = ray.remote(num_cpus=0, max_restarts=3)(MetricWriter)
    name = f"bench-writer-{uuid.uuid4().hex}"
    writer = actor_cls.options(
        name=name,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(db_url)
    if wait:
        ensure_ready(writer)
    return Writer(writer, name)


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
    db_url: str,
    *,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_retries: int = 3,
    already_done: int = 0,
    progress: bool = True,
) -> SweepOutcome:
    """Submit every job as a Ray task and wait for all of them.

    Ray handles placement (CPU/GPU resources, fractional GPUs) and retries on worker or node
    loss (``max_retries``); exceptions inside a trial are not retried: the runner turns them
    into ``failed`` records. Ctrl-C cancels: running tasks get a KeyboardInterrupt, record
    ``cancelled`` and the function returns with ``outcome.cancelled`` set.
    """
    outcome = SweepOutcome()
    t0 = time.perf_counter()
    if not jobs:
        return outcome
    writer, name = start_writer(db_url, wait=False)  # starts while the trials are submitted
    task = ray.remote(execute_trial).options(
        num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=max_retries,
        retry_exceptions=False,
    )
    pending = {task.remote(job.trial_id, job.config, name): job for job in jobs}
    bar = Progress(len(jobs), already_done, progress)
    capacity = slots(ray.cluster_resources(), cpus_per_trial, gpus_per_trial)
    try:
        ensure_ready(writer)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            for ref in done:
                job = pending.pop(ref)
                try:
                    status = ray.get(ref)["status"]
                except (ray.exceptions.RayError, KeyError) as exc:  # lost after all retries
                    status = "failed"
                    record_lost(writer, job.trial_id, exc)
                outcome.counts[status] += 1
            bar.update(len(done), outcome.counts, min(len(pending), capacity))
    except KeyboardInterrupt:
        outcome.cancelled = True
        for ref in pending:
            ray.cancel(ref, force=False)
        ray.wait(list(pending), num_returns=len(pending), timeout=15)
        outcome.counts["cancelled"] += len(pending)
    finally:
        # No final flush needed: each task waits for its own ``finish`` write, which the
        # actor runs after that task's earlier (fire-and-forget) metric batches.
        bar.close()
    outcome.wall_time = time.perf_counter() - t0
    return outcome


def slots(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once (what the progress bar calls running).

    Ray starts a queued task as soon as one ends, so while trials are queued every slot is
    busy; counting them here costs nothing, unlike asking the store which trials started.
    """
    fits = [resources.get("CPU", 0.0) / cpus_per_trial] if cpus_per_trial > 0 else []
    if gpus_per_trial > 0:
        fits.append(resources.get("GPU", 0.0) / gpus_per_trial)
    return max(1, int(min(fits, default=1.0) + 1e-9))


def record_lost(writer: Any, trial_id: int, exc: BaseException) -> None:
    error = f"lost by Ray after retries: {type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        ray.get(writer.finish.remote(trial_id, {"status": "failed", "error": error}), timeout=30)
