"""What the driver loop (``cluster.loop``) is made of: the metric writer actor's life, storing
a finished task's outcome, the cluster's trial slots, the progress bar."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bench_service.cluster.tasks import MetricWriter, TrialOutcome, retry_while_locked

if TYPE_CHECKING:
    from bench_service.store import Store


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
    from bench_service.store import DatabaseLockedError, DatabaseUnavailableError, StoreError

    lost = False
    try:
        result: TrialOutcome = ray.get(ref)
        retry_while_locked(lambda: store.finish_trial(
            result.trial_id, result.summary, result.points, start=result.start), who="driver")
        return result.status, lost
    except ray.exceptions.RayError as exc:
        lost, error = True, f"lost by Ray after retries: {type(exc).__name__}: {exc}"
    except (DatabaseLockedError, DatabaseUnavailableError) as exc:
        # Locked or unreachable past every retry: no write can say so either. Stop the sweep
        # loudly (the trial stays unfinished and runs again on resume) rather than lose its
        # outcome.
        raise type(exc)(
            f"could not store the outcome of trial {trial_id}: {exc}; the sweep stops here "
            "(run the same command again to resume)") from exc
    except StoreError as exc:
        error = f"could not store the outcome: {exc}"
    with contextlib.suppress(Exception):
        store.finish_trial(trial_id, {"status": "failed", "error": error})
    return "failed", lost


def collect_pack(ref: Any, trial_ids: list[int], store: Store) -> list[tuple[str, bool]]:
    """``collect`` for a pack task: store each member's outcome (its own transaction, so a
    member stored stays stored); a pack Ray lost is stored ``failed`` for every member."""
    from bench_service.store import DatabaseLockedError, StoreError

    try:
        outcomes: list[TrialOutcome] = ray.get(ref)
    except ray.exceptions.RayError as exc:
        error = f"lost by Ray after retries: {type(exc).__name__}: {exc}"
        for trial_id in trial_ids:
            with contextlib.suppress(Exception):
                store.finish_trial(trial_id, {"status": "failed", "error": error})
        return [("failed", True)] * len(trial_ids)
    stored: list[tuple[str, bool]] = []
    for result in outcomes:
        try:
            retry_while_locked(lambda r=result: store.finish_trial(  # type: ignore[misc]
                r.trial_id, r.summary, r.points, start=r.start), who="driver")
            stored.append((result.status, False))
        except DatabaseLockedError as exc:
            raise DatabaseLockedError(
                f"could not store the outcome of trial {result.trial_id}: {exc}; the sweep "
                "stops here (run the same command again to resume)") from exc
        except StoreError as exc:
            with contextlib.suppress(Exception):
                store.finish_trial(result.trial_id, {
                    "status": "failed", "error": f"could not store the outcome: {exc}"})
            stored.append(("failed", False))
    return stored


def slots(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once, given every resource a trial requests.

    The loop's capacity: its submission window, tuning's concurrency (a trial asked of
    Optuna while no slot is free would be sampled knowing less), and what the progress bar
    calls running (Ray starts a queued task as soon as one ends, so while trials are queued
    every slot is busy; counting them here costs nothing, unlike asking the store).
    """
    fits = [resources.get("CPU", 0.0) / cpus_per_trial] if cpus_per_trial > 0 else []
    if gpus_per_trial > 0:
        fits.append(resources.get("GPU", 0.0) / gpus_per_trial)
    return max(1, int(min(fits, default=1.0) + 1e-9))
