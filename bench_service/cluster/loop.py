"""The one driver loop: trials from a source run as Ray tasks, a bounded window at a time.

Grid and tuned sweeps differ only in where their trials come from, so both are a
``TrialSource`` feeding this loop: a grid hands out its stored trials in order
(``cluster.grid``), tuning asks Optuna for the next trial of the cell with the most budget
left and re-runs each cell's best config on the final seeds (``cluster.tuning``). The loop
owns everything else, the same for both:

- **register -> run**: at most ``window`` tasks are submitted at a time (a task spec is
  ~20 KB; a grid of 10^6 trials submitted at once would not fit in memory) and the window is
  topped up as results arrive. Twice the cluster's trial slots keeps a queued task ready for
  every worker that frees up, so Ray starts the next trial at once.
- **store**: each outcome is committed by the driver as it arrives (``collect``); a trial
  counts as finished once it is stored. A trial Ray lost after its retries is stored
  ``failed`` and reported ``lost`` to the source (tuning replaces it uncounted).
- **packs**: a source may hand out a job whose ``members`` are jobs: one Ray task trains
  them as one program (``tasks.execute_pack``, the engine's packed runner) and returns one
  outcome per member; each member is stored as its own trial and told to the source on its
  own (``on_done`` per member), so resume, cancel, retry and exactly-once hold per member.
- **cancel** (one path, ``_cancel``): outcomes already returned are stored and handed to the
  source, the metric writer is stopped (so nothing a still-running trial sends lands after
  the cancelled marks; tasks are not ``ray.cancel``led, see ``stop_writer``), then the source
  settles what it left unfinished (``on_cancel``).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import ray

from bench_service.cluster.sweep_runner import (
    Progress,
    Writer,
    collect,
    collect_pack,
    ensure_ready,
    start_writer,
    stop_writer,
)
from bench_service.cluster.tasks import PruningHook, execute_pack, execute_trial

if TYPE_CHECKING:
    from bench_service.store import Store

#: Fewest tasks kept submitted, whatever the cluster's size (a 1-slot cluster still has a
#: trial queued behind the running one).
MIN_WINDOW = 4
#: The exceptions that cancel a sweep: a terminal's Ctrl-C. A handler that turns another
#: signal into a cancel raises one of these (or a subclass) in the main thread; an
#: ``exit_code`` attribute on it is the exit code the driver returns (else 130).
CANCEL_EXCEPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt,)


@dataclass(frozen=True)
class Job:
    """One trial to run: its row in the store, its config, and what its source needs back.

    ``role`` is the trial's role (``bench_service.vocab.ROLES``); ``cell_key`` and ``number``
    (its Optuna trial number, ``-1`` if none) let a tuning source tell the outcome to the
    cell's study; ``pruning`` is where the task reports its per-epoch metric.

    A job with ``members`` is a pack: its members (plain jobs) train as one task and the
    pack's own ``trial_id``/``config`` are unused (``pack_of`` builds one).
    """

    trial_id: int
    config: dict[str, Any]
    role: str = "grid"
    cell_key: str = ""
    number: int = -1
    pruning: PruningHook | None = None
    members: tuple[Job, ...] = ()

    def leaves(self) -> tuple[Job, ...]:
        """The trials this job runs: its members, or itself."""
        return self.members or (self,)


def pack_of(members: list[Job]) -> Job:
    """One job training ``members`` together (a single member still runs through the packed
    task, which records why it could not be packed, if it could not)."""
    return Job(-1, {}, role="pack", members=tuple(members))


class Cancelled(NamedTuple):
    """What a source left when the sweep was cancelled."""

    marked: int  # interrupted trials whose rows were marked ``cancelled`` now
    unfinished: int  # trials of the sweep not finished: a resume runs them


class TrialSource(Protocol):
    """Where the loop's trials come from (a grid, a tuner), and who settles their outcomes.

    The loop calls ``start`` once (after the metric writer's start-up began, so both
    overlap), then alternately ``next_jobs`` with the free room of its window and
    ``on_done`` for each stored outcome, until nothing is in flight and ``finished`` is true;
    on cancel, ``on_done`` for the outcomes already returned, then ``on_cancel``.
    """

    def start(self) -> tuple[int, int]:
        """Get ready to hand out jobs; return (trials in the whole sweep, already finished)."""
        ...

    def next_jobs(self, free: int) -> list[Job]:
        """Up to ``free`` jobs to submit now (fewer, or none, if the source must wait)."""
        ...

    def on_done(self, job: Job, status: str, lost: bool) -> bool:
        """A job's outcome is stored (``status``; ``lost``: Ray gave up on it). Returns whether
        it counts as progress (a tuning trial lost and replaced does not)."""
        ...

    def finished(self) -> bool:
        """Whether no job will ever come again (asked when nothing is in flight)."""
        ...

    def on_cancel(self) -> Cancelled:
        """The sweep is cancelled: settle every job handed out and not done."""
        ...


@dataclass
class SweepOutcome:
    """What the loop did: outcome counts (progress only), whether and how it was cancelled."""

    counts: Counter[str] = field(default_factory=Counter)
    cancelled: Cancelled | None = None
    #: The exception that cancelled it (``KeyboardInterrupt``, or what a signal handler raised).
    cause: BaseException | None = None
    wall_time: float = 0.0


@dataclass(frozen=True)
class TaskResources:
    """What Ray reserves for each trial task, and how often it retries a lost one."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 3


def submission_window(capacity: int) -> int:
    """How many trial tasks to keep submitted on a cluster running ``capacity`` at once."""
    return max(2 * capacity, MIN_WINDOW)


def run_loop(
    source: TrialSource, store: Store, resources: TaskResources, *, capacity: int,
    progress: bool = True,
) -> SweepOutcome:
    """Run every job of ``source`` on Ray, storing each outcome as it arrives.

    ``capacity`` is how many trials the cluster runs at once (``sweep_runner.slots``): the
    progress bar's ``running`` and the submission window derive from it. Ray handles
    placement and retries on worker or node loss (``max_retries``); exceptions inside a
    trial are not retried (the runner turns them into ``failed`` records). A cancel
    (``CANCEL_EXCEPTIONS``) returns with ``outcome.cancelled`` set; the caller marks the sweep.
    """
    outcome = SweepOutcome()
    t0 = time.perf_counter()
    task = ray.remote(execute_trial).options(
        num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial,
        max_retries=resources.max_retries, retry_exceptions=False,
    )
    pack_task = ray.remote(execute_pack).options(
        num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial,
        max_retries=resources.max_retries, retry_exceptions=False,
    )
    window = submission_window(capacity)
    in_flight: dict[Any, Job] = {}

    def top_up(writer_name: str) -> None:
        free = window - len(in_flight)
        if free > 0:
            for job in source.next_jobs(free):
                if job.members:
                    ref = pack_task.remote([m.trial_id for m in job.members],
                                           [m.config for m in job.members], writer_name,
                                           [m.pruning for m in job.members])
                else:
                    ref = task.remote(job.trial_id, job.config, writer_name, job.pruning)
                in_flight[ref] = job

    writer: Writer | None = None
    bar: Progress | None = None
    try:
        # Only trials longer than FLUSH_SECONDS use the writer; it starts while the source
        # gets ready and the first trials are submitted, and a trial that looks for it before
        # it exists keeps its points meanwhile.
        writer = start_writer(store.url, wait=False)
        total, already = source.start()
        bar = Progress(total - already, already, progress)
        top_up(writer.name)
        ensure_ready(writer.handle)
        while True:
            if not in_flight:
                if source.finished():
                    break
                raise RuntimeError(f"{type(source).__name__} offers no trial, has none "
                                   "running and is not finished")
            # Store each outcome as soon as it arrives: finished means committed.
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in done:
                for job, status, lost in collect_job(ref, in_flight.pop(ref), store):
                    if source.on_done(job, status, lost):
                        outcome.counts[status] += 1
                        bar.update(1, outcome.counts, min(len(in_flight), capacity))
            top_up(writer.name)
    except CANCEL_EXCEPTIONS as exc:
        outcome.cause = exc
        outcome.cancelled = _cancel(source, in_flight, store,
                                    writer.handle if writer is not None else None,
                                    outcome.counts)
    finally:
        # No final flush needed: a task that streamed to the writer waits until its
        # batches are stored before it returns its outcome.
        if bar is not None:
            bar.close()
    outcome.wall_time = time.perf_counter() - t0
    return outcome


def _cancel(source: TrialSource, in_flight: dict[Any, Job], store: Store, writer: Any,
            counts: Counter[str]) -> Cancelled:
    """The one cancel path: keep what already came back, stop the writes, let the source
    settle the rest. Trials still running end with the job (see ``stop_writer``)."""
    for job, status, lost in collect_returned(in_flight, store):
        with contextlib.suppress(Exception):
            if source.on_done(job, status, lost):
                counts[status] += 1
    if writer is not None:
        stop_writer(writer)
    return source.on_cancel()


def collect_returned(in_flight: dict[Any, Job], store: Store
                     ) -> Iterator[tuple[Job, str, bool]]:
    """On cancel: store the outcomes already returned; yields (job, status, lost) for each."""
    done: list[Any] = []
    with contextlib.suppress(Exception):
        done, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
    for ref in done:
        yield from collect_job(ref, in_flight.pop(ref), store)


def collect_job(ref: Any, job: Job, store: Store) -> list[tuple[Job, str, bool]]:
    """Store a finished task's outcome(s): (job, status, lost) for each trial it ran."""
    if not job.members:
        status, lost = collect(ref, job.trial_id, store)
        return [(job, status, lost)]
    stored = collect_pack(ref, [m.trial_id for m in job.members], store)
    return [(m, status, lost) for m, (status, lost) in zip(job.members, stored, strict=True)]

